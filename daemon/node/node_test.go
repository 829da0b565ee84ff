package node

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/internal/nstest"
)

// TestCheckOwnPodCIDRs: this node refuses for itself what every peer
// refuses for it.
func TestCheckOwnPodCIDRs(t *testing.T) {
	host := []netip.Prefix{netip.MustParsePrefix("172.30.0.0/24"), netip.MustParsePrefix("fd00:30::/64")}
	for _, tc := range []struct {
		cidr, reason string
	}{
		{"10.244.1.0/24", ""},
		{"fd00:10:244:1::/64", ""},
		{"0.0.0.0/0", ReasonInvalidPodCIDR},
		{"::/0", ReasonInvalidPodCIDR},
		{"172.30.0.0/16", ReasonCoversHostNetwork},
		{"172.30.0.128/25", ReasonCoversHostNetwork},
		{"127.0.0.0/8", ReasonInvalidPodCIDR},
		{"169.254.0.0/16", ReasonInvalidPodCIDR},
		{"224.0.0.0/4", ReasonInvalidPodCIDR},
	} {
		reason, detail := CheckOwnPodCIDRs([]netip.Prefix{netip.MustParsePrefix(tc.cidr)}, host)
		if reason != tc.reason {
			t.Errorf("%s: reason %q (%s), want %q", tc.cidr, reason, detail, tc.reason)
		}
	}
}

// TestResolve: the underlay comes from --node-ip, else --iface, else the
// Node's InternalIP or its skein.dev/underlay-ip annotation; the MTU is
// its interface's; skein's own links are not host networks; an address
// on no interface is an error naming it.
func TestResolve(t *testing.T) {
	ns := nstest.New(t, "resolve")
	ns.Do(t, func() {
		for _, l := range []struct {
			name, addr string
			mtu        int
		}{{"skt-under", "172.31.5.2/24", 1400}, {"skt-other", "192.0.2.9/24", 9000}, {"skt-br", "10.244.3.1/24", 1500}} {
			link := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.name, MTU: l.mtu}}
			if err := netlink.LinkAdd(link); err != nil {
				t.Fatal(err)
			}
			addr, err := netlink.ParseAddr(l.addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := netlink.AddrAdd(link, addr); err != nil {
				t.Fatal(err)
			}
		}
		st, err := cluster.ParseFile([]byte(`apiVersion: v1
kind: Node
metadata: {name: a}
status: {addresses: [{type: InternalIP, address: 172.31.5.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: b, annotations: {skein.dev/underlay-ip: 192.0.2.9}}
status: {addresses: [{type: InternalIP, address: 172.31.5.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: c}
status: {addresses: [{type: InternalIP, address: 198.51.100.1}]}
`))
		if err != nil {
			t.Fatal(err)
		}
		skip := []string{"skt-br"}
		for _, tc := range []struct {
			name    string
			o       Options
			want    string
			mtu     int
			wantErr string
		}{
			{"InternalIP", Options{Name: "a", Skip: skip}, "172.31.5.2", 1400, ""},
			{"annotation", Options{Name: "b", Skip: skip}, "192.0.2.9", 9000, ""},
			{"--node-ip wins", Options{Name: "a", NodeIP: netip.MustParseAddr("192.0.2.9"), Skip: skip}, "192.0.2.9", 9000, ""},
			{"--iface", Options{Name: "c", Iface: "skt-other", Skip: skip}, "192.0.2.9", 9000, ""},
			{"on no interface", Options{Name: "c", Skip: skip}, "", 0, "198.51.100.1 is on no interface"},
			{"not in the cluster", Options{Name: "d", Skip: skip}, "", 0, `node "d" is not in the cluster`},
		} {
			id, err := Resolve(st, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("%s: err %v, want one saying %q", tc.name, err, tc.wantErr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if id.Underlay.String() != tc.want || id.MTU != tc.mtu {
				t.Errorf("%s: underlay %s mtu %d, want %s mtu %d", tc.name, id.Underlay, id.MTU, tc.want, tc.mtu)
			}
			var nets []string
			for _, p := range id.HostNets {
				nets = append(nets, p.String())
			}
			if slices.Contains(nets, "10.244.3.0/24") || !slices.Contains(nets, "172.31.5.0/24") {
				t.Errorf("%s: host networks %v: want the underlay's, never a skipped link's", tc.name, nets)
			}
		}
	})
}
