package dns

import (
	"net/netip"
	"slices"
	"strings"

	miekg "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// Zone is the cluster's names at one snapshot. It is built by a Memo and
// never modified: every query reads it at once. A zone shares with the
// one before it all but what changed.
type Zone struct {
	origin string // "cluster.local."
	ttl    uint32
	// services by "name.namespace".
	services *shardMap[string, *service]
	// namespaces counts the Services named in each namespace.
	namespaces *shardMap[string, int]
	// reverse maps an address to the names pointing back to it, sorted.
	reverse  *shardMap[netip.Addr, []string]
	soa      *miekg.SOA
	ns       *miekg.NS
	version  *miekg.TXT
	problems []problem
}

func (z *Zone) service(key string) *service {
	s, _ := z.services.get(key)
	return s
}

func (z *Zone) hasNamespace(ns string) bool {
	n, _ := z.namespaces.get(ns)
	return n > 0
}

// Memo builds zones, each Service's records once per change of the
// Service or its EndpointSlices (the snapshot keeps an unchanged object
// the same pointer), and each zone from the last by what changed: the
// Services are found by a walk of the last build's beside the
// snapshot's, both in key order, so that at 10,000 Services an endpoint
// change costs microseconds, not a map of every name.
type Memo struct {
	b builder
	// The last build's Services and their entries, aligned, and its zone.
	last    []*corev1.Service
	entries []memoEntry
	zone    *Zone
	// triggers are the trigger times of the EndpointSlices changed since
	// the last call of Triggers.
	triggers []string
}

// memoEntry is a Service's records, or why it has none.
type memoEntry struct {
	svc    *corev1.Service // nil: no entry
	s      *service
	p      *problem
	slices []*discoveryv1.EndpointSlice
}

// NewMemo returns a Memo for the zone origin ("cluster.local") with the
// records' TTL in seconds.
func NewMemo(origin string, ttl uint32) *Memo {
	return &Memo{b: builder{origin: miekg.Fqdn(strings.ToLower(origin)), ttl: ttl}}
}

// Build is the zone of the snapshot.
func (m *Memo) Build(st *cluster.State, serial uint32) *Zone {
	z := &Zone{origin: m.b.origin, ttl: m.b.ttl}
	z.soa = &miekg.SOA{Hdr: m.b.hdr(z.origin, miekg.TypeSOA), Ns: "ns.dns." + z.origin, Mbox: "hostmaster." + z.origin,
		Serial: serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: m.b.ttl}
	z.ns = &miekg.NS{Hdr: m.b.hdr(z.origin, miekg.TypeNS), Ns: "ns.dns." + z.origin}
	z.version = &miekg.TXT{Hdr: m.b.hdr("dns-version."+z.origin, miekg.TypeTXT), Txt: []string{SchemaVersion}}
	next := make([]memoEntry, len(st.Services))
	kept := make([]bool, len(m.last))
	cluster.PairServices(m.last, st.Services, func(i, j int) {
		if m.last[j] == st.Services[i] {
			next[i], kept[j] = m.entries[j], true
		}
	})
	// A snapshot that is not sealed (a test's) may hold two Services of
	// one name, of which the first listed is named: its zone is made
	// whole.
	whole := m.zone == nil || !st.Sealed()
	var ed zoneEdit
	if whole {
		ed = newZoneEdit(nil)
	} else {
		ed = newZoneEdit(m.zone)
		for j, e := range m.entries {
			if !kept[j] {
				ed.remove(e.s)
			}
		}
	}
	index := st.ServiceSlices()
	for i, svc := range st.Services {
		e := next[i]
		if e.svc == nil || !slices.Equal(e.slices, index[i]) {
			if !whole {
				ed.remove(e.s)
			}
			m.triggers = cluster.ChangedTriggers(m.triggers, index[i], e.slices)
			e = memoEntry{svc: svc, slices: index[i]}
			e.s, e.p = m.b.build(svc, index[i])
			next[i] = e
			if !whole {
				ed.add(e.s)
			}
		}
		if whole {
			ed.add(e.s)
		}
		if e.p != nil {
			z.problems = append(z.problems, *e.p)
		}
	}
	z.services, z.namespaces, z.reverse = ed.services.s, ed.namespaces.s, ed.reverse.s
	m.last, m.entries, m.zone = st.Services, next, z
	return z
}

// Triggers returns the endpoints.kubernetes.io/last-change-trigger-time
// of each EndpointSlice that changed in the zones built since it was last
// called: when the changes now answered were made.
func (m *Memo) Triggers() []string {
	t := m.triggers
	m.triggers = nil
	return t
}

// zoneEdit makes the next zone's maps from the last's.
type zoneEdit struct {
	services   *shardEdit[string, *service]
	namespaces *shardEdit[string, int]
	reverse    *shardEdit[netip.Addr, []string]
}

func newZoneEdit(from *Zone) zoneEdit {
	if from == nil {
		return zoneEdit{editShards(newShardMap[string, *service]()), editShards(newShardMap[string, int]()),
			editShards(newShardMap[netip.Addr, []string]())}
	}
	return zoneEdit{editShards(from.services), editShards(from.namespaces), editShards(from.reverse)}
}

// add files a Service's names; of two objects of one name (only a
// hand-made snapshot can hold them) the first added wins.
func (e zoneEdit) add(s *service) {
	if s == nil {
		return
	}
	key := s.name + "." + s.namespace
	if _, dup := e.services.get(key); dup {
		return
	}
	e.services.set(key, s)
	n, _ := e.namespaces.get(s.namespace)
	e.namespaces.set(s.namespace, n+1)
	for _, p := range s.ptrs {
		names, _ := e.reverse.get(p.addr)
		at, _ := slices.BinarySearch(names, p.name)
		e.reverse.set(p.addr, slices.Insert(slices.Clip(names), at, p.name))
	}
}

// remove takes back what add filed for s.
func (e zoneEdit) remove(s *service) {
	if s == nil {
		return
	}
	key := s.name + "." + s.namespace
	if cur, _ := e.services.get(key); cur != s {
		return
	}
	e.services.del(key)
	if n, _ := e.namespaces.get(s.namespace); n > 1 {
		e.namespaces.set(s.namespace, n-1)
	} else {
		e.namespaces.del(s.namespace)
	}
	for _, p := range s.ptrs {
		names, _ := e.reverse.get(p.addr)
		at, found := slices.BinarySearch(names, p.name)
		switch {
		case !found:
		case len(names) == 1:
			e.reverse.del(p.addr)
		default:
			e.reverse.set(p.addr, slices.Delete(slices.Clone(names), at, at+1))
		}
	}
}

// SchemaVersion is the Kubernetes DNS specification this zone follows.
const SchemaVersion = "1.1.0"

// Problems are the Services the zone could not name, and why.
func (z *Zone) Problems() []string {
	out := make([]string, len(z.problems))
	for i, p := range z.problems {
		out[i] = p.String()
	}
	return out
}

// Names is the number of Services named.
func (z *Zone) Names() int { return z.services.len() }
