package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseFlagsFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		check   func(*flags) string
		unknown []string
		err     string
	}{
		{
			name: "ConfigMap settings",
			env:  []string{"NODE_NAME=n1", "SKEIN_PROXY=iptables", "SKEIN_VXLAN_PORT=4789", "SKEIN_MIN_SYNC_INTERVAL=250ms", "SKEIN_MASQUERADE=false", "HOME=/root"},
			check: func(f *flags) string {
				return cmp.Diff(flags{nodeName: "n1", proxy: "iptables", port: 4789, minInterval: 250 * time.Millisecond, masquerade: false},
					flags{nodeName: f.nodeName, proxy: f.proxy, port: f.port, minInterval: f.minInterval, masquerade: f.masquerade}, cmp.AllowUnexported(flags{}, dnsFlags{}))
			},
		},
		{
			name: "DNS settings",
			env:  []string{"NODE_NAME=n1", "SKEIN_DNS=false", "SKEIN_CLUSTER_DNS_IP=10.96.0.10", "SKEIN_DNS_TTL=30s", "SKEIN_DNS_POD_RECORDS=false"},
			check: func(f *flags) string {
				return cmp.Diff(dnsFlags{clusterIP: "10.96.0.10", ttl: 30 * time.Second},
					dnsFlags{on: f.dns.on, clusterIP: f.dns.clusterIP, ttl: f.dns.ttl, pods: f.dns.pods}, cmp.AllowUnexported(dnsFlags{}))
			},
		},
		{
			name: "the command line wins",
			args: []string{"--proxy", "none", "--node-name", "cli"},
			env:  []string{"NODE_NAME=env", "SKEIN_PROXY=iptables", "SKEIN_NODE_NAME=also-env"},
			check: func(f *flags) string {
				return cmp.Diff([]string{"cli", "none"}, []string{f.nodeName, f.proxy})
			},
		},
		{
			name: "a setting's own variable beats the downward API's",
			env:  []string{"NODE_NAME=downward", "SKEIN_NODE_NAME=explicit"},
			check: func(f *flags) string {
				return cmp.Diff("explicit", f.nodeName)
			},
		},
		{
			name:    "an unknown key is reported, not fatal",
			env:     []string{"NODE_NAME=n1", "SKEIN_PROXI=iptables"},
			check:   func(f *flags) string { return cmp.Diff("", f.proxy) },
			unknown: []string{"SKEIN_PROXI"},
		},
		{
			name: "a bad value names its variable",
			env:  []string{"NODE_NAME=n1", "SKEIN_VNI=one"},
			err:  `SKEIN_VNI="one": parse error`,
		},
		{
			name: "a DNS address that is not one names its variable's flag",
			env:  []string{"NODE_NAME=n1", "SKEIN_CLUSTER_DNS_IP=10.96.0"},
			err:  `--cluster-dns-ip "10.96.0" is not a usable IP address`,
		},
		{
			name: "a DNS TTL of part of a second is refused",
			env:  []string{"NODE_NAME=n1", "SKEIN_DNS_TTL=1500ms"},
			err:  `--dns-ttl 1.5s: want whole seconds, at least 1s`,
		},
		{
			name: "a Service range that is not a CIDR is refused",
			args: []string{"--service-cidr", "10.96.0.0/12,10.300.0.0/16"},
			env:  []string{"NODE_NAME=n1"},
			err:  `--service-cidr: "10.300.0.0/16" is not a CIDR`,
		},
		{
			name: "a proxy health address without a port is refused",
			args: []string{"--proxy-health-addr", "0.0.0.0"},
			env:  []string{"NODE_NAME=n1"},
			err:  `--proxy-health-addr "0.0.0.0" is not host:port`,
		},
		{
			name: "values from the environment are validated like flags",
			env:  []string{"NODE_NAME=n1", "SKEIN_PROXY=ipvs"},
			err:  `--proxy "ipvs": want nftables, iptables or none`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, unknown, err := parseFlags(tc.args, tc.env)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := tc.check(f); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.unknown, unknown); diff != "" {
				t.Errorf("unknown (-want +got):\n%s", diff)
			}
		})
	}
}
