package nftwire

import (
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/internal/nstest"
)

// TestReadOutline: the table's handle and use, and a chain's rule count,
// as the kernel holds them; each changes when someone else changes the
// table, and a missing table or chain reads as such, not as an error.
func TestReadOutline(t *testing.T) {
	ns := nstest.New(t, "nftwire-read")
	c := conn(t, ns)
	if _, ok, err := c.Table(unix.NFPROTO_IPV4, table); err != nil || ok {
		t.Fatalf("no table yet: ok %v, err %v", ok, err)
	}
	if n, err := c.Rules(unix.NFPROTO_IPV4, table, "a"); err != nil || n != 0 {
		t.Fatalf("rules of no table: %d, %v", n, err)
	}
	accept, err := expr.Marshal(unix.NFPROTO_IPV4, &expr.Verdict{Kind: expr.VerdictAccept})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBatch(unix.NFPROTO_IPV4, table)
	b.AddTable("")
	b.AddChain("a", nil)
	b.AddChain("b", nil)
	for range 3 {
		b.AddRule("a", [][]byte{accept}, "accept")
	}
	send(t, c, b)
	first, ok, err := c.Table(unix.NFPROTO_IPV4, table)
	if err != nil || !ok || first.Use != 2 || first.Handle == 0 {
		t.Fatalf("a table of two chains: %+v, ok %v, err %v", first, ok, err)
	}
	if n, err := c.Rules(unix.NFPROTO_IPV4, table, "a"); err != nil || n != 3 {
		t.Fatalf("chain a holds 3 rules, read %d (%v)", n, err)
	}
	if n, err := c.Rules(unix.NFPROTO_IPV4, table, "nochain"); err != nil || n != 0 {
		t.Fatalf("rules of no chain: %d, %v", n, err)
	}
	if _, ok, _ := c.Table(unix.NFPROTO_IPV6, table); ok {
		t.Fatal("the ip table read as ip6's")
	}

	nft(t, ns, "flush", "table", "ip", table)
	if n, err := c.Rules(unix.NFPROTO_IPV4, table, "a"); err != nil || n != 0 {
		t.Errorf("after nft flush table, chain a holds %d rules (%v)", n, err)
	}
	nft(t, ns, "delete", "chain", "ip", table, "b")
	if now, _, _ := c.Table(unix.NFPROTO_IPV4, table); now.Use != 1 || now.Handle != first.Handle {
		t.Errorf("a chain deleted: %+v, was %+v", now, first)
	}
	nft(t, ns, "delete", "table", "ip", table)
	nft(t, ns, "add", "table", "ip", table)
	nft(t, ns, "add", "chain", "ip", table, "a")
	nft(t, ns, "add", "chain", "ip", table, "b")
	if again, ok, _ := c.Table(unix.NFPROTO_IPV4, table); !ok || again.Handle == first.Handle {
		t.Errorf("a table made again reads %+v, the first %+v", again, first)
	}
	// The socket still writes after reads.
	b = NewBatch(unix.NFPROTO_IPV4, table)
	b.AddRule("a", [][]byte{accept}, "accept")
	send(t, c, b)
	if n, _ := c.Rules(unix.NFPROTO_IPV4, table, "a"); n != 1 {
		t.Errorf("after a write, chain a holds %d rules", n)
	}
}
