package conf

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadDefaults(t *testing.T) {
	n, err := Load([]byte(`{"cniVersion":"1.0.0","name":"pods","type":"skein","ranges":[{"subnet":"10.244.1.0/24"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Range{
		Subnet:  netip.MustParsePrefix("10.244.1.0/24"),
		Start:   netip.MustParseAddr("10.244.1.1"),
		End:     netip.MustParseAddr("10.244.1.254"),
		Gateway: netip.MustParseAddr("10.244.1.1"),
	}
	if diff := cmp.Diff([]Range{want}, n.Ranges, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ranges (-want +got):\n%s", diff)
	}
	if n.Bridge != "cni0" || n.MTU != 1500 || !n.Hairpin || n.DataDir != "/var/lib/cni/skein/pods" {
		t.Errorf("defaults: bridge=%q mtu=%d hairpin=%v dataDir=%q", n.Bridge, n.MTU, n.Hairpin, n.DataDir)
	}
}

func TestLoadDualStack(t *testing.T) {
	n, err := Load([]byte(`{"cniVersion":"1.1.0","name":"pods","type":"skein","mtu":1450,
		"ranges":[{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.10","rangeEnd":"10.244.1.20"},{"subnet":"fd00:10:244:1::/64"}],
		"exclude":["10.244.1.15","fd00:10:244:1::/120"],
		"routes":[{"dst":"10.96.0.0/12"},{"dst":"fd00:96::/108","gw":"fd00:10:244:1::1"}],
		"runtimeConfig":{"ips":["10.244.1.12/24"]},
		"dataDir":"/run/skein-test"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !n.HasFamily(4) || !n.HasFamily(6) {
		t.Errorf("families: v4=%v v6=%v", n.HasFamily(4), n.HasFamily(6))
	}
	if got := n.Ranges[1].End.String(); got != "fd00:10:244:1:ffff:ffff:ffff:ffff" {
		t.Errorf("v6 range end = %s", got)
	}
	if got := n.Exclude[1].String(); got != "fd00:10:244:1::/120" {
		t.Errorf("exclude = %s", got)
	}
	if len(n.RequestedIPs) != 1 || n.RequestedIPs[0].String() != "10.244.1.12" {
		t.Errorf("requested = %v", n.RequestedIPs)
	}
	if n.DataDir != "/run/skein-test/pods" {
		t.Errorf("dataDir = %s", n.DataDir)
	}
}

func TestLoadRejects(t *testing.T) {
	base := func(extra string) string {
		return `{"cniVersion":"1.0.0","name":"pods","type":"skein"` + extra + `}`
	}
	sub := `,"ranges":[{"subnet":"10.244.1.0/24"}]`
	tests := []struct {
		name   string
		config string
		field  string // the field the error must name; "" for a decode error
		msg    string // a substring of the message
	}{
		{"malformed JSON", `{"cniVersion":`, "", "decode"},
		{"wrong type", `{"cniVersion":"1.0.0","name":"pods","mtu":"big"}`, "", "decode"},
		{"missing cniVersion", `{"name":"pods","ranges":[{"subnet":"10.244.1.0/24"}]}`, "cniVersion", "required"},
		{"unknown cniVersion", `{"cniVersion":"9.9.9","name":"pods","ranges":[{"subnet":"10.244.1.0/24"}]}`, "cniVersion", "not supported"},
		{"missing name", `{"cniVersion":"1.0.0","ranges":[{"subnet":"10.244.1.0/24"}]}`, "name", "required"},
		{"name with a slash", `{"cniVersion":"1.0.0","name":"../etc","ranges":[{"subnet":"10.244.1.0/24"}]}`, "name", "letters"},
		{"no ranges", base(``), "ranges", "at least one"},
		{"missing subnet", base(`,"ranges":[{}]`), "ranges[0].subnet", "required"},
		{"garbage subnet", base(`,"ranges":[{"subnet":"10.244.1/24x"}]`), "ranges[0].subnet", "not a CIDR"},
		{"unmasked subnet", base(`,"ranges":[{"subnet":"10.244.1.7/24"}]`), "ranges[0].subnet", "did you mean 10.244.1.0/24"},
		{"subnet too small v4", base(`,"ranges":[{"subnet":"10.244.1.0/31"}]`), "ranges[0].subnet", "too small"},
		{"subnet too small v6", base(`,"ranges":[{"subnet":"fd00::/127"}]`), "ranges[0].subnet", "too small"},
		{"no room once excluded", base(`,"ranges":[{"subnet":"10.244.1.0/30"}],"exclude":["10.244.1.2"]`), "ranges[0]", "no address"},
		{"gateway outside", base(`,"ranges":[{"subnet":"10.244.1.0/24","gateway":"10.244.2.1"}]`), "ranges[0].gateway", "outside subnet"},
		{"gateway is broadcast", base(`,"ranges":[{"subnet":"10.244.1.0/24","gateway":"10.244.1.255"}]`), "ranges[0].gateway", "broadcast"},
		{"rangeStart after rangeEnd", base(`,"ranges":[{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.50","rangeEnd":"10.244.1.20"}]`), "ranges[0].rangeStart", "after rangeEnd"},
		{"rangeEnd outside", base(`,"ranges":[{"subnet":"10.244.1.0/24","rangeEnd":"10.244.3.20"}]`), "ranges[0].rangeEnd", "outside"},
		{"overlapping ranges", base(`,"ranges":[{"subnet":"10.244.0.0/16"},{"subnet":"10.244.1.0/24"}]`), "ranges[1].subnet", "overlaps ranges[0]"},
		{"mtu too small", base(sub + `,"mtu":40`), "mtu", "out of range"},
		{"mtu too big", base(sub + `,"mtu":70000`), "mtu", "out of range"},
		{"mtu too small for IPv6", base(`,"ranges":[{"subnet":"fd00::/64"}],"mtu":1000`), "mtu", "1280"},
		{"bridge name too long", base(sub + `,"bridge":"a-very-long-bridge-name"`), "bridge", "longer than 15"},
		{"exclude garbage", base(sub + `,"exclude":["nope"]`), "exclude[0]", "neither"},
		{"exclude elsewhere", base(sub + `,"exclude":["10.9.9.9"]`), "exclude[0]", "no configured subnet"},
		{"route garbage", base(sub + `,"routes":[{"dst":"x"}]`), "routes[0].dst", "not a CIDR"},
		{"route wrong family", base(sub + `,"routes":[{"dst":"fd00::/8"}]`), "routes[0].dst", "no range of that address family"},
		{"route gw family", base(sub + `,"routes":[{"dst":"10.0.0.0/8","gw":"fd00::1"}]`), "routes[0].gw", "same family"},
		{"relative dataDir", base(sub + `,"dataDir":"var/lib"`), "dataDir", "absolute"},
		{"bad cluster domain", base(sub + `,"clusterDomain":"-bad-.local"`), "clusterDomain", "DNS"},
		{"requested garbage", base(sub + `,"runtimeConfig":{"ips":["nope"]}`), "runtimeConfig.ips", "not an IP"},
		{"two requested v4", base(sub + `,"runtimeConfig":{"ips":["10.244.1.5","10.244.1.6"]}`), "runtimeConfig.ips", "more than one IPv4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.config))
			if err == nil {
				t.Fatal("Load accepted the config")
			}
			if tc.field == "" {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("want a DecodeError, got %T: %v", err, err)
				}
			} else {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("want a conf.Error, got %T: %v", err, err)
				}
				if ce.Field != tc.field {
					t.Errorf("field = %q, want %q (%v)", ce.Field, tc.field, err)
				}
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestReserved(t *testing.T) {
	n, err := Load([]byte(`{"cniVersion":"1.0.0","name":"pods","ranges":[{"subnet":"10.0.0.0/30"},{"subnet":"fd00::/126"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr     string
		reserved bool
	}{
		{"10.0.0.0", true}, {"10.0.0.1", true}, {"10.0.0.2", false}, {"10.0.0.3", true},
		{"fd00::", true}, {"fd00::1", true}, {"fd00::2", false}, {"fd00::3", false},
	} {
		r := n.Ranges[0]
		if netip.MustParseAddr(tc.addr).Is6() {
			r = n.Ranges[1]
		}
		if got := r.Reserved(netip.MustParseAddr(tc.addr)); got != tc.reserved {
			t.Errorf("Reserved(%s) = %v, want %v", tc.addr, got, tc.reserved)
		}
	}
}

// FuzzLoad feeds arbitrary bytes to the parser: it must never panic, and a
// config it accepts must satisfy the invariants the IPAM relies on.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"pods","ranges":[{"subnet":"10.244.1.0/24"}]}`))
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"p","ranges":[{"subnet":"fd00::/64","rangeStart":"fd00::5"},{"subnet":"10.0.0.0/30"}],"exclude":["fd00::/120"],"mtu":1400}`))
	f.Add([]byte(`{"cniVersion":"0.3.1","name":"x","ranges":[{"subnet":"10.0.0.0/8","gateway":"10.0.0.9","rangeEnd":"10.0.0.8"}],"routes":[{"dst":"0.0.0.0/0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Load(data)
		if err != nil {
			return
		}
		if n.MTU < 68 || n.MTU > 65535 || len(n.Ranges) == 0 {
			t.Fatalf("accepted bad config: %+v", n)
		}
		for i, r := range n.Ranges {
			if !r.Subnet.Contains(r.Start) || !r.Subnet.Contains(r.End) || !r.Subnet.Contains(r.Gateway) || r.Start.Compare(r.End) > 0 {
				t.Fatalf("range %d inconsistent: %+v", i, r)
			}
			if !hasUsable(r, n.Exclude) {
				t.Fatalf("range %d has no usable address: %+v", i, r)
			}
			for j := 0; j < i; j++ {
				if n.Ranges[j].Subnet.Overlaps(r.Subnet) {
					t.Fatalf("ranges %d and %d overlap", j, i)
				}
			}
		}
	})
}
