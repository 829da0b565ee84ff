package nftables

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	gnft "github.com/google/nftables"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/proxy"
)

// Table is the name of the proxy's nftables table in each family ("ip
// skein", "ip6 skein"; the masquerade table is "inet skein").
const Table = "skein"

// The nftables layout, per family. A packet's lookup costs the same with
// ten Services or thirty thousand: the verdict maps are hash tables.
//
//	nat-prerouting, nat-output -> services:
//	    daddr . l4proto . dport  vmap @service-ips       -> svc-… / ext-…
//	    local daddr: l4proto . dport vmap @service-nodeports -> ext-…
//	svc-… (traffic to the ClusterIP): masquerade unless it came from a
//	    local pod (on the bridge), then DNAT to a random endpoint: one
//	    rule, "numgen random mod n offset k map @endpoints-g", where the
//	    port's endpoints are the keys k to k+n-1 of one of 256 maps (or,
//	    with session affinity, to the client's last one, through sep-…
//	    chains)
//	ext-… (NodePort, externalIPs, load-balancer IPs): masquerade, then
//	    svc-…; under externalTrafficPolicy: Local, no masquerade and only
//	    local endpoints (svl-…)
//	filter-prerouting, filter-output: new connections to a Service
//	    without endpoints, vmap @no-endpoint-* -> reject (or drop)
//	nat-postrouting: masquerade marked packets, and hairpin traffic (a pod
//	    reaching itself through its Service: @hairpin holds "ip . ip")
const (
	chainServices   = "services"
	chainMarkMasq   = "mark-for-masquerade"
	chainReject     = "reject-chain"
	mapServiceIPs   = "service-ips"
	mapNodePorts    = "service-nodeports"
	mapNoEPServices = "no-endpoint-services"
	mapNoEPNodePort = "no-endpoint-nodeports"
	mapEndpoints    = "endpoints-" // and the group, 00 to ff
	setHairpin      = "hairpin"
	setNodePortIPs  = "nodeport-ips"
)

// nftRules is the desired content of one family's table beyond its fixed
// skeleton: what a partial sync diffs.
type nftRules struct {
	chains   map[string][]string          // regular chains, rules in nft syntax
	maps     map[string]map[string]string // verdict maps: key -> verdict
	sets     map[string][]string          // plain sets: elements
	affinity map[string]int               // dynamic sets: timeout in seconds
}

func (r *nftRules) count() int {
	n := 0
	for _, c := range r.chains {
		n += len(c)
	}
	for _, m := range r.maps {
		n += len(m)
	}
	for _, s := range r.sets {
		n += len(s)
	}
	return n
}

// nftRenderer renders the rules of one IP family (fam: 4 or 6, as
// everywhere in skein) into that family's table, ip skein or ip6 skein.
type nftRenderer struct {
	fam            int
	ip, addrType   string
	bridge         string
	nodePortPrefix []string // of this family
}

func newNFTRenderer(fam int, o proxy.RuleOptions) nftRenderer {
	f := nftRenderer{fam: fam, ip: "ip", addrType: "ipv4_addr", bridge: o.Bridge, nodePortPrefix: o.NodePorts(fam)}
	if fam == 6 {
		f.ip, f.addrType = "ip6", "ipv6_addr"
	}
	return f
}

// newNFTRules returns empty rules with room for about n service ports.
func newNFTRules(n int) *nftRules {
	return &nftRules{
		chains: make(map[string][]string, n),
		maps: map[string]map[string]string{mapServiceIPs: make(map[string]string, n), mapNodePorts: {},
			mapNoEPServices: {}, mapNoEPNodePort: {}},
		sets:     map[string][]string{},
		affinity: map[string]int{},
	}
}

// nftChunk is what one service port renders to, kept while its
// generation stays.
type nftChunk struct {
	proxy.PortStamp
	r       *nftRules
	hairpin []string
	slots   []slotRange // its keys in its group's endpoints map
	group   string      // that map; "" when it has no keys
}

// endpointGroup is the endpoints map a port's picks read: one of 256,
// fixed by the port's ID. Adding an element to a map costs the kernel a
// check per rule reading the map, so one map for all would make loading
// quadratic; a map per port would be one set per Service, which the
// kernel finds by name in a list.
func endpointGroup(sp *proxy.ServicePort) string {
	return mapEndpoints + fmt.Sprintf("%02x", crc32.ChecksumIEEE([]byte(sp.ID()))&0xff)
}

