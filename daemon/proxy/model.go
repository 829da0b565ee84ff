package proxy

import (
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// MasqueradeMark is the packet mark bit that asks either backend's
// postrouting chain to masquerade (the same bit kube-proxy uses for the
// same purpose).
const MasqueradeMark = 0x4000

// DefaultAffinitySeconds is how long ClientIP affinity lasts when the
// Service does not say (Kubernetes' default).
const DefaultAffinitySeconds = 10800

// Config is what the model needs to know about this node.
type Config struct {
	NodeName string
	// Families the node serves: those of its pod CIDRs (4, 6).
	Families []int
	// Reserved are the nodes' addresses and pod networks: a Service
	// address (clusterIP, externalIP, load-balancer IP) inside one would
	// capture traffic between nodes (skein's own VXLAN among it) or to
	// pods, so such an address is left out (CVE-2020-8554's class).
	Reserved []netip.Prefix
	// OverlayPort is the VXLAN UDP port: no UDP NodePort may take it.
	OverlayPort uint16
	// Zone is this node's topology.kubernetes.io/zone label: endpoints
	// hinted for it are preferred (traffic distribution).
	Zone string
	// Zones are every node's zone: a hint naming another is reported.
	Zones []string
	// ServiceCIDRs are Service ranges given by flag, beside the
	// snapshot's ServiceCIDR objects.
	ServiceCIDRs []netip.Prefix
}

// ServicePort is one port of one Service in one family: the unit every
// backend writes a chain for.
type ServicePort struct {
	Namespace, Service, PortName string
	Family                       int    // 4 or 6
	Protocol                     string // tcp, udp or sctp
	ClusterIP                    netip.Addr
	Port                         uint16
	NodePort                     uint16       // 0: none
	External                     []netip.Addr // externalIPs and load-balancer ingress IPs
	AffinitySeconds              int          // 0: no session affinity
	ExternalLocal                bool         // externalTrafficPolicy: Local
	InternalLocal                bool         // internalTrafficPolicy: Local
	Endpoints                    []Endpoint   // every usable endpoint, sorted

	name, id string // Name() and ID(), computed once
	// gen changes whenever the port is computed anew, so a backend may
	// keep what it rendered for the port while gen stays.
	gen uint64
}

// Endpoint is one backend of a ServicePort.
type Endpoint struct {
	Addr  netip.Addr
	Port  uint16
	Local bool // on this node
	// Ready endpoints take new connections; when none is ready, serving
	// and terminating ones do (graceful drain).
	Ready bool
	// The EndpointSlice's topology hints as they concern this node:
	// whether the endpoint has zone (node) hints, and whether they name
	// this node's zone (this node).
	ZoneHinted, NodeHinted bool
	ForZone, ForNode       bool
}

// AddrPort is where the endpoint listens.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

// Name reads "namespace/service:port" (the port name left out when empty).
func (sp *ServicePort) Name() string {
	if sp.name != "" {
		return sp.name
	}
	n := sp.Namespace + "/" + sp.Service
	if sp.PortName != "" {
		n += ":" + sp.PortName
	}
	return n
}

// ID is stable and unique per namespace, service, port, protocol and
// family: 16 characters that fit an iptables chain name.
func (sp *ServicePort) ID() string {
	if sp.id != "" {
		return sp.id
	}
	return HashID(sp.Namespace + "/" + sp.Service + "/" + sp.PortName + "/" + sp.Protocol + "/" + strconv.Itoa(sp.Family))
}

// gens numbers computed ports.
var gens atomic.Uint64

// EndpointID is the stable name of one endpoint of the port.
func (sp *ServicePort) EndpointID(e Endpoint) string {
	return HashID(sp.ID() + "/" + e.AddrPort().String())
}

func HashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:10])
}

// ClusterEndpoints are those that take traffic to the ClusterIP: the
// local ones only under internalTrafficPolicy: Local; else, when the
// slices' topology hints allow (see topology), the ready ones hinted for
// this node or its zone.
func (sp *ServicePort) ClusterEndpoints() []Endpoint {
	if sp.InternalLocal {
		return usable(sp.Endpoints, true)
	}
	return sp.ExternalEndpoints()
}

