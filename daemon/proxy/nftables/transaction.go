package nftables

import (
	"maps"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/nftwire"
	"github.com/skein-net/skein/daemon/proxy"
)

// skeleton adds the table's fixed objects: base chains, maps and sets
// declared, the fixed chains written whole.
func (f nftRenderer) skeleton(tx nftWriter) {
	tx.AddTable("skein: service proxy")
	for _, c := range []chainDecl{
		f.baseChainDecl("nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority),
		f.baseChainDecl("nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority),
		f.baseChainDecl("nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority),
		// Before DNAT, so that a Service without endpoints is refused
		// whether or not the node has a route to its ClusterIP.
		f.baseChainDecl("filter-prerouting", knftables.FilterType, knftables.PreroutingHook, knftables.DNATPriority+"-10"),
		f.baseChainDecl("filter-output", knftables.FilterType, knftables.OutputHook, knftables.DNATPriority+"-10"),
		// After DNAT: a new connection still to a Service range was
		// taken by no Service's rules (an address no Service holds, or a
		// port the Service does not have).
		f.baseChainDecl("filter-forward", knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority),
		f.baseChainDecl("filter-output-post-dnat", knftables.FilterType, knftables.OutputHook, knftables.FilterPriority),
		{name: chainServices}, {name: chainMarkMasq}, {name: chainReject},
	} {
		tx.AddChain(c)
		tx.FlushChain(c.name)
	}
	addr := f.addrDatatype()
	proto, port := nftwire.InetProto, nftwire.InetService
	tx.AddSet(verdictMap(mapServiceIPs, addr, proto, port))
	tx.AddSet(verdictMap(mapNoEPServices, addr, proto, port))
	tx.AddSet(verdictMap(mapNodePorts, proto, port))
	tx.AddSet(verdictMap(mapNoEPNodePort, proto, port))
	tx.AddSet(setOf(setHairpin, []nftwire.Datatype{addr, addr}))
	tx.AddSet(setOf(setNodePortIPs, []nftwire.Datatype{addr}, knftables.IntervalFlag))
	tx.AddSet(setOf(setServiceCIDRs, []nftwire.Datatype{addr}, knftables.IntervalFlag))

	rule := func(chain string, stmts ...stmt) { tx.Rule(chain, newRule(stmts...)) }
	rule("nat-prerouting", verdict{"jump", chainServices})
	rule("nat-output", verdict{"jump", chainServices})
	rule(chainServices, addrProtoPortVmap{f.fam, mapServiceIPs})
	var local stmt = fibLocal{"daddr"}
	if len(f.nodePortPrefix) > 0 {
		local = addrIn{f.fam, "daddr", setNodePortIPs}
	}
	rule(chainServices, local, protoPortVmap{mapNodePorts})
	rule(chainMarkMasq, markOr{bits: proxy.MasqueradeMark})
	rule("nat-postrouting", ctStatusDNAT{}, addrPairIn{f.fam, setHairpin}, masquerade{})
	rule("nat-postrouting", markClear{proxy.MasqueradeMark}, verdict{kind: "return"})
	rule("nat-postrouting", markOr{bits: proxy.MasqueradeMark, xor: true})
	rule("nat-postrouting", masquerade{fullyRandom: true})
	for _, c := range []string{"filter-prerouting", "filter-output"} {
		rule(c, ctStateNew{}, addrProtoPortVmap{f.fam, mapNoEPServices})
		rule(c, ctStateNew{}, local, protoPortVmap{mapNoEPNodePort})
	}
	// The node's own addresses stay reachable (skeind's DNS answers on
	// the kube-dns ClusterIP, on the node).
	rule("filter-forward", ctStateNew{}, addrIn{f.fam, "daddr", setServiceCIDRs}, verdict{"goto", chainReject})
	rule("filter-output-post-dnat", ctStateNew{}, addrIn{f.fam, "daddr", setServiceCIDRs}, fibNotLocal{"daddr"}, verdict{"goto", chainReject})
	// A TCP reset, which unlike ICMP errors the kernel does not rate-limit.
	rule(chainReject, l4proto{"tcp"}, reject{tcpReset: true})
	rule(chainReject, reject{})
}

// nftWriter takes a transaction's operations, as values: textTx writes
// them as nft's text (what the golden files hold), wireTx encodes them
// for the kernel.
type nftWriter interface {
	AddTable(comment string)
	AddChain(c chainDecl)
	// FlushChain deletes a chain's rules.
	FlushChain(name string)
	DeleteChain(name string)
	AddSet(d setDecl)
	// FlushSet deletes a set's (or map's) elements.
	FlushSet(name string, isMap bool)
	DeleteSet(name string, isMap bool)
	Rule(chain string, r rule)
	// Element adds ("add") or deletes ("delete") an element of a map or
	// set.
	Element(op, set string, e elem)
}

// transaction writes cur into the table. Full (prev nil): the skeleton,
// every chain, map and set rewritten, and what the kernel has beyond them
// (existing chains, dynamic sets and endpoints maps) deleted. Partial:
// what differs from prev, where prev and cur are the parts of the table a
// change touches, as the kernel has them and as they are to be.
func (f nftRenderer) transaction(tx nftWriter, prev, cur *nftRules, existingChains, existingSets []string) {
	full := prev == nil
	if full {
		f.skeleton(tx)
		prev = kernelHas(existingChains, existingSets)
	}
	rewrite := f.declare(tx, prev, cur, full)
	// 2. Chains whose rules differ, rewritten.
	for _, name := range rewrite {
		if _, had := prev.chains[name]; had {
			tx.FlushChain(name)
		}
		for _, r := range cur.chains[name] {
			tx.Rule(name, r)
		}
	}
	writeElements(tx, prev, cur, full)
	// 4. What is no longer wanted, now that nothing refers to it.
	gone := keysWhere(prev.chains, func(name string, _ []rule) bool { _, ok := cur.chains[name]; return !ok })
	for _, name := range gone {
		tx.FlushChain(name)
	}
	for _, name := range gone {
		tx.DeleteChain(name)
	}
	for _, name := range keysWhere(prev.affinity, func(name string, _ int) bool { _, ok := cur.affinity[name]; return !ok }) {
		tx.DeleteSet(name, false)
	}
	for _, name := range keysWhere(prev.maps, func(name string, _ map[string]elem) bool { _, ok := cur.maps[name]; return !ok }) {
		tx.DeleteSet(name, true)
	}
}

// kernelHas is what a full sync takes the kernel to hold beyond the
// skeleton: the chains, dynamic sets and endpoints maps it was told
// exist, of unknown content (so that every one is rewritten or deleted).
func kernelHas(existingChains, existingSets []string) *nftRules {
	prev := &nftRules{chains: map[string][]rule{}, maps: map[string]map[string]elem{}, sets: map[string][]elem{}, affinity: map[string]int{}}
	for _, c := range existingChains {
		if !isFixedChain(c) {
			prev.chains[c] = []rule{{text: "(unknown)"}}
		}
	}
	for _, s := range existingSets {
		if strings.HasPrefix(s, "affinity-") {
			prev.affinity[s] = -1
		}
		if strings.HasPrefix(s, mapEndpoints) {
			prev.maps[s] = map[string]elem{}
		}
	}
	return prev
}

// declare writes steps 0 and 1: the endpoints maps the rules will read,
// the sets the new chains update, then every new chain, empty (a chain
// may jump to another new one). It returns the chains to rewrite.
func (f nftRenderer) declare(tx nftWriter, prev, cur *nftRules, full bool) []string {
	for _, name := range keysWhere(cur.maps, func(name string, _ map[string]elem) bool {
		_, ok := prev.maps[name]
		return strings.HasPrefix(name, mapEndpoints) && (!ok || full)
	}) {
		tx.AddSet(f.endpointsMap(name))
	}
	for _, name := range keysWhere(cur.affinity, func(name string, _ int) bool { _, ok := prev.affinity[name]; return !ok || full }) {
		tx.AddSet(f.affinitySet(name, time.Duration(cur.affinity[name])*time.Second))
	}
	rewrite := keysWhere(cur.chains, func(name string, rules []rule) bool {
		old, had := prev.chains[name]
		return !had || !sameRules(old, rules)
	})
	for _, name := range rewrite {
		// A full sync adds every chain, existing or not: what it was
		// told exists is a belief, and adding an existing chain changes
		// nothing, where flushing a missing one fails the transaction.
		if _, had := prev.chains[name]; !had || full {
			tx.AddChain(chainDecl{name: name})
		}
	}
	return rewrite
}

// writeElements writes step 3: the map and set elements that differ
// (all of them, after a flush, in a full sync).
func writeElements(tx nftWriter, prev, cur *nftRules, full bool) {
	for _, name := range sortedKeys(cur.maps) {
		want, have := cur.maps[name], prev.maps[name]
		if full {
			tx.FlushSet(name, true)
			have = nil
		}
		for _, k := range keysWhere(have, func(k string, v elem) bool { w, ok := want[k]; return !ok || w != v }) {
			tx.Element("delete", name, have[k])
		}
		for _, k := range keysWhere(want, func(k string, v elem) bool { h, ok := have[k]; return !ok || h != v }) {
			tx.Element("add", name, want[k])
		}
	}
	for _, name := range sortedKeys(cur.sets) {
		want, have := cur.sets[name], prev.sets[name]
		if full {
			tx.FlushSet(name, false)
			have = nil
		}
		for _, e := range have {
			if !slices.Contains(want, e) {
				tx.Element("delete", name, e)
			}
		}
		for _, e := range want {
			if !slices.Contains(have, e) {
				tx.Element("add", name, e)
			}
		}
	}
}

// keysWhere returns, sorted, the keys of m whose entries pass keep: a
// partial sync sorts only what changed.
func keysWhere[V any](m map[string]V, keep func(string, V) bool) []string {
	var out []string
	for k, v := range m {
		if keep(k, v) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// fixedChains are the skeleton's chains, written whole by a full sync
// only.
var fixedChains = []string{
	"nat-prerouting", "nat-output", "nat-postrouting", "filter-prerouting", "filter-output",
	"filter-forward", "filter-output-post-dnat",
	chainServices, chainMarkMasq, chainReject,
}

func isFixedChain(name string) bool { return slices.Contains(fixedChains, name) }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
