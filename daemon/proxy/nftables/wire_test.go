package nftables

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"

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
					w := newWireBatch(f)
					render(w)
					if err := w.finish(); err != nil {
						t.Fatalf("%s: encode: %v", what, err)
					}
					if err := sock.transact(w); err != nil {
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

// TestWireRejects: what the encoder does not know (a rule as text:
// skein's rules are values; an element its set cannot take) is an error,
// not a guess; a transaction the kernel refuses changes nothing and
// names the command it refused.
func TestWireRejects(t *testing.T) {
	f := newNFTRenderer(4, opts)
	prio := knftables.DNATPriority
	for _, tc := range []struct {
		verb string
		obj  knftables.Object
	}{
		{"add", &knftables.Rule{Chain: "services", Rule: "tcp dport 80 accept"}},
		{"add", &knftables.Rule{Chain: "services", Rule: "ip6 daddr @x accept"}},
		{"add", &knftables.Rule{Chain: "services", Rule: "jump x", Comment: knftables.PtrTo("c")}},
		{"add", &knftables.Element{Map: mapServiceIPs, Key: []string{"10.0.0.1 . tcp . 80"}, Value: []string{"continue"}}},
		{"add", &knftables.Element{Map: mapServiceIPs, Key: []string{"10.0.0.1 . icmp . 80"}, Value: []string{"drop"}}},
		{"add", &knftables.Element{Map: "endpoints-00", Key: []string{"0"}, Value: []string{"fd00::1 . 80"}}},
		{"add", &knftables.Map{Name: "m", Type: "ipv4_addr : ipv4_addr"}},
		{"add", &knftables.Set{Name: "s", Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.ConstantFlag}}},
		{"add", &knftables.Chain{Name: "c", Priority: &prio}},
		{"delete", &knftables.Element{Set: setNodePortIPs, Key: []string{"10.0.0.0/8"}}},
		{"insert", &knftables.Rule{Chain: "services", Rule: "jump x"}},
	} {
		w := newWireBatch(f)
		switch tc.verb {
		case "add":
			w.Add(tc.obj)
		case "delete":
			w.Delete(tc.obj)
		default:
			w.op(tc.verb, tc.obj)
		}
		if err := w.finish(); err == nil {
			t.Errorf("%s %+v encoded", tc.verb, tc.obj)
		}
	}
	nstest.NeedRoot(t)
	ns := newScratchNS(t, "wire-rejects")
	sock := ns.socket(t)
	w := newWireBatch(f)
	w.Add(&knftables.Table{})
	w.Add(&knftables.Chain{Name: "a"})
	w.Rule("a", newRule(verdict{"jump", "b"})) // no chain b
	w.Add(&knftables.Chain{Name: "c"})
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	err := sock.transact(w)
	if err == nil || !strings.Contains(err.Error(), "add rule a jump b") {
		t.Fatalf("a rule jumping to no chain: %v", err)
	}
	if out := ns.nft(t, "", "list", "tables"); strings.Contains(out, Table) {
		t.Errorf("a refused transaction left %q", out)
	}
	// The socket goes on working.
	w = newWireBatch(f)
	w.Add(&knftables.Table{})
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	if err := sock.transact(w); err != nil {
		t.Fatal(err)
	}
	if out := ns.nft(t, "", "list", "tables"); !strings.Contains(out, Table) {
		t.Errorf("after a good transaction the namespace holds %q", out)
	}
}

// TestWireManyElements: a Service's thousands of endpoints replaced at
// once are more elements than one netlink attribute or the default socket
// buffer holds; they still go as one transaction.
func TestWireManyElements(t *testing.T) {
	nstest.NeedRoot(t)
	f := newNFTRenderer(4, opts)
	ns := newScratchNS(t, "wire-many")
	sock := ns.socket(t)
	const n = 20000
	elem := func(i, port int) elem {
		return endpointElem(i, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(port)))
	}
	send := func(w *wireBatch) {
		t.Helper()
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		if err := sock.transact(w); err != nil {
			t.Fatal(err)
		}
	}
	w := newWireBatch(f)
	w.Add(&knftables.Table{})
	w.Add(&knftables.Map{Name: "endpoints-00", TypeOf: "numgen random mod 1 : ip daddr . tcp dport"})
	for i := 0; i < n; i++ {
		w.Element("add", "endpoints-00", elem(i, 80))
	}
	send(w)
	// Every endpoint replaced: n deletions and n additions.
	w = newWireBatch(f)
	for i := 0; i < n; i++ {
		w.Element("delete", "endpoints-00", elem(i, 80))
	}
	for i := 0; i < n; i++ {
		w.Element("add", "endpoints-00", elem(i, 8080))
	}
	send(w)
	out := ns.nft(t, "", "list", "map", "ip", Table, "endpoints-00")
	if got := strings.Count(out, " . 8080"); got != n || strings.Contains(out, " . 80,") {
		t.Errorf("the map holds %d elements on port 8080 (want %d) and old ones: %v", got, n, strings.Contains(out, " . 80,"))
	}
}