// ExternalEndpoints are those that take traffic to the NodePort and the
// external addresses under externalTrafficPolicy: Cluster: every node's,
// narrowed by topology hints, whatever the internal policy (which is the
// ClusterIP's alone).
func (sp *ServicePort) ExternalEndpoints() []Endpoint {
	if hinted := topology(sp.Endpoints); hinted != nil {
		var out []Endpoint
		for _, e := range sp.Endpoints {
			if e.Ready && hinted(e) {
				out = append(out, e)
			}
		}
		return out
	}
	return usable(sp.Endpoints, false)
}

// Problem is an object, or part of one, left out of the rules.
type Problem struct {
	Object string // "Service ns/name", "EndpointSlice ns/name"
	Reason string // short, a metric label
	Detail string
}

// Model is the desired state of every backend.
type Model struct {
	// Ports are sorted by Service ("namespace/name"), then by name,
	// family and protocol; shared, not to be modified.
	Ports    []*ServicePort
	Problems []Problem
	// HealthChecks are the health-check node ports this node serves,
	// sorted by Service; no two share a port.
	HealthChecks []HealthCheck
	// ServiceCIDRs are the ranges ClusterIPs come from, sorted: a new
	// connection to an address in one that no Service's rules take is
	// refused, rather than routed out of the node.
	ServiceCIDRs []netip.Prefix
	// Triggers are the endpoints.kubernetes.io/last-change-trigger-time
	// annotations of the EndpointSlices that changed since the last
	// build (all of them at the first): when the changes they carry were
	// made.
	Triggers []string
}

// Build computes the model from a snapshot. It never fails: what is
// wrong is left out and reported in Problems.
func Build(st *cluster.State, cfg Config) Model { return (&Memo{}).Build(st, cfg) }

// Memo is Build with a memory: a Service whose object and EndpointSlices
// are the same pointers as in the last build (the sources keep unchanged
// objects) is not computed again, and its ports keep their generation.
// Finding them is a walk of the last build's Services beside the
// snapshot's (both in key order), not a map: at 10,000 Services a change
// costs tens of microseconds before the Services it touches.
// The zero value is ready; it is not safe for concurrent use.
type Memo struct {
	cfg      string
	reserved []netip.Prefix
	// The last build's Services and their entries, aligned.
	last    []*corev1.Service
	entries []*memoEntry
}

type memoEntry struct {
	key      string                       // namespace/name, the order of Services in the model
	indexed  []*discoveryv1.EndpointSlice // the Service's slices
	slices   []*discoveryv1.EndpointSlice // those programmed (not headless)
	ports    []*ServicePort
	problems []Problem
	check    *HealthCheck
	stale    bool // computed again at the next build (the reserved addresses changed)
}