// nftCache is the family's rules as desired last rendered them, kept by
// port: what lets a change be rendered, and diffed, at the cost of the
// ports it touches rather than of the whole table.
type nftCache struct {
	call   uint64
	chunks map[string]*nftChunk         // by port ID
	groups map[string]map[string]string // each endpoints map, whole
	// members are the chunks with keys in each endpoints map.
	members map[string]map[string]*nftChunk
	// claims holds, per "map key" of the verdict maps, the ports whose
	// rules want it, sorted: two Services may list the same external
	// address and port, and then the first port's wins.
	claims  map[string][]string
	hairpin map[string]int // element -> the local endpoints behind it
	count   int            // rules and elements, everything written
}

// nftChange is what a partial sync writes: the rules of the ports that
// changed (their chains, sets and verdict-map elements), the endpoints
// maps they touch and the hairpin elements that come or go, as they were
// and as they are to be.
type nftChange struct {
	before, after *nftRules
}

// verdictMaps are the maps whose keys ports claim.
var verdictMaps = []string{mapServiceIPs, mapNodePorts, mapNoEPServices, mapNoEPNodePort}

// desired renders the ports of this family that changed since the last
// call, whose cache it takes over (the caller keeps only the returned
// one), and returns what changed; unless partial, only what went (the
// caller writes the whole). A port rendered anew takes its keys in
// its group's endpoints map from those the other ports leave free,
// preferring the runs it had: an endpoint replaced by another then
// changes map elements only, and the port's chain stays as it is.
func (f nftRenderer) desired(m *proxy.Model, cache *nftCache, partial bool) (nftChange, *nftCache) {
	if cache == nil {
		cache = &nftCache{chunks: map[string]*nftChunk{}, groups: map[string]map[string]string{}, members: map[string]map[string]*nftChunk{},
			claims: map[string][]string{}, hairpin: map[string]int{}}
	}
	cache.call++
	type pair struct{ old, cur *nftChunk }
	var changed []pair
	fresh, renewed := proxy.ChangedPorts(m, f.fam, cache.chunks, cache.call)
	// The groups that change: those of ports rendered anew, and of ports
	// whose chunk goes.
	dirty := map[string]bool{}
	for _, sp := range fresh {
		dirty[endpointGroup(sp)] = true
	}
	for id, c := range cache.chunks {
		if c.Seen == cache.call {
			continue
		}
		if c.group != "" {
			dirty[c.group] = true
		}
		if !renewed[id] {
			changed = append(changed, pair{old: c})
			delete(cache.chunks, id)
			delete(cache.members[c.group], id)
		}
	}
	// Keys stay taken by the ports kept, and by those rendered anew, which
	// may take their runs again; a port that goes frees its keys.
	taken := map[string][]slotRange{}
	for g := range dirty {
		for _, c := range cache.members[g] {
			taken[g] = append(taken[g], c.slots...)
		}
	}
	free := map[string]*slots{}
	for _, sp := range fresh {
		g := endpointGroup(sp)
		if free[g] == nil {
			free[g] = newSlots(taken[g])
		}
		c := &nftChunk{PortStamp: proxy.PortStamp{ID: sp.ID(), Gen: sp.Gen(), Seen: cache.call}, r: newNFTRules(0)}
		old := cache.chunks[sp.ID()]
		var had []slotRange
		if old != nil {
			had = old.slots
		}
		f.servicePort(c, &keyAlloc{group: g, free: free[g], had: had}, sp)
		if len(c.slots) > 0 {
			c.group = g
		}
		for _, e := range sp.Endpoints {
			if e.Local {
				c.hairpin = append(c.hairpin, e.Addr.String()+" . "+e.Addr.String())
			}
		}
		cache.chunks[sp.ID()] = c
		if old != nil {
			delete(cache.members[old.group], old.ID)
		}
		if c.group != "" {
			if cache.members[c.group] == nil {
				cache.members[c.group] = map[string]*nftChunk{}
			}
			cache.members[c.group][c.ID] = c
		}
		changed = append(changed, pair{old, c})
	}

	// The endpoints maps touched, rebuilt whole.
	ch := nftChange{before: newNFTRules(0), after: newNFTRules(0)}
	for g := range dirty {
		if old := cache.groups[g]; old != nil {
			ch.before.maps[g] = old
		}
		delete(cache.groups, g)
		for _, c := range cache.members[g] {
			if cache.groups[g] == nil {
				cache.groups[g] = map[string]string{}
			}
			maps.Copy(cache.groups[g], c.r.maps[g])
		}
		if cur := cache.groups[g]; cur != nil && partial {
			ch.after.maps[g] = cur
		}
	}
	// The verdict-map keys the changed ports claim: before, the value of
	// the key's first claim then, after, of its first claim now.
	var touched []string
	if partial {
		olds := map[string]*nftChunk{} // no longer in cache.chunks
		seen := map[string]bool{}
		for _, p := range changed {
			for _, c := range []*nftChunk{p.old, p.cur} {
				if c == nil {
					continue
				}
				for _, mp := range verdictMaps {
					for k := range c.r.maps[mp] {
						if mk := mp + " " + k; !seen[mk] {
							seen[mk] = true
							touched = append(touched, mk)
						}
					}
				}
			}
			if p.old != nil {
				olds[p.old.ID] = p.old
			}
		}
		for _, mk := range touched {
			if ids := cache.claims[mk]; len(ids) > 0 {
				owner := olds[ids[0]]
				if owner == nil {
					owner = cache.chunks[ids[0]]
				}
				mp, k, _ := strings.Cut(mk, " ")
				ch.before.maps[mp][k] = owner.r.maps[mp][k]
			}
		}
	}
	hairpinWas := map[string]bool{}
	for _, p := range changed {
		if p.old != nil {
			mergeChunk(ch.before, p.old) // a full sync too deletes what went
			cache.claim(p.old, -1)
			for _, h := range p.old.hairpin {
				if _, ok := hairpinWas[h]; !ok {
					hairpinWas[h] = cache.hairpin[h] > 0
				}
				if cache.hairpin[h]--; cache.hairpin[h] <= 0 {
					delete(cache.hairpin, h)
				}
			}
		}
		if p.cur != nil {
			if partial {
				mergeChunk(ch.after, p.cur)
			}
			cache.claim(p.cur, 1)
			for _, h := range p.cur.hairpin {
				if _, ok := hairpinWas[h]; !ok {
					hairpinWas[h] = cache.hairpin[h] > 0
				}
				cache.hairpin[h]++
			}
		}
	}
	if !partial {
		return ch, cache // the caller writes the whole
	}
	for _, mk := range touched {
		mp, k, _ := strings.Cut(mk, " ")
		if ids := cache.claims[mk]; len(ids) > 0 {
			ch.after.maps[mp][k] = cache.chunks[ids[0]].r.maps[mp][k]
		}
	}
	for h, was := range hairpinWas {
		if is := cache.hairpin[h] > 0; is != was {
			if was {
				ch.before.sets[setHairpin] = append(ch.before.sets[setHairpin], h)
			} else {
				ch.after.sets[setHairpin] = append(ch.after.sets[setHairpin], h)
			}
		}
	}
	if len(hairpinWas) > 0 {
		for _, r := range []*nftRules{ch.before, ch.after} {
			r.sets[setHairpin] = append([]string{}, r.sets[setHairpin]...)
			slices.Sort(r.sets[setHairpin])
		}
	}
	cache.count += ch.after.count() - ch.before.count()
	return ch, cache
}

