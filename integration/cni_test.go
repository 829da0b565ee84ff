package integration

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/skein-net/skein/integration/harness"
)

func TestPodsReachEachOther(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ranges   []map[string]string
		gateways []string
	}{
		{"ipv4", []map[string]string{{"subnet": "10.77.0.0/24"}}, []string{"10.77.0.1"}},
		{"ipv6", []map[string]string{{"subnet": "fd77::/64"}}, []string{"fd77::1"}},
		{"dual-stack", []map[string]string{{"subnet": "10.77.0.0/24"}, {"subnet": "fd77::/64"}}, []string{"10.77.0.1", "fd77::1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{ranges: tc.ranges})
			a, b := e.addPod("pod-a"), e.addPod("pod-b")
			if len(a.IPs) != len(tc.ranges) || len(b.IPs) != len(tc.ranges) {
				t.Fatalf("addresses: a=%v b=%v, want one per family", a.IPs, b.IPs)
			}
			for i, r := range tc.ranges {
				subnet := netip.MustParsePrefix(r["subnet"])
				for _, ip := range []string{a.IPs[i], b.IPs[i]} {
					if !subnet.Contains(netip.MustParseAddr(ip)) {
						t.Errorf("%s is outside %s", ip, subnet)
					}
				}
				if a.IPs[i] == b.IPs[i] {
					t.Fatalf("both pods got %s", a.IPs[i])
				}
				if err := a.NS.Ping(ctx(t), b.IPs[i], 3); err != nil {
					t.Errorf("a -> b: %v", err)
				}
				if err := b.NS.Ping(ctx(t), tc.gateways[i], 1); err != nil {
					t.Errorf("b -> gateway: %v", err)
				}
				// No NAT between pods: b sees a's own address.
				if got := sourceSeen(t, b, b.IPs[i], a); got != a.IPs[i] {
					t.Errorf("b saw source %s, want a's address %s", got, a.IPs[i])
				}
			}
		})
	}
}

func TestConcurrentAddDel(t *testing.T) {
	const n = 64
	e := newEnv(t, envOpts{})
	pods := make([]*harness.Pod, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pods[i], errs[i] = e.node.AddPod(ctx(t), uniq("pod"), fmt.Sprintf("c%d", i))
			if pods[i] != nil {
				t.Cleanup(func() { pods[i].NS.Delete() })
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i, p := range pods {
		if errs[i] != nil {
			t.Fatalf("ADD %d: %v", i, errs[i])
		}
		if j, dup := seen[p.IPs[0]]; dup {
			t.Fatalf("%s given to pods %d and %d", p.IPs[0], j, i)
		}
		seen[p.IPs[0]] = i
	}
	if got := len(e.records()); got != n {
		t.Fatalf("%d reservations on disk, want %d", got, n)
	}
	// Every pod answers, from a neighbour pod across the bridge.
	sem := make(chan struct{}, 16)
	for i, p := range pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := pods[(i+1)%n].NS.Ping(ctx(t), p.IPs[0], 1); err != nil {
				t.Errorf("pod %d unreachable: %v", i, err)
			}
		}()
	}
	wg.Wait()
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.node.Del(ctx(t), p.RT)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("DEL %d: %v", i, err)
		}
	}
	e.assertNothingLeft()
}

func TestDelIsIdempotent(t *testing.T) {
	e := newEnv(t, envOpts{})

	t.Run("twice", func(t *testing.T) {
		p := e.addPod("twice")
		for i := 0; i < 2; i++ {
			if err := e.node.Del(ctx(t), p.RT); err != nil {
				t.Fatalf("DEL %d: %v", i+1, err)
			}
		}
		e.assertNothingLeft()
	})
	t.Run("without netns", func(t *testing.T) {
		p := e.addPod("nonetns")
		rt := *p.RT
		rt.NetNS = ""
		if err := e.node.Del(ctx(t), &rt); err != nil {
			t.Fatalf("DEL without netns: %v", err)
		}
		e.assertNothingLeft()
	})
	t.Run("after the netns is gone", func(t *testing.T) {
		p := e.addPod("gone")
		if err := p.NS.Delete(); err != nil {
			t.Fatal(err)
		}
		if err := e.node.Del(ctx(t), p.RT); err != nil {
			t.Fatalf("DEL after netns removal: %v", err)
		}
		e.assertNothingLeft()
	})
	t.Run("never added", func(t *testing.T) {
		rt := harness.RuntimeConf("never", "", "default")
		if err := e.node.Del(ctx(t), rt); err != nil {
			t.Fatalf("DEL of an unknown container: %v", err)
		}
	})
}