// Build implements the package's Build.
func (mm *Memo) Build(st *cluster.State, cfg Config) Model {
	// A change of the reserved addresses (a node joins or leaves) is
	// computed again only for the Services it may concern: every port
	// computed anew is rewritten in the kernel. Any other change of the
	// configuration computes every Service again.
	reservedCfg := cfg.Reserved
	cfg.Reserved = nil
	reuse := true
	if key := fmt.Sprint(cfg); key != mm.cfg {
		mm.cfg, reuse = key, false
	} else if !slices.Equal(reservedCfg, mm.reserved) {
		for i, svc := range mm.last {
			if touches(svc, mm.reserved) || touches(svc, reservedCfg) {
				mm.entries[i].stale = true
			}
		}
	}
	mm.reserved, cfg.Reserved = reservedCfg, reservedCfg
	var m Model
	m.ServiceCIDRs, m.Problems = serviceCIDRs(st, cfg)
	next := make([]*memoEntry, len(st.Services))
	cluster.PairServices(mm.last, st.Services, func(i, j int) {
		if mm.last[j] == st.Services[i] {
			next[i] = mm.entries[j]
		}
	})
	index := st.ServiceSlices()
	for i, svc := range st.Services {
		e := next[i]
		if e == nil || !reuse || e.stale || !slices.Equal(e.indexed, index[i]) {
			var before []*discoveryv1.EndpointSlice
			if e != nil {
				before = e.slices
			}
			e = newMemoEntry(svc, index[i], cfg)
			m.Triggers = cluster.ChangedTriggers(m.Triggers, e.slices, before)
			next[i] = e
		}
	}
	mm.last, mm.entries = st.Services, next
	entries := next
	if !st.Sealed() { // a test's snapshot, in any order
		entries = slices.Clone(entries)
		slices.SortStableFunc(entries, byKey)
	}
	m.Ports = make([]*ServicePort, 0, len(entries))
	var checkPorts map[uint16]string
	for _, e := range entries {
		m.Ports = append(m.Ports, e.ports...)
		m.Problems = append(m.Problems, e.problems...)
		if e.check == nil {
			continue
		}
		// Two Services on one port (the API server allocates them apart;
		// an object written around it): the first by name keeps it.
		if checkPorts == nil {
			checkPorts = map[uint16]string{}
		}
		if first, taken := checkPorts[e.check.Port]; taken {
			m.Problems = append(m.Problems, Problem{Object: "Service " + e.key, Reason: "health-check-port-taken",
				Detail: fmt.Sprintf("healthCheckNodePort %d is Service %s's too", e.check.Port, first)})
			continue
		}
		checkPorts[e.check.Port] = e.key
		m.HealthChecks = append(m.HealthChecks, *e.check)
	}
	return m
}

func byKey(a, b *memoEntry) int { return strings.Compare(a.key, b.key) }

// proxied leaves out the EndpointSlices labelled headless: no rules, as
// kube-proxy. Most Services have none: their list is returned as it is.
func proxied(eslices []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	headless := func(es *discoveryv1.EndpointSlice) bool {
		_, ok := es.Labels[corev1.IsHeadlessService]
		return ok
	}
	if !slices.ContainsFunc(eslices, headless) {
		return eslices
	}
	return slices.DeleteFunc(slices.Clone(eslices), headless)
}

// newMemoEntry is a Service's ports, computed anew.
func newMemoEntry(svc *corev1.Service, indexed []*discoveryv1.EndpointSlice, cfg Config) *memoEntry {
	eslices := proxied(indexed)
	e := &memoEntry{key: svc.Namespace + "/" + svc.Name, indexed: indexed, slices: eslices}
	ports, problems := servicePorts(svc, eslices, cfg)
	e.check = healthCheck(svc, ports, &problems)
	gen := gens.Add(1)
	for i := range ports {
		sp := &ports[i]
		sp.name, sp.id, sp.gen = sp.Name(), sp.ID(), gen
		e.ports = append(e.ports, sp)
	}
	slices.SortFunc(e.ports, func(a, b *ServicePort) int {
		return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.Family, b.Family), strings.Compare(a.Protocol, b.Protocol))
	})
	e.problems = problems
	return e
}

// LabelProxyName marks a Service another proxy programs: kube-proxy
// leaves such Services alone, and so does skein's.
const LabelProxyName = "service.kubernetes.io/service-proxy-name"