// mergeChunk adds a chunk's chains and dynamic sets to r.
func mergeChunk(r *nftRules, c *nftChunk) {
	maps.Copy(r.chains, c.r.chains)
	maps.Copy(r.affinity, c.r.affinity)
}

// claim adds (d = 1) or removes (d = -1) the chunk's claims on keys of the
// verdict maps.
func (cache *nftCache) claim(c *nftChunk, d int) {
	for _, mp := range verdictMaps {
		for k := range c.r.maps[mp] {
			mk := mp + " " + k
			ids := cache.claims[mk]
			i, found := slices.BinarySearch(ids, c.ID)
			switch {
			case d > 0 && !found:
				ids = slices.Insert(ids, i, c.ID)
			case d < 0 && found:
				ids = slices.Delete(ids, i, i+1)
			}
			if len(ids) == 0 {
				delete(cache.claims, mk)
			} else {
				cache.claims[mk] = ids
			}
		}
	}
}

// whole is every rule of the family, as the cache holds them.
func (f nftRenderer) whole(cache *nftCache) *nftRules {
	r := newNFTRules(len(cache.chunks))
	r.sets[setNodePortIPs] = f.nodePortPrefix
	for _, c := range cache.chunks {
		mergeChunk(r, c)
	}
	for mk, ids := range cache.claims {
		mp, k, _ := strings.Cut(mk, " ")
		r.maps[mp][k] = cache.chunks[ids[0]].r.maps[mp][k]
	}
	maps.Copy(r.maps, cache.groups)
	r.sets[setHairpin] = slices.Sorted(maps.Keys(cache.hairpin))
	cache.count = r.count()
	return r
}

