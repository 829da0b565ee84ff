package dns

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/internal/nstest"
)

// TestControllerLifecycle: Start serves the node-local address, UDP
// and TCP, SERVFAIL for the zone until the first snapshot; Sync answers
// from it; an upstream that is the server itself is left out and named
// by Ready; Cleanup stops serving and removes the device.
func TestControllerLifecycle(t *testing.T) {
	ns := nstest.New(t, "dnsctl")
	ctx := context.Background()
	ns.Do(t, func() {
		lo, _ := netlink.LinkByName("lo")
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		dev, err := NewDevice()
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{Domain: "cluster.local", Addrs: []netip.Addr{DefaultAddr}, Upstreams: []string{"169.254.20.10"}},
			Deps{Device: dev})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Shutdown)
		// A query before the first snapshot waits for it (a restarted
		// skeind lists the cluster in a moment), and is answered then.
		// The socket is made here, in the test's namespace; the goroutine
		// that waits on it may run on a thread in the host's.
		conn, err := net.Dial("udp", net.JoinHostPort(DefaultAddr.String(), "53"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		early := make(chan *miekg.Msg, 1)
		go func() {
			req := new(miekg.Msg)
			req.SetQuestion("backend.shop.svc.cluster.local.", miekg.TypeA)
			co := &miekg.Conn{Conn: conn}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			var r *miekg.Msg
			if err := co.WriteMsg(req); err == nil {
				r, _ = co.ReadMsg()
			}
			early <- r
		}()
		time.Sleep(100 * time.Millisecond)
		if why := c.Ready(); !strings.Contains(why, "snapshot") {
			t.Errorf("Ready before the first snapshot: %q", why)
		}
		if err := c.Sync(ctx, testState(t, nil)); err != nil {
			t.Fatal(err)
		}
		if r := <-early; r == nil || len(r.Answer) != 1 {
			t.Errorf("a query from before the first snapshot: %v, want its answer", r)
		}
		for _, network := range []string{"udp", "tcp"} {
			r := askAt(t, network, "backend.shop.svc.cluster.local.", miekg.TypeA)
			if len(r.Answer) != 1 || r.Answer[0].(*miekg.A).A.String() != "10.96.0.20" {
				t.Errorf("%s: answer %v", network, r.Answer)
			}
		}
		// The device follows the addresses, not the snapshot: a Sync puts
		// it back at once when it went, and rewrites its table (an nft
		// run) only once deviceEvery has passed.
		link, err := netlink.LinkByName(DeviceName)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(link); err != nil {
			t.Fatal(err)
		}
		if err := c.Sync(ctx, testState(t, nil)); err != nil {
			t.Fatal(err)
		}
		if r := askAt(t, "udp", "backend.shop.svc.cluster.local.", miekg.TypeA); len(r.Answer) != 1 {
			t.Errorf("after the device was deleted and a Sync: answer %v", r.Answer)
		}
		table := func() bool { return exec.Command("nft", "list", "table", "inet", Table).Run() == nil }
		if out, err := exec.Command("nft", "delete", "table", "inet", Table).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if err := c.Sync(ctx, testState(t, nil)); err != nil || table() {
			t.Errorf("a Sync within deviceEvery rewrote the table (err %v)", err)
		}
		c.deviceEvery = 0
		if err := c.Sync(ctx, testState(t, nil)); err != nil || !table() {
			t.Errorf("a Sync after deviceEvery left the table out (err %v)", err)
		}
		if why := c.Ready(); !strings.Contains(why, "loops back") || !strings.Contains(why, "169.254.20.10:53") {
			t.Errorf("Ready with the server as its own upstream: %q", why)
		}
		other, err := New(Config{Domain: "cluster.local", Addrs: []netip.Addr{DefaultAddr}, Upstreams: []string{"192.0.2.1"}}, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Start(ctx); err == nil || !strings.Contains(err.Error(), "169.254.20.10:53") {
			t.Errorf("a second server on the same address: %v, want an error naming it", err)
		}
		if err := c.Cleanup(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName(DeviceName); err == nil {
			t.Error("skein.dns stays after Cleanup")
		}
	})
}

// askAt asks the node-local address over network, from the caller's
// thread (so from its namespace).
func askAt(t *testing.T, network, name string, qtype uint16) *miekg.Msg {
	t.Helper()
	req := new(miekg.Msg)
	req.SetQuestion(name, qtype)
	cl := &miekg.Client{Net: network}
	r, _, err := cl.Exchange(req, net.JoinHostPort(DefaultAddr.String(), "53"))
	if err != nil {
		t.Fatalf("%s: %v", network, err)
	}
	return r
}

// TestWithdraw: a Service the next snapshot lacks is NXDOMAIN from
// Withdraw on, also if an older snapshot is published meanwhile, until
// the snapshot itself is; the rest of the zone answers throughout. The
// same with snapshots as sources seal them and as tests make them.
func TestWithdraw(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		testWithdraw(t, sealed)
	}
}

func testWithdraw(t *testing.T, sealed bool) {
	ctx := context.Background()
	c, err := New(Config{Domain: "cluster.local", Addrs: []netip.Addr{DefaultAddr}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	full := testState(t, nil)
	seal := func(st, prev *cluster.State) {
		if sealed {
			st.SortByKey()
			st.Seal(prev)
		}
	}
	seal(full, nil)
	less := &cluster.State{Nodes: full.Nodes, EndpointSlices: full.EndpointSlices}
	for _, s := range full.Services {
		if s.Name != "backend" {
			less.Services = append(less.Services, s)
		}
	}
	seal(less, full)
	rcode := func(name string) string {
		return miekg.RcodeToString[ask(c.h, name, miekg.TypeA).Rcode]
	}
	const backend, db = "backend.shop.svc.cluster.local.", "db.shop.svc.cluster.local."
	for _, step := range []struct {
		what    string
		do      func()
		backend string
	}{
		{"the first snapshot", func() { _ = c.Sync(ctx, full) }, "NOERROR"},
		{"withdrawn before the proxy programs its removal", func() { c.Withdraw(less) }, "NXDOMAIN"},
		{"an older snapshot published meanwhile", func() { _ = c.Sync(ctx, full) }, "NXDOMAIN"},
		{"the snapshot without it", func() { _ = c.Sync(ctx, less) }, "NXDOMAIN"},
		{"added again", func() { _ = c.Sync(ctx, full) }, "NOERROR"},
	} {
		step.do()
		if got := rcode(backend); got != step.backend {
			t.Errorf("sealed %v, %s: backend is %s, want %s", sealed, step.what, got, step.backend)
		}
		if got := rcode(db); got != "NOERROR" {
			t.Errorf("sealed %v, %s: db is %s", sealed, step.what, got)
		}
	}
	// A snapshot that keeps every Service (the common case: a new
	// Service, an endpoint changed) rebuilds nothing before the proxy
	// programs it.
	z := c.h.zone.Load()
	c.Withdraw(full)
	if c.h.zone.Load() != z {
		t.Errorf("sealed %v: a snapshot keeping every Service rebuilt the zone", sealed)
	}
	// One whose Service has another address withdraws it.
	moved := &cluster.State{Nodes: full.Nodes, EndpointSlices: full.EndpointSlices}
	for _, s := range full.Services {
		if s.Name == "backend" {
			s = s.DeepCopy()
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.99.99", []string{"10.96.99.99"}
		}
		moved.Services = append(moved.Services, s)
	}
	seal(moved, full)
	c.Withdraw(moved)
	if got := rcode(backend); got != "NXDOMAIN" {
		t.Errorf("sealed %v: a Service given another address: backend is %s before the proxy programs it, want NXDOMAIN", sealed, got)
	}
	if got := rcode(db); got != "NOERROR" {
		t.Errorf("sealed %v: a Service given another address: db is %s", sealed, got)
	}
}
