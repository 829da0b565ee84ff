package nftables

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

// TestRunNFT runs transactions through the real nft in a namespace of
// its own: a good one lands with its elements batched, a bad one fails
// with nft's own message and changes nothing.
func TestRunNFT(t *testing.T) {
	newScratchNS(t, "runnft").do(t, func() { testRunNFT(t) })
}

func testRunNFT(t *testing.T) {
	ctx := context.Background()
	tx := knftables.NewFake(knftables.IPv4Family, "skt").NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Add(&knftables.Map{Name: "m", Type: "ipv4_addr : ipv4_addr"})
	for _, k := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		tx.Add(&knftables.Element{Map: "m", Key: []string{k}, Value: []string{"192.0.2.1"}})
	}
	if err := runNFT(ctx, tx); err != nil {
		t.Fatal(err)
	}
	bad := knftables.NewFake(knftables.IPv4Family, "skt").NewTransaction()
	bad.Add(&knftables.Element{Map: "m", Key: []string{"10.0.0.4"}, Value: []string{"192.0.2.1"}})
	bad.Add(&knftables.Element{Map: "nosuchmap", Key: []string{"10.0.0.5"}, Value: []string{"192.0.2.1"}})
	err := runNFT(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "nosuchmap") {
		t.Errorf("a transaction naming a map that does not exist: %v", err)
	}
	nft, err := knftables.New(knftables.IPv4Family, "skt")
	if err != nil {
		t.Fatal(err)
	}
	elems, err := nft.ListElements(ctx, "map", "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(elems) != 3 {
		t.Errorf("the map holds %d elements, want the first transaction's 3", len(elems))
	}
}

// TestApplyFallsBack: a transaction holding what the netlink encoder does
// not know is written through nft instead, whole.
func TestApplyFallsBack(t *testing.T) {
	newScratchNS(t, "fallback").do(t, func() { testApplyFallsBack(t) })
}

func testApplyFallsBack(t *testing.T) {
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.sock.close() // nil unless something went over netlink
	f := newNFTRenderer(4, opts)
	render := func(tx nftWriter) {
		tx.Add(&knftables.Table{})
		tx.Add(&knftables.Chain{Name: "c"})
		tx.Add(&knftables.Rule{Chain: "c", Rule: "tcp dport 80 counter accept"}) // not skein's
	}
	w := newWireBatch(f)
	render(w)
	if err := b.apply(context.Background(), f, w, render); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nft", "list", "chain", "ip", Table, "c").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tcp dport 80 counter") {
		t.Errorf("the table holds %s (%v), want the rule written through nft", out, err)
	}
}