func servicePorts(svc *corev1.Service, eslices []*discoveryv1.EndpointSlice, cfg Config) ([]ServicePort, []Problem) {
	obj := "Service " + svc.Namespace + "/" + svc.Name
	var problems []Problem
	bad := func(reason, format string, args ...any) {
		problems = append(problems, Problem{Object: obj, Reason: reason, Detail: fmt.Sprintf(format, args...)})
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	if _, other := svc.Labels[LabelProxyName]; other {
		return nil, nil // another proxy's, as kube-proxy leaves it
	}
	if cluster.Headless(svc) {
		return nil, nil // DNS only
	}
	ips, invalid := cluster.ClusterIPs(svc)
	for _, why := range invalid {
		bad("invalid-cluster-ip", "%s", why)
	}
	if len(ips) == 0 && len(invalid) == 0 {
		bad("no-cluster-ip", "the Service has no clusterIP")
		return nil, problems
	}
	affinity := affinitySeconds(svc, bad)
	var out []ServicePort
	for _, ip := range ips {
		if p, ok := reserved(ip, cfg); ok {
			bad("reserved-address", "clusterIP %s is inside %s, a node's address or pod network", ip, p)
			continue
		}
		fam := family(ip)
		if !slices.Contains(cfg.Families, fam) {
			bad("family-not-on-node", "clusterIP %s is IPv%d and this node has no IPv%d pod network", ip, fam, fam)
			continue
		}
		external := externalAddrs(svc, fam, cfg, bad)
		named := map[string]bool{} // name and protocol: what a port's rules are named by
		for _, p := range svc.Spec.Ports {
			sp, why := servicePort(svc, p, ip, fam)
			if why == "" && named[sp.PortName+"/"+sp.Protocol] {
				why = "a second " + strings.ToUpper(sp.Protocol) + " port of that name"
			}
			if why != "" {
				bad("invalid-port", "port %q: %s", p.Name, why)
				continue
			}
			named[sp.PortName+"/"+sp.Protocol] = true
			sp.External, sp.AffinitySeconds = external, affinity
			sp.NodePort = nodePort(svc, p, sp.Protocol, cfg, bad)
			sp.Endpoints = endpoints(eslices, p, fam, cfg, &problems)
			out = append(out, sp)
		}
	}
	return out, problems
}

// affinitySeconds is how long a ClientIP affinity lasts; 0 for none.
func affinitySeconds(svc *corev1.Service, bad func(reason, format string, args ...any)) int {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return 0
	}
	affinity := DefaultAffinitySeconds
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		if t := *c.ClientIP.TimeoutSeconds; t >= 1 && t <= 86400 {
			affinity = int(t)
		} else {
			bad("invalid-affinity-timeout", "sessionAffinityConfig timeoutSeconds %d is outside 1-86400; using %d", t, affinity)
		}
	}
	return affinity
}

// nodePort is the port's NodePort, 0 for none: a Service of type
// ClusterIP keeps a NodePort it has, unused.
func nodePort(svc *corev1.Service, p corev1.ServicePort, proto string, cfg Config, bad func(reason, format string, args ...any)) uint16 {
	switch {
	case p.NodePort == 0:
	case p.NodePort < 1 || p.NodePort > 65535:
		bad("invalid-port", "port %q: nodePort %d is out of range", p.Name, p.NodePort)
	case proto == "udp" && cfg.OverlayPort != 0 && p.NodePort == int32(cfg.OverlayPort):
		// VXLAN from the other nodes arrives on this port of the node's
		// own address: a NodePort there would take the overlay.
		bad("overlay-port", "port %q: UDP nodePort %d is the overlay's VXLAN port", p.Name, p.NodePort)
	case svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer:
		return uint16(p.NodePort)
	}
	return 0
}

func servicePort(svc *corev1.Service, p corev1.ServicePort, ip netip.Addr, fam int) (ServicePort, string) {
	proto := strings.ToLower(string(p.Protocol))
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return ServicePort{}, fmt.Sprintf("protocol %q is not TCP, UDP or SCTP", p.Protocol)
	}
	if p.Port < 1 || p.Port > 65535 {
		return ServicePort{}, fmt.Sprintf("port %d is out of range", p.Port)
	}
	return ServicePort{
		Namespace: svc.Namespace, Service: svc.Name, PortName: p.Name, Family: fam, Protocol: proto,
		ClusterIP: ip, Port: uint16(p.Port),
		ExternalLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
			(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer),
		InternalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
	}, ""
}

