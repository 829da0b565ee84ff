package nftables

import (
	"fmt"
	"hash/crc32"
	"maps"
	"net/netip"
	"slices"
	"strings"

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
	setServiceCIDRs = "service-cidrs"
)

// nftRules is the desired content of one family's table beyond its fixed
// skeleton: what a partial sync diffs.
type nftRules struct {
	chains   map[string][]rule          // regular chains and their rules
	maps     map[string]map[string]elem // maps: key text -> element
	sets     map[string][]elem          // plain sets: elements
	affinity map[string]int             // dynamic sets: timeout in seconds
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
	nodePortPrefix []netip.Prefix // of this family
}

func newNFTRenderer(fam int, o proxy.RuleOptions) nftRenderer {
	f := nftRenderer{fam: fam, ip: "ip", addrType: "ipv4_addr", bridge: o.Bridge}
	for _, s := range o.NodePorts(fam) {
		if p, err := netip.ParsePrefix(s); err == nil { // skeind's flags parsed them already
			f.nodePortPrefix = append(f.nodePortPrefix, p.Masked())
		}
	}
	if fam == 6 {
		f.ip, f.addrType = "ip6", "ipv6_addr"
	}
	return f
}

// newNFTRules returns empty rules with room for about n service ports.
func newNFTRules(n int) *nftRules {
	return &nftRules{
		chains: make(map[string][]rule, n),
		maps: map[string]map[string]elem{mapServiceIPs: make(map[string]elem, n), mapNodePorts: {},
			mapNoEPServices: {}, mapNoEPNodePort: {}},
		sets:     map[string][]elem{},
		affinity: map[string]int{},
	}
}

// nftChunk is what one service port renders to, kept while its
// generation stays.
type nftChunk struct {
	proxy.PortStamp
	r       *nftRules
	hairpin []elem
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
	ports  proxy.PortSet              // the ports the chunks are of
	chunks map[string]*nftChunk       // by port ID
	groups map[string]map[string]elem // each endpoints map, whole
	// members are the chunks with keys in each endpoints map.
	members map[string]map[string]*nftChunk
	// claims holds, per "map key" of the verdict maps, the ports whose
	// rules want it, sorted: two Services may list the same external
	// address and port, and then the first port's wins.
	claims  map[string][]string
	hairpin map[elem]int // element -> the local endpoints behind it
	count   int          // rules and elements, everything written
	// serviceCIDRs are the model's Service ranges of this family.
	serviceCIDRs []netip.Prefix
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
		cache = &nftCache{chunks: map[string]*nftChunk{}, groups: map[string]map[string]elem{}, members: map[string]map[string]*nftChunk{},
			claims: map[string][]string{}, hairpin: map[elem]int{}}
	}
	cache.serviceCIDRs = m.ServiceCIDRsOf(f.fam)
	changed, dirty := f.renderChanged(m, cache)
	ch := nftChange{before: newNFTRules(0), after: newNFTRules(0)}
	cache.rebuildGroups(ch, dirty, partial)
	var touched []string
	if partial {
		touched = cache.claimedBefore(ch, changed)
	}
	hairpinWas := cache.apply(ch, changed, partial)
	if !partial {
		return ch, cache // the caller writes the whole
	}
	for _, mk := range touched {
		mp, k, _ := strings.Cut(mk, " ")
		if ids := cache.claims[mk]; len(ids) > 0 {
			ch.after.maps[mp][k] = cache.chunks[ids[0]].r.maps[mp][k]
		}
	}
	cache.hairpinChange(ch, hairpinWas)
	cache.count += ch.after.count() - ch.before.count()
	return ch, cache
}

// chunkPair is a port's chunk as it was (nil: the port is new) and as it
// is (nil: the port went).
type chunkPair struct{ old, cur *nftChunk }

