package cluster

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestClusterIPs: what a Service's clusterIP fields give, as the Service
// proxy and the DNS server both read them.
func TestClusterIPs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ip       string
		ips      []string
		want     string // the addresses, then the problems
		headless bool
	}{
		{"clusterIP only (a file's object)", "10.96.0.1", nil, "[10.96.0.1] []", false},
		{"dual-stack", "10.96.0.1", []string{"10.96.0.1", "fd00::1"}, "[10.96.0.1 fd00::1] []", false},
		{"clusterIPs win", "10.96.0.9", []string{"fd00::1"}, "[fd00::1] []", false},
		{"mapped IPv4 unmapped", "::ffff:10.96.0.1", nil, "[10.96.0.1] []", false},
		{"none", "", nil, "[] []", false},
		{"headless", "None", []string{"None"}, "[] []", true},
		{"headless, clusterIPs only", "", []string{"None"}, "[] []", true},
		{"unusable", "", []string{"127.0.0.1", "224.0.0.1", "169.254.1.1", "fe80::1%eth0", "255.255.255.255", "x", "10.96.0.2"},
			`[10.96.0.2] [clusterIP "127.0.0.1" is not a usable IP address clusterIP "224.0.0.1" is not a usable IP address ` +
				`clusterIP "169.254.1.1" is not a usable IP address clusterIP "fe80::1%eth0" is not a usable IP address ` +
				`clusterIP "255.255.255.255" is not a usable IP address clusterIP "x" is not a usable IP address]`, false},
		{"two of a family", "", []string{"10.96.0.1", "10.96.0.2", "fd00::1"}, "[10.96.0.1 fd00::1] [two IPv4 clusterIPs]", false},
	} {
		svc := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: tc.ip, ClusterIPs: tc.ips}}
		ips, problems := ClusterIPs(svc)
		if ips == nil {
			ips = []netip.Addr{}
		}
		got := fmt.Sprint(ips, " ", fmt.Sprint(problems))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		if Headless(svc) != tc.headless {
			t.Errorf("%s: headless %v, want %v", tc.name, !tc.headless, tc.headless)
		}
	}
}
