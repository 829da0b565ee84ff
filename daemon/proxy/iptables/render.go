package iptables

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/skein-net/skein/daemon/proxy"
)

// The iptables layout, per family, in skein's own chains; the built-in
// chains hold one jump each.
//
//	nat PREROUTING, OUTPUT -> SKEIN-SERVICES: a tree on the destination
//	    address (SKEIN-DST-… chains, one per prefix holding more than a
//	    few Services), so a packet walks a few dozen rules, not one per
//	    Service; its last rule sends local destinations to SKEIN-NODEPORTS
//	SKEIN-SVC-…: masquerade unless from a local pod, then a random
//	    endpoint (-m statistic), DNAT directly or through SKEIN-SEP-… where
//	    the endpoint needs more (hairpin for local ones, -m recent for
//	    session affinity)
//	SKEIN-EXT-…, SKEIN-SVL-…: NodePort and external addresses, as in
//	    the nftables backend
//	nat POSTROUTING -> SKEIN-POSTROUTING: masquerade marked packets
//	filter INPUT, FORWARD, OUTPUT -> SKEIN-SERVICES (new connections):
//	    REJECT (or DROP) for Services without endpoints
const (
	iptServices    = "SKEIN-SERVICES"
	iptNodePorts   = "SKEIN-NODEPORTS"
	iptMarkMasq    = "SKEIN-MARK-MASQ"
	iptPostrouting = "SKEIN-POSTROUTING"
	// leafSize is how many Services a dispatch chain lists before it
	// splits into sub-prefixes.
	leafSize = 16
)