// renderChanged renders anew the ports that changed, drops the chunks of
// ports that went, and returns both, with the endpoints maps they touch.
// Keys stay taken by the ports kept, and by those rendered anew, which
// may take their runs again; a port that goes frees its keys.
func (f nftRenderer) renderChanged(m *proxy.Model, cache *nftCache) (changed []chunkPair, dirty map[string]bool) {
	fresh, gone := cache.ports.Diff(m, f.fam)
	dirty = map[string]bool{}
	for _, sp := range fresh {
		dirty[endpointGroup(sp)] = true
		if old := cache.chunks[sp.ID()]; old != nil && old.group != "" {
			dirty[old.group] = true
		}
	}
	for _, id := range gone {
		c := cache.chunks[id]
		if c == nil {
			continue
		}
		if c.group != "" {
			dirty[c.group] = true
		}
		changed = append(changed, chunkPair{old: c})
		delete(cache.chunks, id)
		delete(cache.members[c.group], id)
	}
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
		c := &nftChunk{PortStamp: proxy.PortStamp{ID: sp.ID(), Gen: sp.Gen()}, r: newNFTRules(0)}
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
				c.hairpin = append(c.hairpin, hairpinElem(e.Addr))
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
		changed = append(changed, chunkPair{old, c})
	}
	return changed, dirty
}

// rebuildGroups rebuilds the endpoints maps touched, whole: as they were
// into ch.before, and, when partial, as they are into ch.after.
func (cache *nftCache) rebuildGroups(ch nftChange, dirty map[string]bool, partial bool) {
	for g := range dirty {
		if old := cache.groups[g]; old != nil {
			ch.before.maps[g] = old
		}
		delete(cache.groups, g)
		for _, c := range cache.members[g] {
			if cache.groups[g] == nil {
				cache.groups[g] = map[string]elem{}
			}
			maps.Copy(cache.groups[g], c.r.maps[g])
		}
		if cur := cache.groups[g]; cur != nil && partial {
			ch.after.maps[g] = cur
		}
	}
}

// claimedBefore returns the verdict-map keys the changed ports claim,
// and puts into ch.before each key's value as its first claim had it.
func (cache *nftCache) claimedBefore(ch nftChange, changed []chunkPair) []string {
	var touched []string
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
	return touched
}

// apply moves the cache's claims and hairpin counts from the changed
// ports' old chunks to their new ones, merging the chunks' chains into
// ch (the old ones always: a full sync too deletes what went), and
// returns, per hairpin element touched, whether it was there before.
func (cache *nftCache) apply(ch nftChange, changed []chunkPair, partial bool) map[elem]bool {
	hairpinWas := map[elem]bool{}
	for _, p := range changed {
		if p.old != nil {
			mergeChunk(ch.before, p.old)
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
	return hairpinWas
}

// hairpinChange writes into ch the hairpin elements that come or go.
func (cache *nftCache) hairpinChange(ch nftChange, hairpinWas map[elem]bool) {
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
			r.sets[setHairpin] = append([]elem{}, r.sets[setHairpin]...)
			sortElems(r.sets[setHairpin])
		}
	}
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
	var nodePortIPs []elem // nil when none: the set is flushed all the same
	for _, p := range f.nodePortPrefix {
		nodePortIPs = append(nodePortIPs, intervalElem(p))
	}
	r.sets[setNodePortIPs] = nodePortIPs
	var cidrs []elem
	for _, p := range cache.serviceCIDRs {
		cidrs = append(cidrs, intervalElem(p))
	}
	r.sets[setServiceCIDRs] = cidrs
	for _, c := range cache.chunks {
		mergeChunk(r, c)
	}
	for mk, ids := range cache.claims {
		mp, k, _ := strings.Cut(mk, " ")
		r.maps[mp][k] = cache.chunks[ids[0]].r.maps[mp][k]
	}
	maps.Copy(r.maps, cache.groups)
	r.sets[setHairpin] = slices.Collect(maps.Keys(cache.hairpin))
	sortElems(r.sets[setHairpin])
	cache.count = r.count()
	return r
}