// slotRange is a run of keys in the endpoints map: first, first+1, ….
type slotRange struct{ first, n int }

// slots hands out runs of keys: first fit in the gaps between those taken,
// then after the last.
type slots struct {
	gaps []slotRange
	end  int
}

func newSlots(taken []slotRange) *slots {
	slices.SortFunc(taken, func(a, b slotRange) int { return a.first - b.first })
	s := &slots{}
	for _, t := range taken {
		if t.first > s.end {
			s.gaps = append(s.gaps, slotRange{s.end, t.first - s.end})
		}
		s.end = max(s.end, t.first+t.n)
	}
	return s
}

func (s *slots) take(n int) slotRange {
	for i, g := range s.gaps {
		if g.n >= n {
			s.gaps[i] = slotRange{g.first + n, g.n - n}
			return slotRange{g.first, n}
		}
	}
	s.end += n
	return slotRange{s.end - n, n}
}

// keyAlloc hands a port its runs of keys in its group's map: the runs
// it had, in order, where the length still fits, else free ones.
type keyAlloc struct {
	group string
	free  *slots
	had   []slotRange
	next  int
}

func (a *keyAlloc) take(n int) slotRange {
	if a.next < len(a.had) && a.had[a.next].n == n {
		a.next++
		return a.had[a.next-1]
	}
	a.next = len(a.had)
	return a.free.take(n)
}

func (f nftRenderer) servicePort(c *nftChunk, free *keyAlloc, sp *proxy.ServicePort) {
	r := c.r
	label := chainLabel(fmt.Sprintf("%s/%s/%s/%s", sp.Namespace, sp.Service, sp.Protocol, portLabel(sp)))
	svc, ext, svl := "svc-"+sp.ID()+"-"+label, "ext-"+sp.ID()+"-"+label, "svl-"+sp.ID()+"-"+label
	key := func(ip string, port uint16) string { return fmt.Sprintf("%s . %s . %d", ip, sp.Protocol, port) }
	cluster := sp.ClusterEndpoints()
	clusterKey := key(sp.ClusterIP.String(), sp.Port)
	switch {
	case len(cluster) > 0:
		r.chains[svc] = append([]string{fmt.Sprintf("iifname != %q jump %s", f.bridge, chainMarkMasq)}, f.dispatch(c, free, sp, cluster)...)
		r.maps[mapServiceIPs][clusterKey] = "goto " + svc
	case sp.InternalLocal && len(sp.Endpoints) > 0:
		r.maps[mapNoEPServices][clusterKey] = "drop" // endpoints exist, none here
	default:
		r.maps[mapNoEPServices][clusterKey] = "goto " + chainReject
	}
	if sp.NodePort == 0 && len(sp.External) == 0 {
		return
	}
	// Traffic from outside: where it goes, or why it cannot.
	var noEP string
	switch {
	case !sp.ExternalLocal && len(cluster) > 0:
		// The ClusterIP's pick, whose own masquerade test can only add
		// the mark this one sets anyway.
		r.chains[ext] = []string{"jump " + chainMarkMasq, "goto " + svc}
	case sp.ExternalLocal && len(sp.LocalEndpoints()) > 0:
		r.chains[ext] = []string{"fib saddr type local jump " + chainMarkMasq}
		r.chains[ext] = append(r.chains[ext], "goto "+svl)
		r.chains[svl] = f.dispatch(c, free, sp, sp.LocalEndpoints())
	case sp.ExternalLocal && len(sp.Endpoints) > 0:
		noEP = "drop" // externalTrafficPolicy: Local, and no endpoint here
	default:
		noEP = "goto " + chainReject
	}
	for _, ip := range sp.External {
		if noEP != "" {
			r.maps[mapNoEPServices][key(ip.String(), sp.Port)] = noEP
		} else {
			r.maps[mapServiceIPs][key(ip.String(), sp.Port)] = "goto " + ext
		}
	}
	if sp.NodePort != 0 {
		npKey := fmt.Sprintf("%s . %d", sp.Protocol, sp.NodePort)
		if noEP != "" {
			r.maps[mapNoEPNodePort][npKey] = noEP
		} else {
			r.maps[mapNodePorts][npKey] = "goto " + ext
		}
	}
}

