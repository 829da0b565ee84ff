package nftables

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
	"github.com/skein-net/skein/internal/nstest"
)

// listing is what the kernel holds in the family's table, as nft prints
// it and as the kernel's expressions.
func (s *scratchNS) listing(t *testing.T, ip string) string {
	t.Helper()
	return s.nft(t, "", "list", "table", ip, Table) + sortElements(s.nft(t, "", "--debug=netlink", "list", "table", ip, Table))
}

// sortElements sorts each run of element lines: the kernel lists a hash
// set's elements in the order of its hash, whose seed is random.
//
// nft also writes an interval set's elements differently when the set
// exists already (an end at address zero first): the kernel matches the
// same addresses either way, and nft prints the same set.
func sortElements(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "element "); ok && strings.Trim(e, "0 ") == ": 1 [end]" {
			continue
		}
		lines = append(lines, l)
	}
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "element ") {
			j++
		}
		slices.Sort(lines[i:j])
		i = max(j, i+1)
	}
	return strings.Join(lines, "\n")
}

// TestWireMatchesNFT writes the same transactions through nft into one
// namespace and over netlink into another, and compares what each
// kernel holds, as nft prints it and expression by expression: a full
// sync of the test cluster in both families (with NodePorts narrowed to
// some addresses, and not), then a partial sync, then a full sync over
// a table holding what is no longer wanted.
func TestWireMatchesNFT(t *testing.T) {
	nstest.NeedRoot(t)
	m, changed := load(t, nil), load(t, proxytest.RemoveEndpoint)
	for _, fam := range []int{4, 6} {
		for _, np := range [][]string{nil, {"192.0.2.0/24", "10.0.0.0/8", "2001:db8::/64", "fd00::/8"}} {
			t.Run(fmt.Sprintf("ipv%d/nodeports=%d", fam, len(np)), func(t *testing.T) {
				o := proxy.RuleOptions{Bridge: "cni0", NodePortAddresses: np}
				f := newNFTRenderer(fam, o)
				viaNFT := newScratchNS(t, fmt.Sprintf("wire-n%d%d", fam, len(np)))
				viaWire := newScratchNS(t, fmt.Sprintf("wire-w%d%d", fam, len(np)))
				sock := viaWire.socket(t)
				step := func(what string, render func(nftWriter)) {
					t.Helper()
					tx := newFakeTx(fam)
					render(tx)
					viaNFT.nft(t, tx.String(), "-f", "-")
					w := newWireTx(fam)
					render(w)
					if err := w.finish(); err != nil {
						t.Fatalf("%s: encode: %v", what, err)
					}
					if err := sock.Transact(w.b); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					if diff := cmp.Diff(viaNFT.listing(t, f.ip), viaWire.listing(t, f.ip)); diff != "" {
						t.Fatalf("%s: the kernels differ (-nft +netlink):\n%s", what, diff)
					}
				}
				_, cache := f.desired(m, nil, false)
				whole := f.whole(cache)
				step("full sync", func(tx nftWriter) { f.transaction(tx, nil, whole, nil, nil) })
				ch, _ := f.desired(changed, cache, true)
				step("partial sync", func(tx nftWriter) { f.transaction(tx, ch.before, ch.after, nil, nil) })
				// A full sync over what the kernel has: the chains and maps it
				// holds and the next model lacks are deleted.
				_, cache = f.desired(changed, nil, false)
				var chains, sets []string
				had := f.whole(cache)
				for c := range had.chains {
					chains = append(chains, c)
				}
				for s := range had.maps {
					sets = append(sets, s)
				}
				for s := range had.affinity {
					sets = append(sets, s)
				}
				_, cache = f.desired(load(t, dropShop), nil, false)
				next := f.whole(cache)
				step("full sync over an older table", func(tx nftWriter) { f.transaction(tx, nil, next, chains, sets) })
			})
		}
	}
}

// dropShop leaves out every Service of the shop namespace.
func dropShop(s string) string {
	var out []string
	for _, doc := range strings.Split(s, "\n---\n") {
		if !strings.Contains(doc, "namespace: shop") {
			out = append(out, doc)
		}
	}
	return strings.Join(out, "\n---\n")
}

// TestWireRejects: what skein never writes (a deletion from an interval
// set, which is only written whole) is an error, not a guess; a
// transaction the kernel refuses changes nothing and names the rule it
// refused.
func TestWireRejects(t *testing.T) {
	w := newWireTx(4)
	w.Element("delete", setNodePortIPs, intervalElem(netip.MustParsePrefix("10.0.0.0/8")))
	if err := w.finish(); err == nil {
		t.Error("an interval deleted: no error")
	}
	nstest.NeedRoot(t)
	ns := newScratchNS(t, "wire-rejects")
	sock := ns.socket(t)
	w = newWireTx(4)
	w.AddTable("")
	w.AddChain(chainDecl{name: "a"})
	w.Rule("a", newRule(verdict{"jump", "b"})) // no chain b
	w.AddChain(chainDecl{name: "c"})
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	err := sock.Transact(w.b)
	if err == nil || !strings.Contains(err.Error(), "add rule a jump b") {
		t.Fatalf("a rule jumping to no chain: %v", err)
	}
	if out := ns.nft(t, "", "list", "tables"); strings.Contains(out, Table) {
		t.Errorf("a refused transaction left %q", out)
	}
}