func TestCheck(t *testing.T) {
	e := newEnv(t, envOpts{ranges: []map[string]string{{"subnet": "10.77.0.0/24"}, {"subnet": "fd77::/64"}}})
	p := e.addPod("healthy")
	if err := e.node.Check(ctx(t), p.RT); err != nil {
		t.Fatalf("CHECK on a healthy pod: %v", err)
	}

	t.Run("address removed", func(t *testing.T) {
		if _, err := p.NS.Exec(ctx(t), "ip", "addr", "del", p.IPs[0]+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		err := e.node.Check(ctx(t), p.RT)
		if err == nil || !strings.Contains(err.Error(), "lacks address "+p.IPs[0]+"/24") {
			t.Fatalf("CHECK = %v, want it to name the missing address", err)
		}
		if code := cniCode(t, err); code != 104 {
			t.Errorf("code %d, want 104", code)
		}
	})
	t.Run("veth removed", func(t *testing.T) {
		q := e.addPod("broken")
		veths := e.hostVeths()
		if _, err := e.node.NS.Exec(ctx(t), "ip", "link", "del", veths[len(veths)-1]); err != nil {
			t.Fatal(err)
		}
		err := e.node.Check(ctx(t), q.RT)
		if err == nil || !strings.Contains(err.Error(), "host veth") || !strings.Contains(err.Error(), "interface eth0 is missing") {
			t.Fatalf("CHECK = %v, want it to name the missing veth", err)
		}
	})
}

func TestEveryCNIVersion(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			e := newEnv(t, envOpts{cniVersion: v})
			a, b := e.addPod("a"), e.addPod("b")
			if err := a.NS.Ping(ctx(t), b.IPs[0], 1); err != nil {
				t.Fatal(err)
			}
			if v != "0.3.0" && v != "0.3.1" {
				if err := e.node.Check(ctx(t), a.RT); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			for _, p := range []*harness.Pod{a, b} {
				if err := e.node.Del(ctx(t), p.RT); err != nil {
					t.Fatalf("DEL: %v", err)
				}
			}
			e.assertNothingLeft()
		})
	}
}

func TestBridge(t *testing.T) {
	t.Run("repaired", func(t *testing.T) {
		e := newEnv(t, envOpts{extra: map[string]any{"mtu": 1450}})
		// A bridge left with the wrong MTU, down, and the gateway with the
		// wrong prefix length.
		for _, args := range [][]string{
			{"ip", "link", "add", e.bridge, "type", "bridge"},
			{"ip", "link", "set", e.bridge, "mtu", "1300"},
			{"ip", "addr", "add", "10.77.0.1/16", "dev", e.bridge},
		} {
			if _, err := e.node.NS.Exec(ctx(t), args...); err != nil {
				t.Fatal(err)
			}
		}
		p := e.addPod("a")
		var br netlink.Link
		var addrs []netlink.Addr
		if err := e.node.NS.Do(func() error {
			var err error
			if br, err = netlink.LinkByName(e.bridge); err != nil {
				return err
			}
			addrs, err = netlink.AddrList(br, netlink.FAMILY_V4)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if br.Attrs().MTU != 1450 || br.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("bridge MTU %d flags %v, want 1450 and up", br.Attrs().MTU, br.Attrs().Flags)
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.77.0.1/24" {
			t.Errorf("bridge addresses %v, want only 10.77.0.1/24", addrs)
		}
		if err := p.NS.Ping(ctx(t), "10.77.0.1", 1); err != nil {
			t.Error(err)
		}
		// Hairpin is on for the pod's port, so a pod can reach itself
		// through an address that loops back over the bridge.
		var hairpin bool
		veth := e.hostVeths()[0]
		if err := e.node.NS.Do(func() error {
			l, err := netlink.LinkByName(veth)
			if err != nil {
				return err
			}
			pi, err := netlink.LinkGetProtinfo(l)
			hairpin = pi.Hairpin
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !hairpin {
			t.Error("hairpin mode is off on the pod's bridge port")
		}
		// The host side is a bridge port: no address of its own, not even
		// an IPv6 link-local one.
		if out, err := e.node.NS.Exec(ctx(t), "ip", "-6", "-o", "addr", "show", "dev", e.hostVeths()[0]); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("host veth has IPv6 addresses: %q (%v)", out, err)
		}
	})
	t.Run("foreign subnet", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		for _, args := range [][]string{
			{"ip", "link", "add", e.bridge, "type", "bridge"},
			{"ip", "addr", "add", "10.78.0.1/24", "dev", e.bridge},
		} {
			if _, err := e.node.NS.Exec(ctx(t), args...); err != nil {
				t.Fatal(err)
			}
		}
		_, err := e.node.AddPod(ctx(t), uniq("pod"), "x")
		if err == nil || !strings.Contains(err.Error(), "holds 10.78.0.1/24, which is in none of this network's subnets (10.77.0.0/24)") {
			t.Fatalf("ADD = %v, want it to name the foreign address", err)
		}
		if code := cniCode(t, err); code != 103 {
			t.Errorf("code %d, want 103", code)
		}
		e.assertNothingLeft()
	})
}