// dispatch returns the rules that DNAT to one of eps, at random; with
// session affinity, a client that has an endpoint keeps it.
//
// The pick is one rule: a random number in the run of keys the endpoints
// take in the shared endpoints map, looked up there for the address and
// port. The kernel checks every rule reachable from the hooks on each
// commit that adds a NAT rule, so a rule per endpoint would make every
// change cost in proportion to all the endpoints in the table; map
// elements are not checked. (A "numgen vmap" per Service would be one
// rule too, but each is an anonymous set, and the kernel names each new
// set by scanning the table's: loading tens of thousands is quadratic.)
// Affinity needs a chain per endpoint to record the client in; there the
// pick is a cascade, the i-th of the n rules left matching with odds 1/n.
func (f nftRenderer) dispatch(c *nftChunk, free *keyAlloc, sp *proxy.ServicePort, eps []proxy.Endpoint) []string {
	r := c.r
	var rules []string
	target := func(e proxy.Endpoint) string {
		return fmt.Sprintf("meta l4proto %s dnat to %s", sp.Protocol, e.AddrPort())
	}
	if sp.AffinitySeconds > 0 {
		var seps []string
		for _, e := range eps {
			id := sp.EndpointID(e)
			// nft names take letters, digits and "/-_.": an IPv6 address's
			// colons become dots.
			sep := "sep-" + id + "-" + strings.ReplaceAll(e.Addr.String(), ":", ".") + "/" + fmt.Sprint(e.Port)
			// The timeout is in the name: a set's timeout cannot change.
			aff := fmt.Sprintf("affinity-%s-%d", id, sp.AffinitySeconds)
			r.affinity[aff] = sp.AffinitySeconds
			r.chains[sep] = []string{fmt.Sprintf("update @%s { %s saddr }", aff, f.ip), target(e)}
			rules = append(rules, fmt.Sprintf("%s saddr @%s goto %s", f.ip, aff, sep))
			seps = append(seps, "goto "+sep)
		}
		return append(rules, cascade(seps)...)
	}
	if len(eps) == 1 {
		return []string{target(eps[0])}
	}
	run := free.take(len(eps))
	c.slots = append(c.slots, run)
	if r.maps[free.group] == nil {
		r.maps[free.group] = map[string]string{}
	}
	for i, e := range eps {
		r.maps[free.group][strconv.Itoa(run.first+i)] = fmt.Sprintf("%s . %d", e.Addr, e.Port)
	}
	return []string{fmt.Sprintf("meta l4proto %s dnat %s to numgen random mod %d offset %d map @%s", sp.Protocol, f.ip, len(eps), run.first, free.group)}
}

// cascade picks one of the statements with equal odds.
func cascade(stmts []string) []string {
	var rules []string
	for i, s := range stmts {
		if left := len(stmts) - i; left > 1 {
			rules = append(rules, fmt.Sprintf("numgen random mod %d == 0 %s", left, s))
		} else {
			rules = append(rules, s)
		}
	}
	return rules
}

// nameChars are the characters nft takes in a bare name.
const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-_."

// maxLabel bounds the readable part of a chain name (the kernel takes
// names of up to 255 bytes).
const maxLabel = 96

// chainLabel makes the readable part of a chain name from object names,
// which a cluster file does not validate ("a b", 250 characters): only
// the characters nft takes in a bare name, and at most maxLabel of them.
// The port's ID before it keeps every name unique.
func chainLabel(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !strings.ContainsRune(nameChars, rune(c)) {
			b[i] = '_'
		}
	}
	if len(b) > maxLabel {
		b = b[:maxLabel]
	}
	return string(b)
}

func portLabel(sp *proxy.ServicePort) string {
	if sp.PortName != "" {
		return sp.PortName
	}
	return fmt.Sprint(sp.Port)
}