func (f nftRenderer) servicePort(c *nftChunk, free *keyAlloc, sp *proxy.ServicePort) {
	r := c.r
	label := chainLabel(fmt.Sprintf("%s/%s/%s/%s", sp.Namespace, sp.Service, sp.Protocol, portLabel(sp)))
	svc, ext, svl := "svc-"+sp.ID()+"-"+label, "ext-"+sp.ID()+"-"+label, "svl-"+sp.ID()+"-"+label
	put := func(mp string, e elem) { r.maps[mp][e.text()] = e }
	cluster := sp.ClusterEndpoints()
	clusterElem := func(kind, chain string) elem { return serviceElem(sp.ClusterIP, sp.Protocol, sp.Port, kind, chain) }
	switch {
	case len(cluster) > 0:
		r.chains[svc] = append([]rule{newRule(iifnameNot{f.bridge}, verdict{"jump", chainMarkMasq})}, f.dispatch(c, free, sp, cluster)...)
		put(mapServiceIPs, clusterElem("goto", svc))
	case sp.InternalLocal && len(sp.Endpoints) > 0:
		put(mapNoEPServices, clusterElem("drop", "")) // endpoints exist, none here
	default:
		put(mapNoEPServices, clusterElem("goto", chainReject))
	}
	if sp.NodePort == 0 && len(sp.External) == 0 {
		return
	}
	// Traffic from outside: where it goes, or why it cannot (noEP, and
	// then noEPChain).
	var noEP, noEPChain string
	switch {
	case !sp.ExternalLocal && !sp.InternalLocal && len(cluster) > 0:
		// The ClusterIP's pick, whose own masquerade test can only add
		// the mark this one sets anyway.
		r.chains[ext] = []rule{newRule(verdict{"jump", chainMarkMasq}), newRule(verdict{"goto", svc})}
	case !sp.ExternalLocal && sp.InternalLocal && len(sp.ExternalEndpoints()) > 0:
		// internalTrafficPolicy Local narrows the ClusterIP only: from
		// outside, every node's endpoints.
		r.chains[ext] = append([]rule{newRule(verdict{"jump", chainMarkMasq})}, f.dispatch(c, free, sp, sp.ExternalEndpoints())...)
	case sp.ExternalLocal && len(sp.LocalEndpoints()) > 0:
		r.chains[ext] = []rule{newRule(fibLocal{"saddr"}, verdict{"jump", chainMarkMasq}), newRule(verdict{"goto", svl})}
		r.chains[svl] = f.dispatch(c, free, sp, sp.LocalEndpoints())
	case sp.ExternalLocal && len(sp.Endpoints) > 0:
		noEP = "drop" // externalTrafficPolicy: Local, and no endpoint here
	default:
		noEP, noEPChain = "goto", chainReject
	}
	for _, ip := range sp.External {
		if noEP != "" {
			put(mapNoEPServices, serviceElem(ip, sp.Protocol, sp.Port, noEP, noEPChain))
		} else {
			put(mapServiceIPs, serviceElem(ip, sp.Protocol, sp.Port, "goto", ext))
		}
	}
	if sp.NodePort != 0 {
		if noEP != "" {
			put(mapNoEPNodePort, nodePortElem(sp.Protocol, sp.NodePort, noEP, noEPChain))
		} else {
			put(mapNodePorts, nodePortElem(sp.Protocol, sp.NodePort, "goto", ext))
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
func (f nftRenderer) dispatch(c *nftChunk, free *keyAlloc, sp *proxy.ServicePort, eps []proxy.Endpoint) []rule {
	r := c.r
	var rules []rule
	target := func(e proxy.Endpoint) rule { return newRule(l4proto{sp.Protocol}, dnatTo{e.AddrPort()}) }
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
			r.chains[sep] = []rule{newRule(updateSaddr{f.fam, aff}), target(e)}
			rules = append(rules, newRule(addrIn{f.fam, "saddr", aff}, verdict{"goto", sep}))
			seps = append(seps, sep)
		}
		return append(rules, cascade(seps)...)
	}
	if len(eps) == 1 {
		return []rule{target(eps[0])}
	}
	run := free.take(len(eps))
	c.slots = append(c.slots, run)
	if r.maps[free.group] == nil {
		r.maps[free.group] = map[string]elem{}
	}
	for i, e := range eps {
		el := endpointElem(run.first+i, e.AddrPort())
		r.maps[free.group][el.text()] = el
	}
	return []rule{newRule(l4proto{sp.Protocol}, dnatNumgenMap{f.fam, uint32(len(eps)), uint32(run.first), free.group})}
}

// cascade goes to one of the chains with equal odds: the i-th of the n
// rules left matching with odds 1/n.
func cascade(chains []string) []rule {
	var rules []rule
	for i, c := range chains {
		if left := len(chains) - i; left > 1 {
			rules = append(rules, newRule(numgenIs0{uint32(left)}, verdict{"goto", c}))
		} else {
			rules = append(rules, newRule(verdict{"goto", c}))
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