func externalAddrs(svc *corev1.Service, fam int, cfg Config, bad func(reason, format string, args ...any)) []netip.Addr {
	var out []netip.Addr
	add := func(s, what string) {
		ip, err := netip.ParseAddr(s)
		if err != nil || !cluster.UsableAddr(ip) {
			if fam == 4 { // report once, not per family
				bad("invalid-external-ip", "%s %q is not a usable IP address", what, s)
			}
			return
		}
		if ip = ip.Unmap(); family(ip) != fam || slices.Contains(out, ip) {
			return
		}
		if p, ok := reserved(ip, cfg); ok {
			bad("reserved-address", "%s %s is inside %s, a node's address or pod network", what, ip, p)
			return
		}
		out = append(out, ip)
	}
	for _, s := range svc.Spec.ExternalIPs {
		add(s, "externalIP")
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			// ipMode Proxy: the load balancer must see the traffic (it
			// terminates TLS, or proxies it), so it is not short-cut on
			// the node; VIP, the default, is.
			if in.IP != "" && (in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeProxy) {
				add(in.IP, "load-balancer ingress IP")
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// endpoints gathers the endpoints of one service port in one family
// from every slice of the Service: the slice's port of the same name and
// protocol gives the target port (the EndpointSlice controller resolves
// a named targetPort per pod).
func endpoints(eslices []*discoveryv1.EndpointSlice, p corev1.ServicePort, fam int, cfg Config, problems *[]Problem) []Endpoint {
	want := discoveryv1.AddressTypeIPv4
	if fam == 6 {
		want = discoveryv1.AddressTypeIPv6
	}
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	byAddr := map[netip.AddrPort]Endpoint{}
	for _, es := range eslices {
		if es.AddressType != want {
			continue
		}
		obj := "EndpointSlice " + es.Namespace + "/" + es.Name
		var port int32
		found := false
		for _, sp := range es.Ports {
			spProto := corev1.ProtocolTCP
			if sp.Protocol != nil {
				spProto = *sp.Protocol
			}
			if ptrOr(sp.Name, "") == p.Name && spProto == proto && sp.Port != nil {
				port, found = *sp.Port, true
				break
			}
		}
		if !found {
			continue
		}
		if port < 1 || port > 65535 {
			*problems = append(*problems, Problem{obj, "invalid-port", fmt.Sprintf("port %q: %d is out of range", p.Name, port)})
			continue
		}
		for _, e := range es.Endpoints {
			ready := ptrOr(e.Conditions.Ready, true)
			serving := ptrOr(e.Conditions.Serving, ready)
			terminating := ptrOr(e.Conditions.Terminating, false)
			if !ready && (!serving || !terminating) {
				continue
			}
			local := ptrOr(e.NodeName, "") == cfg.NodeName
			hints := hintsOf(e.Hints, cfg)
			if hints.unknownZone != "" && fam == slices.Min(cfg.Families) { // reported once, not per family
				*problems = append(*problems, Problem{obj, "unknown-zone-hint",
					fmt.Sprintf("an endpoint is hinted for zone %q, which no node is in", hints.unknownZone)})
			}
			for _, s := range e.Addresses {
				ip, err := netip.ParseAddr(s)
				if err != nil || family(ip.Unmap()) != fam || !cluster.UsableAddr(ip) {
					*problems = append(*problems, Problem{obj, "invalid-endpoint-address", fmt.Sprintf("%q is not a usable IPv%d address", s, fam)})
					continue
				}
				ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
				if old, ok := byAddr[ap]; ok && old.Ready {
					continue // listed twice (slices overlap while they move): ready wins
				}
				byAddr[ap] = Endpoint{Addr: ap.Addr(), Port: ap.Port(), Local: local, Ready: ready,
					ZoneHinted: hints.zoned, NodeHinted: hints.noded, ForZone: hints.forZone, ForNode: hints.forNode}
			}
		}
	}
	out := make([]Endpoint, 0, len(byAddr))
	for _, e := range byAddr {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return a.AddrPort().Compare(b.AddrPort()) })
	return out
}

func family(ip netip.Addr) int {
	if ip.Is4() {
		return 4
	}
	return 6
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