// skeleton adds the table's fixed objects: base chains, maps and sets
// declared, the fixed chains written whole.
func (f nftRenderer) skeleton(tx nftWriter) {
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("skein: service proxy")})
	for _, c := range []struct {
		name string
		typ  knftables.BaseChainType
		hook knftables.BaseChainHook
		prio knftables.BaseChainPriority
	}{
		{"nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority},
		{"nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority},
		{"nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority},
		// Before DNAT, so that a Service without endpoints is refused
		// whether or not the node has a route to its ClusterIP.
		{"filter-prerouting", knftables.FilterType, knftables.PreroutingHook, knftables.DNATPriority + "-10"},
		{"filter-output", knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "-10"},
	} {
		tx.Add(&knftables.Chain{Name: c.name, Type: &c.typ, Hook: &c.hook, Priority: &c.prio})
		tx.Flush(&knftables.Chain{Name: c.name})
	}
	for _, c := range []string{chainServices, chainMarkMasq, chainReject} {
		tx.Add(&knftables.Chain{Name: c})
		tx.Flush(&knftables.Chain{Name: c})
	}
	svcKey := f.addrType + " . inet_proto . inet_service"
	for _, m := range [][2]string{{mapServiceIPs, svcKey}, {mapNoEPServices, svcKey},
		{mapNodePorts, "inet_proto . inet_service"}, {mapNoEPNodePort, "inet_proto . inet_service"}} {
		tx.Add(&knftables.Map{Name: m[0], Type: m[1] + " : verdict"})
	}
	tx.Add(&knftables.Set{Name: setHairpin, Type: f.addrType + " . " + f.addrType})
	tx.Add(&knftables.Set{Name: setNodePortIPs, Type: f.addrType, Flags: []knftables.SetFlag{knftables.IntervalFlag}})

	rule := func(chain string, parts ...string) {
		tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(parts)})
	}
	rule("nat-prerouting", "jump", chainServices)
	rule("nat-output", "jump", chainServices)
	rule(chainServices, f.ip, "daddr . meta l4proto . th dport vmap @"+mapServiceIPs)
	local := "fib daddr type local"
	if len(f.nodePortPrefix) > 0 {
		local = f.ip + " daddr @" + setNodePortIPs
	}
	rule(chainServices, local, "meta l4proto . th dport vmap @"+mapNodePorts)
	rule(chainMarkMasq, fmt.Sprintf("meta mark set meta mark or 0x%x", proxy.MasqueradeMark))
	rule("nat-postrouting", "ct status dnat", f.ip, "saddr .", f.ip, "daddr @"+setHairpin, "masquerade")
	rule("nat-postrouting", fmt.Sprintf("meta mark & 0x%x == 0 return", proxy.MasqueradeMark))
	rule("nat-postrouting", fmt.Sprintf("meta mark set meta mark xor 0x%x", proxy.MasqueradeMark))
	rule("nat-postrouting", "masquerade fully-random")
	for _, c := range []string{"filter-prerouting", "filter-output"} {
		rule(c, "ct state new", f.ip, "daddr . meta l4proto . th dport vmap @"+mapNoEPServices)
		rule(c, "ct state new", local, "meta l4proto . th dport vmap @"+mapNoEPNodePort)
	}
	// A TCP reset, which unlike ICMP errors the kernel does not rate-limit.
	rule(chainReject, "meta l4proto tcp reject with tcp reset")
	rule(chainReject, "reject")
}

