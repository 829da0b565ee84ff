package nftwire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/internal/nstest"
)

const table = "skt-wire"

// conn opens a socket in a namespace of the test's own.
func conn(t *testing.T, ns *nstest.NS) *Conn {
	t.Helper()
	var c *Conn
	var err error
	ns.Do(t, func() { c, err = Open() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// nft runs nft in the namespace.
func nft(t *testing.T, ns *nstest.NS, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func send(t *testing.T, c *Conn, b *Batch) {
	t.Helper()
	if err := c.Transact(b); err != nil {
		t.Fatal(err)
	}
}

// TestTransactRefused: a transaction the kernel refuses changes nothing
// and names the message it refused; the socket goes on working.
func TestTransactRefused(t *testing.T) {
	ns := nstest.New(t, "nftwire-refused")
	c := conn(t, ns)
	jump, err := expr.Marshal(unix.NFPROTO_IPV4, &expr.Verdict{Kind: expr.VerdictJump, Chain: "b"})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBatch(unix.NFPROTO_IPV4, table)
	b.AddTable("")
	b.AddChain("a", nil)
	b.AddRule("a", [][]byte{jump}, "jump b") // no chain b
	b.AddChain("c", nil)
	err = c.Transact(b)
	if err == nil || !strings.Contains(err.Error(), "add rule a jump b") {
		t.Fatalf("a rule jumping to no chain: %v", err)
	}
	if out := nft(t, ns, "list", "tables"); strings.Contains(out, table) {
		t.Errorf("a refused transaction left %q", out)
	}
	b = NewBatch(unix.NFPROTO_IPV4, table)
	b.AddTable("a comment")
	b.AddChain("b", &Hook{Type: "filter", Num: Hooks["output"], Priority: -10})
	send(t, c, b)
	out := nft(t, ns, "list", "table", "ip", table)
	for _, want := range []string{`comment "a comment"`, "type filter hook output priority filter - 10"} {
		if !strings.Contains(out, want) {
			t.Errorf("after a good transaction the table is\n%s\nwithout %q", out, want)
		}
	}
}

// TestManyElements: thousands of elements replaced at once are more than
// one netlink attribute or the default socket buffer holds; they still go
// as one transaction.
func TestManyElements(t *testing.T) {
	ns := nstest.New(t, "nftwire-many")
	c := conn(t, ns)
	const n = 20000
	key := func(i int) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(i)) }
	data := func(i, port int) []byte {
		return binary.BigEndian.AppendUint16([]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}, uint16(port))
	}
	m := Set{Flags: unix.NFT_SET_MAP}
	m.KeyType, m.KeyLen = Concat(Integer)
	m.DataType, m.DataLen = Concat(IPv4Addr, InetService)
	b := NewBatch(unix.NFPROTO_IPV4, table)
	b.AddTable("")
	b.AddSet("m", m)
	for i := range n {
		b.AddElement("m", key(i), append(data(i, 80), 0, 0))
	}
	send(t, c, b)
	b = NewBatch(unix.NFPROTO_IPV4, table)
	for i := range n {
		b.DeleteElement("m", key(i))
	}
	for i := range n {
		b.AddElement("m", key(i), append(data(i, 8080), 0, 0))
	}
	if got := b.Ops(); got > 4*n/1000 {
		t.Errorf("%d elements in %d messages", 2*n, got)
	}
	send(t, c, b)
	out := nft(t, ns, "list", "map", "ip", table, "m")
	if got := strings.Count(out, " . 8080"); got != n || strings.Contains(out, " . 80,") {
		t.Errorf("the map holds %d elements on port 8080 (want %d) and old ones: %v", got, n, strings.Contains(out, " . 80,"))
	}
}

// TestIntervals: an interval set's ranges are written as their bounds,
// the last one reaching the end of the address space included.
func TestIntervals(t *testing.T) {
	ns := nstest.New(t, "nftwire-iv")
	c := conn(t, ns)
	for _, tc := range []struct {
		fam   byte
		ip    string
		dt    Datatype
		spans []string
	}{
		{unix.NFPROTO_IPV4, "ip", IPv4Addr, []string{"192.0.2.0/24", "10.0.0.0/8", "255.255.255.0/24"}},
		{unix.NFPROTO_IPV6, "ip6", IPv6Addr, []string{"fd00::/8", "2001:db8::/64", "ffff::/16"}},
	} {
		s := Set{Flags: unix.NFT_SET_INTERVAL, Userdata: KeyUserdata([]Datatype{tc.dt}, false)}
		s.KeyType, s.KeyLen = Concat(tc.dt)
		b := NewBatch(tc.fam, table)
		b.AddTable("")
		b.AddSet("s", s)
		for _, p := range tc.spans {
			b.AddInterval("s", netip.MustParsePrefix(p))
		}
		send(t, c, b)
		out := nft(t, ns, "list", "set", tc.ip, table, "s")
		for _, p := range tc.spans {
			if !strings.Contains(out, p) {
				t.Errorf("%s: the set is\n%s\nwithout %s", tc.ip, out, p)
			}
		}
		if !strings.Contains(out, "type "+tc.dt.Name) {
			t.Errorf("%s: the set is\n%s\nnot declared as %s", tc.ip, out, fmt.Sprint("type ", tc.dt.Name))
		}
	}
}
