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
// never modified: every query reads it at once.
type Zone struct {
	origin string // "cluster.local."
	ttl    uint32
	// services by "name.namespace".
	services   map[string]*service
	namespaces map[string]bool
	// reverse maps an address to the names pointing back to it.
	reverse  map[netip.Addr][]string
	soa      *miekg.SOA
	ns       *miekg.NS
	version  *miekg.TXT
	problems []problem
}

// Memo builds zones, each Service's records once per change of the
// Service or its EndpointSlices (the snapshot keeps an unchanged object
// the same pointer).
type Memo struct {
	b       builder
	entries map[*corev1.Service]memoEntry
}

// memoEntry is a Service's records, or why it has none.
type memoEntry struct {
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
	z := &Zone{
		origin: m.b.origin, ttl: m.b.ttl,
		services:   make(map[string]*service, len(st.Services)),
		namespaces: map[string]bool{},
		reverse:    map[netip.Addr][]string{},
	}
	z.soa = &miekg.SOA{Hdr: m.b.hdr(z.origin, miekg.TypeSOA), Ns: "ns.dns." + z.origin, Mbox: "hostmaster." + z.origin,
		Serial: serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: m.b.ttl}
	z.ns = &miekg.NS{Hdr: m.b.hdr(z.origin, miekg.TypeNS), Ns: "ns.dns." + z.origin}
	z.version = &miekg.TXT{Hdr: m.b.hdr("dns-version."+z.origin, miekg.TypeTXT), Txt: []string{SchemaVersion}}
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range st.EndpointSlices {
		if svc := es.Labels[discoveryv1.LabelServiceName]; svc != "" {
			k := es.Namespace + "/" + svc
			bySvc[k] = append(bySvc[k], es)
		}
	}
	next := make(map[*corev1.Service]memoEntry, len(st.Services))
	for _, svc := range st.Services {
		eslices := bySvc[svc.Namespace+"/"+svc.Name]
		if len(eslices) > 1 { // an informer lists in no particular order
			slices.SortFunc(eslices, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
		}
		e, ok := m.entries[svc]
		if !ok || !slices.Equal(e.slices, eslices) {
			e = memoEntry{slices: eslices}
			e.s, e.p = m.b.build(svc, eslices)
		}
		next[svc] = e
		if e.p != nil {
			z.problems = append(z.problems, *e.p)
		}
		if e.s != nil {
			z.add(e.s)
		}
	}
	m.entries = next
	return z
}

// add files a Service's names; of two objects of one name (only a file
// source can hold them) the first listed wins.
func (z *Zone) add(s *service) {
	key := s.name + "." + s.namespace
	if _, dup := z.services[key]; dup {
		return
	}
	z.services[key] = s
	z.namespaces[s.namespace] = true
	for _, p := range s.ptrs {
		z.reverse[p.addr] = append(z.reverse[p.addr], p.name)
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
func (z *Zone) Names() int { return len(z.services) }