// nftWriter takes a transaction's operations: a knftables transaction
// (the text nft reads, and the golden files hold) or a wireBatch (the
// same operations encoded for the kernel).
type nftWriter interface {
	Add(knftables.Object)
	Flush(knftables.Object)
	Delete(knftables.Object)
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
		prev = &nftRules{chains: map[string][]string{}, maps: map[string]map[string]string{}, sets: map[string][]string{}, affinity: map[string]int{}}
		for _, c := range existingChains {
			if !isFixedChain(c) {
				prev.chains[c] = []string{"(unknown)"}
			}
		}
		for _, s := range existingSets {
			if strings.HasPrefix(s, "affinity-") {
				prev.affinity[s] = -1
			}
			if strings.HasPrefix(s, mapEndpoints) {
				prev.maps[s] = map[string]string{}
			}
		}
	}
	// 0. The endpoints maps the rules will read.
	for _, name := range keysWhere(cur.maps, func(name string, _ map[string]string) bool {
		_, ok := prev.maps[name]
		return strings.HasPrefix(name, mapEndpoints) && (!ok || full)
	}) {
		tx.Add(&knftables.Map{Name: name, TypeOf: "numgen random mod 1 : " + f.ip + " daddr . tcp dport"})
	}
	// 1. Sets the new chains update, then every new chain, empty (a chain
	// may jump to another new one).
	for _, name := range keysWhere(cur.affinity, func(name string, _ int) bool { _, ok := prev.affinity[name]; return !ok || full }) {
		t := time.Duration(cur.affinity[name]) * time.Second
		tx.Add(&knftables.Set{Name: name, Type: f.addrType, Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}, Timeout: &t})
	}
	rewrite := keysWhere(cur.chains, func(name string, rules []string) bool {
		old, had := prev.chains[name]
		return !had || !slices.Equal(old, rules)
	})
	for _, name := range rewrite {
		// A full sync adds every chain, existing or not: what it was
		// told exists is a belief, and adding an existing chain changes
		// nothing, where flushing a missing one fails the transaction.
		if _, had := prev.chains[name]; !had || full {
			tx.Add(&knftables.Chain{Name: name})
		}
	}
	// 2. Chains whose rules differ, rewritten.
	for _, name := range rewrite {
		if _, had := prev.chains[name]; had {
			tx.Flush(&knftables.Chain{Name: name})
		}
		for _, rule := range cur.chains[name] {
			tx.Add(&knftables.Rule{Chain: name, Rule: rule})
		}
	}
	// 3. Map and set elements.
	for _, name := range sortedKeys(cur.maps) {
		want, have := cur.maps[name], prev.maps[name]
		if full {
			tx.Flush(&knftables.Map{Name: name})
			have = nil
		}
		for _, k := range keysWhere(have, func(k, v string) bool { w, ok := want[k]; return !ok || w != v }) {
			tx.Delete(&knftables.Element{Map: name, Key: []string{k}})
		}
		for _, k := range keysWhere(want, func(k, v string) bool { h, ok := have[k]; return !ok || h != v }) {
			tx.Add(&knftables.Element{Map: name, Key: []string{k}, Value: []string{want[k]}})
		}
	}
	for _, name := range sortedKeys(cur.sets) {
		want, have := cur.sets[name], prev.sets[name]
		if full {
			tx.Flush(&knftables.Set{Name: name})
			have = nil
		}
		for _, k := range have {
			if !slices.Contains(want, k) {
				tx.Delete(&knftables.Element{Set: name, Key: []string{k}})
			}
		}
		for _, k := range want {
			if !slices.Contains(have, k) {
				tx.Add(&knftables.Element{Set: name, Key: []string{k}})
			}
		}
	}
	// 4. What is no longer wanted, now that nothing refers to it.
	gone := keysWhere(prev.chains, func(name string, _ []string) bool { _, ok := cur.chains[name]; return !ok })
	for _, name := range gone {
		tx.Flush(&knftables.Chain{Name: name})
	}
	for _, name := range gone {
		tx.Delete(&knftables.Chain{Name: name})
	}
	for _, name := range keysWhere(prev.affinity, func(name string, _ int) bool { _, ok := cur.affinity[name]; return !ok }) {
		tx.Delete(&knftables.Set{Name: name})
	}
	for _, name := range keysWhere(prev.maps, func(name string, _ map[string]string) bool { _, ok := cur.maps[name]; return !ok }) {
		tx.Delete(&knftables.Map{Name: name})
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

func isFixedChain(name string) bool {
	switch name {
	case "nat-prerouting", "nat-output", "nat-postrouting", "filter-prerouting", "filter-output",
		chainServices, chainMarkMasq, chainReject:
		return true
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Backend is the nftables backend: one table per family.
type Backend struct {
	opts  proxy.RuleOptions
	nft   map[int]knftables.Interface
	cache map[int]*nftCache
	// synced tells, per family, that the kernel holds what the cache
	// does: the last sync landed.
	synced map[int]bool
	sock   *nlSocket // the writes' netlink socket; nil until the first
}

// transact writes the batch over the lasting socket; after a failure the
// socket is dropped (the next write opens another).
func (b *Backend) transact(w *wireBatch) error {
	if b.sock == nil {
		sock, err := openNL()
		if err != nil {
			return err
		}
		b.sock = sock
	}
	if err := b.sock.transact(w); err != nil {
		b.sock.close()
		b.sock = nil
		return err
	}
	return nil
}

// apply sends the batch, which render filled; when it holds what the
// encoder does not know, render writes the same operations as text for
// nft instead.
func (b *Backend) apply(ctx context.Context, f nftRenderer, w *wireBatch, render func(nftWriter)) error {
	err := w.finish()
	if errors.Is(err, errNotEncodable) {
		tx := b.nft[f.fam].NewTransaction()
		render(tx)
		return runNFT(ctx, tx)
	}
	if err != nil {
		return err
	}
	return b.transact(w)
}

// existing lists the chains and the sets (maps among them) of the
// family's table, none when it does not exist. Over netlink: nft would
// read every element of every set of the family first (half a second
// at ten thousand Services).
func existing(f nftRenderer) (chains, sets []string, err error) {
	conn, err := gnft.New()
	if err != nil {
		return nil, nil, err
	}
	family := gnft.TableFamily(f.nfproto())
	tables, err := conn.ListTablesOfFamily(family)
	if err != nil {
		return nil, nil, err
	}
	if !slices.ContainsFunc(tables, func(t *gnft.Table) bool { return t.Name == Table }) {
		return nil, nil, nil
	}
	all, err := conn.ListChainsOfTableFamily(family)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range all {
		if c.Table != nil && c.Table.Name == Table {
			chains = append(chains, c.Name)
		}
	}
	ss, err := conn.GetSets(&gnft.Table{Name: Table, Family: family})
	if err != nil {
		return nil, nil, err
	}
	for _, s := range ss {
		sets = append(sets, s.Name)
	}
	return chains, sets, nil
}

// New returns the backend; it fails when nftables cannot be used.
func New(o proxy.RuleOptions) (*Backend, error) {
	b := &Backend{opts: o, nft: map[int]knftables.Interface{}, cache: map[int]*nftCache{}, synced: map[int]bool{}}
	for fam, family := range map[int]knftables.Family{4: knftables.IPv4Family, 6: knftables.IPv6Family} {
		nft, err := knftables.New(family, Table)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		b.nft[fam] = nft
	}
	return b, nil
}

// Name implements Backend.
func (b *Backend) Name() string { return "nftables" }

// Sync implements Backend.
func (b *Backend) Sync(ctx context.Context, m *proxy.Model, full bool) (int, error) {
	rules := 0
	for _, fam := range []int{4, 6} {
		f := newNFTRenderer(fam, b.opts)
		var ch nftChange
		partial := !full && b.synced[fam]
		ch, b.cache[fam] = f.desired(m, b.cache[fam], partial)
		w := newWireBatch(f)
		var render func(nftWriter)
		if !partial {
			cur := f.whole(b.cache[fam])
			// What to delete: what the kernel has. After a good sync that
			// is what is wanted now and what just went; else, listed.
			var chains, sets []string
			if b.synced[fam] {
				for _, r := range []*nftRules{cur, ch.before} {
					chains = append(chains, slices.Collect(maps.Keys(r.chains))...)
					sets = append(sets, slices.Collect(maps.Keys(r.affinity))...)
					sets = append(sets, slices.Collect(maps.Keys(r.maps))...)
				}
			} else {
				var err error
				if chains, sets, err = existing(f); err != nil {
					return rules, fmt.Errorf("list the table %s %s: %w", f.ip, Table, err)
				}
			}
			render = func(tx nftWriter) { f.transaction(tx, nil, cur, chains, sets) }
			w.reserve(b.cache[fam].count + len(chains) + len(sets))
		} else if del, add, ok := elementsOnly(ch.before, ch.after); ok {
			render = func(tx nftWriter) {
				for _, e := range del {
					tx.Delete(e.object())
				}
				for _, e := range add {
					tx.Add(e.object())
				}
			}
		} else {
			render = func(tx nftWriter) { f.transaction(tx, ch.before, ch.after, nil, nil) }
		}
		render(w)
		if w.ops() > 0 || w.err != nil {
			b.synced[fam] = false // unknown until the transaction is known to have landed
			if err := b.apply(ctx, f, w, render); err != nil {
				return rules, fmt.Errorf("nftables table %s %s: %w", f.ip, Table, err)
			}
		}
		b.synced[fam] = true
		rules += b.cache[fam].count
	}
	return rules, nil
}

// Cleanup implements Backend: both tables go.
func (b *Backend) Cleanup(ctx context.Context) error {
	var errs []error
	for _, fam := range []int{4, 6} {
		tx := b.nft[fam].NewTransaction()
		tx.Delete(&knftables.Table{})
		if err := b.nft[fam].Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete nftables table %s: %w", Table, err))
		}
		b.synced[fam] = false
	}
	b.sock.close()
	b.sock = nil
	return errors.Join(errs...)
}