// ownChain tells the proxy's iptables chains from everything else,
// SKEIN-FORWARD (the masquerade controller's) included.
func ownChain(name string) bool {
	switch name {
	case iptServices, iptNodePorts, iptMarkMasq, iptPostrouting:
		return true
	}
	for _, p := range []string{"SKEIN-SVC-", "SKEIN-SEP-", "SKEIN-EXT-", "SKEIN-SVL-", "SKEIN-DST-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// iptRules is what one family's tables should hold: per table, chain ->
// rules (the arguments after "-A CHAIN").
type iptRules map[string]map[string][]string

func (r iptRules) add(table, chain string, rule ...string) {
	if r[table] == nil {
		r[table] = map[string][]string{}
	}
	r[table][chain] = append(r[table][chain], rule...)
}

func (r iptRules) count() int {
	n := 0
	for _, t := range r {
		for _, c := range t {
			n += len(c)
		}
	}
	return n
}

// iptRenderer renders the rules of one IP family (fam: 4 or 6) for
// iptables-restore or ip6tables-restore.
type iptRenderer struct {
	fam       int
	bridge    string
	nodePorts []string // prefixes NodePorts answer on; empty: local addresses
}

func newIPTRenderer(fam int, o proxy.RuleOptions) iptRenderer {
	return iptRenderer{fam: fam, bridge: o.Bridge, nodePorts: o.NodePorts(fam)}
}

type dstEntry struct {
	ip   netip.Addr
	rule string
}

// iptChunk is what one service port renders to, kept while its
// generation stays.
type iptChunk struct {
	proxy.PortStamp
	r   iptRules
	dst []dstEntry
}

// isShared tells the chains every port adds rules to.
func isShared(chain string) bool { return chain == iptServices || chain == iptNodePorts }

// iptCache is the family's rules as desired last rendered them: each
// port's chunk, and the chains they share (SKEIN-SERVICES and
// SKEIN-NODEPORTS in both tables, the SKEIN-DST-… tree, the fixed
// chains), which are rebuilt only when a port's part of them changes.
type iptCache struct {
	ports  proxy.PortSet // the ports the chunks are of
	chunks map[string]*iptChunk
	shared iptRules
	count  int // rules, everything written
	// serviceCIDRs are the model's Service ranges of this family, which
	// the shared SKEIN-SERVICES refuses past the Services.
	serviceCIDRs []netip.Prefix
}

// iptChange is what a partial sync writes: the chains of the ports that
// changed and, when they changed, the shared ones, as they were and as
// they are to be.
type iptChange struct {
	before, after iptRules
}

// desired renders the ports of this family that changed since the last
// call, whose cache it takes over (the caller keeps only the returned
// one), and returns what changed; unless partial, only what went (the
// caller writes the whole).
func (f iptRenderer) desired(m *proxy.Model, cache *iptCache, partial bool) (iptChange, *iptCache) {
	if cache == nil {
		cache = &iptCache{chunks: map[string]*iptChunk{}}
	}
	fresh, gone := cache.ports.Diff(m, f.fam)
	ch := iptChange{before: iptRules{}, after: iptRules{}}
	cidrs := m.ServiceCIDRsOf(f.fam)
	reshare := cache.shared == nil || !slices.Equal(cidrs, cache.serviceCIDRs)
	cache.serviceCIDRs = cidrs
	for _, id := range gone {
		if c := cache.chunks[id]; c != nil {
			ch.before.merge(c.r, false)
			delete(cache.chunks, id)
			reshare = true
		}
	}
	for _, sp := range fresh {
		c := &iptChunk{PortStamp: proxy.PortStamp{ID: sp.ID(), Gen: sp.Gen()}, r: iptRules{}}
		c.dst = f.servicePort(c.r, sp, nil)
		old := cache.chunks[sp.ID()]
		if old != nil {
			ch.before.merge(old.r, false)
		}
		reshare = reshare || old == nil || !sameShared(old, c)
		if partial {
			ch.after.merge(c.r, false)
		}
		cache.chunks[sp.ID()] = c
	}
	if reshare {
		shared := f.shared(m, cache.chunks, cidrs)
		if cache.shared != nil {
			ch.before.merge(cache.shared, true)
		}
		if partial {
			ch.after.merge(shared, true)
		}
		cache.shared = shared
	}
	cache.count += ch.after.count() - ch.before.count()
	return ch, cache
}

// merge adds the chains of from to r: the shared ones or a port's own.
func (r iptRules) merge(from iptRules, shared bool) {
	for table, chains := range from {
		for chain, rules := range chains {
			if shared || !isShared(chain) {
				if r[table] == nil {
					r[table] = map[string][]string{}
				}
				r[table][chain] = rules
			}
		}
	}
}

// sameShared tells whether two renderings of a port add the same to the
// shared chains.
func sameShared(a, b *iptChunk) bool {
	for _, t := range []string{"nat", "filter"} {
		for _, c := range []string{iptServices, iptNodePorts} {
			if !slices.Equal(a.r[t][c], b.r[t][c]) {
				return false
			}
		}
	}
	return slices.Equal(a.dst, b.dst)
}

// shared renders the chains the ports share, from every port's chunk in
// the model's order.
func (f iptRenderer) shared(m *proxy.Model, chunks map[string]*iptChunk, serviceCIDRs []netip.Prefix) iptRules {
	r := iptRules{"nat": {iptServices: nil, iptNodePorts: nil}, "filter": {iptServices: nil, iptNodePorts: nil}}
	r.add("nat", iptMarkMasq, fmt.Sprintf("-j MARK --or-mark 0x%x", proxy.MasqueradeMark))
	r.add("nat", iptPostrouting,
		fmt.Sprintf("-m mark ! --mark 0x%x/0x%x -j RETURN", proxy.MasqueradeMark, proxy.MasqueradeMark),
		fmt.Sprintf("-j MARK --xor-mark 0x%x", proxy.MasqueradeMark),
		"-j MASQUERADE --random-fully")
	var dst []dstEntry
	for _, sp := range m.Ports {
		c := chunks[sp.ID()]
		if sp.Family != f.fam || c == nil {
			continue
		}
		for table, chains := range c.r {
			for _, chain := range []string{iptServices, iptNodePorts} {
				r.add(table, chain, chains[chain]...)
			}
		}
		dst = append(dst, c.dst...)
	}
	slices.SortStableFunc(dst, func(a, b dstEntry) int { return a.ip.Compare(b.ip) })
	root := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if f.fam == 6 {
		root = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	f.tree(r, iptServices, root, root.Addr().BitLen(), dst)
	if len(f.nodePorts) == 0 {
		r.add("nat", iptServices, "-m addrtype --dst-type LOCAL -j "+iptNodePorts)
		r.add("filter", iptServices, "-m addrtype --dst-type LOCAL -j "+iptNodePorts)
	}
	for _, p := range f.nodePorts {
		r.add("nat", iptServices, "-d "+p+" -j "+iptNodePorts)
		r.add("filter", iptServices, "-d "+p+" -j "+iptNodePorts)
	}
	// Past DNAT (filter's FORWARD and OUTPUT come after nat's), a new
	// connection still to a Service range was taken by no Service: an
	// address no Service holds, or a port the Service does not have.
	// The node's own addresses stay reachable (skeind's DNS answers on
	// the kube-dns ClusterIP, on the node).
	for _, p := range serviceCIDRs {
		r.add("filter", iptServices,
			"-d "+p.String()+" -p tcp -m addrtype ! --dst-type LOCAL -j "+reject("tcp"),
			"-d "+p.String()+" -m addrtype ! --dst-type LOCAL -j "+reject(""))
	}
	return r
}

// whole is every chain of the family, as the cache holds them.
func (f iptRenderer) whole(cache *iptCache) iptRules {
	r := iptRules{}
	for _, c := range cache.chunks {
		r.merge(c.r, false)
	}
	r.merge(cache.shared, true)
	cache.count = r.count()
	return r
}

// tree writes the dispatch on destination address into chain: entries
// directly while few, else one jump per sub-prefix (4 more bits) holding
// several, into a chain of its own. A prefix all entries share costs no
// chain: the split moves down to where they differ.
func (f iptRenderer) tree(r iptRules, chain string, prefix netip.Prefix, bits int, entries []dstEntry) {
	for len(entries) > leafSize && prefix.Bits() < bits {
		next := min(prefix.Bits()+4, bits)
		var groups [][]dstEntry
		var prefixes []netip.Prefix
		for _, e := range entries {
			p := netip.PrefixFrom(e.ip, next).Masked()
			if len(prefixes) == 0 || prefixes[len(prefixes)-1] != p {
				prefixes = append(prefixes, p)
				groups = append(groups, nil)
			}
			groups[len(groups)-1] = append(groups[len(groups)-1], e)
		}
		if len(groups) == 1 {
			prefix = prefixes[0]
			continue
		}
		for i, g := range groups {
			if len(g) <= 2 {
				for _, e := range g {
					r.add("nat", chain, e.rule)
				}
				continue
			}
			sub := "SKEIN-DST-" + proxy.HashID(prefixes[i].String())
			r.add("nat", chain, fmt.Sprintf("-d %s -j %s", prefixes[i], sub))
			r["nat"][sub] = nil
			f.tree(r, sub, prefixes[i], bits, g)
		}
		return
	}
	for _, e := range entries {
		r.add("nat", chain, e.rule)
	}
}

func (f iptRenderer) servicePort(r iptRules, sp *proxy.ServicePort, dst []dstEntry) []dstEntry {
	id := sp.ID()
	svc, ext, svl := "SKEIN-SVC-"+id, "SKEIN-EXT-"+id, "SKEIN-SVL-"+id
	match := func(ip netip.Addr, port uint16) string {
		return fmt.Sprintf("-d %s -p %s -m %s --dport %d", netip.PrefixFrom(ip, ip.BitLen()), sp.Protocol, sp.Protocol, port)
	}
	comment := fmt.Sprintf(" -m comment --comment %q", sp.Name())
	cluster := sp.ClusterEndpoints()
	switch {
	case len(cluster) > 0:
		r.add("nat", svc, fmt.Sprintf("! -i %s -j %s", f.bridge, iptMarkMasq))
		r.add("nat", svc, f.dispatch(r, sp, svc, cluster)...)
		dst = append(dst, dstEntry{sp.ClusterIP, match(sp.ClusterIP, sp.Port) + comment + " -j " + svc})
	case sp.InternalLocal && len(sp.Endpoints) > 0:
		r.add("filter", iptServices, match(sp.ClusterIP, sp.Port)+comment+" -j DROP")
	default:
		r.add("filter", iptServices, match(sp.ClusterIP, sp.Port)+comment+" -j "+reject(sp.Protocol))
	}
	if sp.NodePort == 0 && len(sp.External) == 0 {
		return dst
	}
	var noEP string
	switch {
	case !sp.ExternalLocal && !sp.InternalLocal && len(cluster) > 0:
		r.add("nat", ext, "-j "+iptMarkMasq, "-j "+svc)
	case !sp.ExternalLocal && sp.InternalLocal && len(sp.ExternalEndpoints()) > 0:
		// internalTrafficPolicy Local narrows the ClusterIP only: from
		// outside, every node's endpoints.
		r.add("nat", ext, "-j "+iptMarkMasq)
		r.add("nat", ext, f.dispatch(r, sp, ext, sp.ExternalEndpoints())...)
	case sp.ExternalLocal && len(sp.LocalEndpoints()) > 0:
		r.add("nat", ext, "-m addrtype --src-type LOCAL -j "+iptMarkMasq)
		if len(cluster) > 0 {
			r.add("nat", ext, "-m addrtype --src-type LOCAL -j "+svc)
		}
		r.add("nat", ext, "-j "+svl)
		r.add("nat", svl, f.dispatch(r, sp, svl, sp.LocalEndpoints())...)
	case sp.ExternalLocal && len(sp.Endpoints) > 0:
		noEP = "DROP"
	default:
		noEP = reject(sp.Protocol)
	}
	for _, ip := range sp.External {
		if noEP != "" {
			r.add("filter", iptServices, match(ip, sp.Port)+comment+" -j "+noEP)
		} else {
			dst = append(dst, dstEntry{ip, match(ip, sp.Port) + comment + " -j " + ext})
		}
	}
	if sp.NodePort != 0 {
		np := fmt.Sprintf("-p %s -m %s --dport %d%s", sp.Protocol, sp.Protocol, sp.NodePort, comment)
		if noEP != "" {
			r.add("filter", iptNodePorts, np+" -j "+noEP)
		} else {
			r.add("nat", iptNodePorts, np+" -j "+ext)
		}
	}
	return dst
}

// reject is the target that refuses a connection to a port without
// endpoints: for TCP a reset, which unlike ICMP errors the kernel does not
// rate-limit, so that a client is refused at once however many others
// were just now.
func reject(protocol string) string {
	if protocol == "tcp" {
		return "REJECT --reject-with tcp-reset"
	}
	return "REJECT"
}

// dispatch returns chain's rules that pick one of eps at random (the
// n-th of the remaining rules matching with probability 1/n) and, with
// session affinity, first send a known client to its endpoint.
func (f iptRenderer) dispatch(r iptRules, sp *proxy.ServicePort, chain string, eps []proxy.Endpoint) []string {
	var rules []string
	target := func(e proxy.Endpoint) string {
		if sp.AffinitySeconds == 0 && !e.Local {
			return fmt.Sprintf("-p %s -j DNAT --to-destination %s", sp.Protocol, e.AddrPort())
		}
		sep := "SKEIN-SEP-" + sp.EndpointID(e)
		if _, done := r["nat"][sep]; !done {
			if e.Local { // hairpin: a pod reaching itself through the Service
				r.add("nat", sep, fmt.Sprintf("-s %s -j %s", netip.PrefixFrom(e.Addr, e.Addr.BitLen()), iptMarkMasq))
			}
			if sp.AffinitySeconds > 0 {
				r.add("nat", sep, "-m recent --name "+sep+" --set")
			}
			r.add("nat", sep, fmt.Sprintf("-p %s -j DNAT --to-destination %s", sp.Protocol, e.AddrPort()))
		}
		return "-j " + sep
	}
	if sp.AffinitySeconds > 0 {
		for _, e := range eps {
			sep := "SKEIN-SEP-" + sp.EndpointID(e)
			rules = append(rules, fmt.Sprintf("-m recent --name %s --rcheck --seconds %d --reap -j %s", sep, sp.AffinitySeconds, sep))
		}
	}
	for i, e := range eps {
		if left := len(eps) - i; left > 1 {
			rules = append(rules, fmt.Sprintf("-m statistic --mode random --probability %.10f %s", 1/float64(left), target(e)))
		} else {
			rules = append(rules, target(e))
		}
	}
	return rules
}

// restoreText renders what turns prev into cur for iptables-restore
// --noflush: the chains that are new or differ are declared (which
// empties them) and written, and chains no longer wanted are emptied,
// then deleted. With prev nil, every wanted chain is written, and
// existing (own chains the kernel has) are the ones to delete if unwanted.
func restoreText(prev, cur iptRules, existing map[string][]string) []byte {
	var b bytes.Buffer
	for _, table := range []string{"filter", "nat"} {
		want := cur[table]
		var have map[string][]string
		if prev != nil {
			have = prev[table]
		} else {
			have = map[string][]string{}
			for _, c := range existing[table] {
				have[c] = []string{"(unknown)"}
			}
		}
		// The chains to write (new or changed) and to drop, sorted.
		var write, drop []string
		for c, rules := range want {
			if old, ok := have[c]; prev == nil || !ok || !slices.Equal(old, rules) {
				write = append(write, c)
			}
		}
		for c := range have {
			if _, ok := want[c]; !ok {
				drop = append(drop, c)
			}
		}
		slices.Sort(write)
		slices.Sort(drop)
		if len(write)+len(drop) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range append(append([]string(nil), write...), drop...) {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range write {
			for _, rule := range want[c] {
				fmt.Fprintf(&b, "-A %s %s\n", c, rule)
			}
		}
		for _, c := range drop {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}

// hooks are the jumps from the built-in chains.
