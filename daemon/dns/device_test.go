package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/skein-net/skein/internal/nstest"
)

// deviceAddrs lists the addresses on skein.dns.
func deviceAddrs(t *testing.T) []string {
	t.Helper()
	link, err := netlink.LinkByName(DeviceName)
	if err != nil {
		t.Fatal(err)
	}
	list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		if a.IP.IsLinkLocalUnicast() && a.IP.To4() == nil {
			continue // the kernel's own fe80:: address
		}
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

// TestDevice: Ensure puts exactly the served addresses on skein.dns,
// and the rules that keep DNS to them untracked in table inet
// skein-dns; again, it follows a changed list; Remove takes both away,
// and twice is no error.
func TestDevice(t *testing.T) {
	ns := nstest.New(t, "dnsdev")
	ctx := context.Background()
	ns.Do(t, func() {
		d, err := NewDevice()
		if err != nil {
			t.Fatal(err)
		}
		local, cluster, six := DefaultAddr, netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:96::a")
		if err := d.Ensure(ctx, []netip.Addr{local, cluster, six}, 53); err != nil {
			t.Fatal(err)
		}
		if got, want := deviceAddrs(t), []string{"10.96.0.10/32", "169.254.20.10/32", "fd00:96::a/128"}; !slices.Equal(got, want) {
			t.Errorf("addresses %v, want %v", got, want)
		}
		out, err := exec.Command("nft", "list", "table", "inet", Table).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, want := range []string{"ip daddr 169.254.20.10 udp dport 53 notrack", "ip6 saddr fd00:96::a tcp sport 53 notrack", "hook prerouting priority raw", "hook output priority raw"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
		testHold(t, local)
		if err := d.Ensure(ctx, []netip.Addr{local}, 53); err != nil {
			t.Fatal(err)
		}
		if got, want := deviceAddrs(t), []string{"169.254.20.10/32"}; !slices.Equal(got, want) {
			t.Errorf("after shrinking: addresses %v, want %v", got, want)
		}
		out, _ = exec.Command("nft", "list", "table", "inet", Table).CombinedOutput()
		if strings.Contains(string(out), "10.96.0.10") {
			t.Errorf("rules for a removed address stay:\n%s", out)
		}
		for range 2 {
			if err := d.Remove(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := netlink.LinkByName(DeviceName); err == nil {
			t.Error("skein.dns stays after Remove")
		}
		if out, err := exec.Command("nft", "list", "table", "inet", Table).CombinedOutput(); err == nil {
			t.Errorf("table stays after Remove:\n%s", out)
		}
	})
}

// TestDeviceNotOurs: a device of another kind that holds the name is
// an error naming it, and is left as it was.
func TestDeviceNotOurs(t *testing.T) {
	ns := nstest.New(t, "dnsnot")
	ns.Do(t, func() {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: DeviceName}, PeerName: "skt-dnspeer"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		d, err := NewDevice()
		if err != nil {
			t.Fatal(err)
		}
		err = d.Ensure(context.Background(), []netip.Addr{DefaultAddr}, 53)
		if err == nil || !strings.Contains(err.Error(), "veth") {
			t.Fatalf("Ensure over a veth: %v, want an error naming it", err)
		}
		if got := deviceAddrs(t); len(got) != 0 {
			t.Errorf("addresses put on the veth: %v", got)
		}
	})
}

// testHold: with no server on the address, a query waits (dropped, the
// client asks again) rather than being refused; with one, it is
// answered. Run in the test's namespace.
func testHold(t *testing.T, addr netip.Addr) {
	t.Helper()
	// Local traffic goes through lo, down in a new namespace.
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	server := netip.AddrPortFrom(addr, 53).String()
	ask := func() error {
		c, err := net.Dial("udp", server)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write([]byte("?")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 8))
		return err
	}
	var ne net.Error
	var pc net.PacketConn
	if err := ask(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("UDP with no server listening: %v, want a timeout (held), not a refusal", err)
	}
	if _, err := net.DialTimeout("tcp", server, 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("TCP with no server listening: %v, want a timeout (held), not a reset", err)
	}
	pc, err = net.ListenPacket("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 8)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	if err := ask(); err != nil {
		t.Errorf("UDP with a server listening: %v", err)
	}
}
