package dns

import (
	"fmt"
	"net/netip"
	"strings"

	miekg "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// service is one Service's names, built once per change of the Service
// or its EndpointSlices, as resource records ready to answer with (a
// record is shared by every answer that holds it and never modified).
type service struct {
	name, namespace string
	// addrs are the Service's own records: its ClusterIPs (A, AAAA), or
	// for a headless Service every ready endpoint's.
	addrs []miekg.RR
	// cname is an ExternalName Service's record.
	cname *miekg.CNAME
	// hosts are a headless Service's endpoints by hostname (lower case).
	hosts map[string][]miekg.RR
	// srv holds the SRV records of each named port, by "_port._proto"
	// (lower case), and the addresses of their targets.
	srv      map[string][]miekg.RR
	srvExtra map[string][]miekg.RR
	// endpoints are the ready endpoints' addresses, under the
	// <svc>.<ns>.endpoints name.
	endpoints []miekg.RR
	// ptrs are the reverse names this Service answers: the address and
	// the name it points back to.
	ptrs []ptr
	// slices are the EndpointSlices it was built from.
	slices []*discoveryv1.EndpointSlice
}

type ptr struct {
	addr netip.Addr
	name string
}

// Limits on what one Service may hold: past them the Service is skipped
// (and counted), the rest of the zone answers.
const (
	maxPorts     = 1024
	maxEndpoints = 10000
)

// problem is why a Service, or part of it, has no names.
type problem struct {
	object, reason, detail string
}

func (p problem) String() string { return p.object + ": " + p.reason + ": " + p.detail }

// builder makes a Service's records: the zone's origin and TTL.
type builder struct {
	origin string // "cluster.local."
	ttl    uint32
}

func (b builder) hdr(name string, typ uint16) miekg.RR_Header {
	return miekg.RR_Header{Name: name, Rrtype: typ, Class: miekg.ClassINET, Ttl: b.ttl}
}

// addrRR is an A or AAAA record.
func (b builder) addrRR(name string, a netip.Addr) miekg.RR {
	if a.Is4() {
		return &miekg.A{Hdr: b.hdr(name, miekg.TypeA), A: a.AsSlice()}
	}
	return &miekg.AAAA{Hdr: b.hdr(name, miekg.TypeAAAA), AAAA: a.AsSlice()}
}

// build makes svc's records from its EndpointSlices; nil and a problem
// when the Service cannot be named.
func (b builder) build(svc *corev1.Service, eslices []*discoveryv1.EndpointSlice) (*service, *problem) {
	obj := "Service " + svc.Namespace + "/" + svc.Name
	bad := func(reason, format string, args ...any) (*service, *problem) {
		return nil, &problem{obj, reason, fmt.Sprintf(format, args...)}
	}
	if !isLabel(svc.Name) || !isLabel(svc.Namespace) {
		return bad("invalid-name", "%q in namespace %q is not a DNS label", svc.Name, svc.Namespace)
	}
	if len(svc.Spec.Ports) > maxPorts {
		return bad("too-many-ports", "%d ports, more than %d", len(svc.Spec.Ports), maxPorts)
	}
	s := &service{name: strings.ToLower(svc.Name), namespace: strings.ToLower(svc.Namespace), slices: eslices}
	fqdn := s.name + "." + s.namespace + ".svc." + b.origin
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		target := strings.TrimSuffix(svc.Spec.ExternalName, ".")
		if target == "" || !isDomain(target) {
			return bad("invalid-external-name", "externalName %q is not a DNS name", svc.Spec.ExternalName)
		}
		s.cname = &miekg.CNAME{Hdr: b.hdr(fqdn, miekg.TypeCNAME), Target: miekg.Fqdn(strings.ToLower(target))}
		return s, nil
	}
	eps, err := readyEndpoints(svc, eslices)
	if err != nil {
		return bad("too-many-endpoints", "%v", err)
	}
	for _, e := range eps {
		s.endpoints = append(s.endpoints, b.addrRR(s.name+"."+s.namespace+".endpoints."+b.origin, e.addr))
	}
	if cluster.Headless(svc) {
		b.headless(s, fqdn, svc, eps)
		return s, nil
	}
	ips, _ := cluster.ClusterIPs(svc) // the Service proxy reports the others
	for _, ip := range ips {
		s.addrs = append(s.addrs, b.addrRR(fqdn, ip))
		s.ptrs = append(s.ptrs, ptr{ip, fqdn})
	}
	if len(s.addrs) == 0 {
		return bad("no-cluster-ip", "no usable clusterIP")
	}
	for _, p := range svc.Spec.Ports {
		key, ok := srvKey(p.Name, p.Protocol)
		if !ok || p.Port < 1 || p.Port > 65535 {
			continue // unnamed ports have no SRV record
		}
		name := key + "." + fqdn
		s.addSRV(key, &miekg.SRV{Hdr: b.hdr(name, miekg.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: fqdn}, s.addrs)
	}
	return s, nil
}

// headless makes a headless Service's records: one address per ready
// endpoint under the Service's name, each endpoint under its hostname
// (or its address with dashes, "10-1-0-5"), and SRV records per named
// port and endpoint name. A dual-stack pod with a hostname is in one
// slice per family: its name holds both addresses and is one SRV target,
// not two identical records.
func (b builder) headless(s *service, fqdn string, svc *corev1.Service, eps []endpoint) {
	type target struct {
		key, name string
		port      uint16
	}
	var targets []target
	extra := map[target][]miekg.RR{}
	perKey := map[string]int{}
	s.hosts = map[string][]miekg.RR{}
	for _, e := range eps {
		host := e.hostname
		if host == "" {
			host = dashed(e.addr)
		}
		name := host + "." + fqdn
		rr := b.addrRR(name, e.addr)
		s.addrs = append(s.addrs, b.addrRR(fqdn, e.addr))
		s.hosts[host] = append(s.hosts[host], rr)
		s.ptrs = append(s.ptrs, ptr{e.addr, name})
		for _, p := range e.ports {
			key, ok := srvKey(p.name, p.proto)
			if !ok {
				continue
			}
			t := target{key, name, p.port}
			if _, seen := extra[t]; !seen {
				targets = append(targets, t)
				perKey[key]++
			}
			extra[t] = append(extra[t], rr)
		}
	}
	for _, t := range targets {
		weight := uint16(max(1, 100/perKey[t.key]))
		s.addSRV(t.key, &miekg.SRV{Hdr: b.hdr(t.key+"."+fqdn, miekg.TypeSRV), Weight: weight, Port: t.port, Target: t.name}, extra[t])
	}
}

func (s *service) addSRV(key string, rr *miekg.SRV, extra []miekg.RR) {
	if s.srv == nil {
		s.srv, s.srvExtra = map[string][]miekg.RR{}, map[string][]miekg.RR{}
	}
	s.srv[key] = append(s.srv[key], rr)
	s.srvExtra[key] = append(s.srvExtra[key], extra...)
}

// srvKey is "_port._proto" of a named port; false for an unnamed one or
// one whose name is not a DNS label.
func srvKey(name string, proto corev1.Protocol) (string, bool) {
	if name == "" || !isLabel(name) {
		return "", false
	}
	p := strings.ToLower(string(proto))
	if p == "" {
		p = "tcp"
	}
	return "_" + strings.ToLower(name) + "._" + p, true
}

// endpoint is a ready endpoint: its address, hostname and ports.
type endpoint struct {
	addr     netip.Addr
	hostname string
	ports    []port
}

type port struct {
	name  string
	proto corev1.Protocol
	port  uint16
}

// readyEndpoints are the Service's ready endpoints, once per address:
// ready unless the condition says otherwise (nil counts as ready), every
// one with publishNotReadyAddresses.
func readyEndpoints(svc *corev1.Service, eslices []*discoveryv1.EndpointSlice) ([]endpoint, error) {
	var out []endpoint
	seen := map[netip.Addr]int{}
	for _, es := range eslices {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var ports []port
		for _, p := range es.Ports {
			if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
				continue
			}
			pp := port{proto: corev1.ProtocolTCP, port: uint16(*p.Port)}
			if p.Name != nil {
				pp.name = *p.Name
			}
			if p.Protocol != nil {
				pp.proto = *p.Protocol
			}
			ports = append(ports, pp)
		}
		for _, e := range es.Endpoints {
			if !svc.Spec.PublishNotReadyAddresses && e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			host := ""
			if e.Hostname != nil && isLabel(*e.Hostname) {
				host = strings.ToLower(*e.Hostname)
			}
			for _, s := range e.Addresses {
				a, err := netip.ParseAddr(s)
				if err != nil || !cluster.UsableAddr(a) || a.Is4() != (es.AddressType == discoveryv1.AddressTypeIPv4) {
					continue
				}
				if i, ok := seen[a]; ok {
					out[i].ports = append(out[i].ports, ports...)
					continue
				}
				if len(out) == maxEndpoints {
					return nil, fmt.Errorf("more than %d endpoints", maxEndpoints)
				}
				seen[a] = len(out)
				out = append(out, endpoint{addr: a, hostname: host, ports: ports})
			}
		}
	}
	return out, nil
}

// dashed is an address with its separators as dashes: "10-1-0-5",
// "fd00-10-244--5" (a pod record's and a nameless endpoint's label).
func dashed(a netip.Addr) string {
	return strings.NewReplacer(".", "-", ":", "-").Replace(a.String())
}

// isLabel tells whether s is a DNS label of letters, digits and dashes
// (RFC 1123), as Kubernetes names are.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// isDomain tells whether s is a name of such labels (underscores
// allowed, as in service names), at most 253 characters.
func isDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isLabel(strings.ReplaceAll(l, "_", "a")) {
			return false
		}
	}
	return true
}
