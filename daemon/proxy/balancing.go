package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// What load balancers and topology-aware routing ask of the proxy: the
// health checks of LoadBalancer Services and the node's eligibility,
// the EndpointSlices' topology hints, and the Service ranges, where a
// connection no Service takes is refused.

// Health hears how each sync ended: what a load balancer probing the
// node should be told (package healthcheck serves it).
type Health interface {
	// Synced reports a sync that programmed m on a node of these IP
	// families, eligible for load-balancer traffic or not (being
	// deleted); it returns the health checks it could not serve.
	Synced(m *Model, node NodeStatus) []Problem
}

// NodeStatus is what the health checks need to know of this node.
type NodeStatus struct {
	Families []int
	// Eligible is false while the node is being deleted (its
	// deletionTimestamp is set, or the cluster autoscaler has tainted it
	// ToBeDeletedByClusterAutoscaler): load balancers should drain it.
	Eligible bool
}

// ToBeDeletedTaint is the cluster autoscaler's taint on a node it is
// about to remove.
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// eligible tells whether load balancers may send to the node: not while
// it is being deleted.
func eligible(n *corev1.Node) bool {
	if n.DeletionTimestamp != nil {
		return false
	}
	return !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == ToBeDeletedTaint })
}

// zones are the nodes' zones, sorted.
func zones(st *cluster.State) []string {
	var out []string
	for i := range st.Nodes {
		if z := st.Nodes[i].Labels[corev1.LabelTopologyZone]; z != "" && !slices.Contains(out, z) {
			out = append(out, z)
		}
	}
	slices.Sort(out)
	return out
}

// HealthCheck is what a load balancer probes on this node for a
// LoadBalancer Service with externalTrafficPolicy: Local: its
// healthCheckNodePort, answering whether this node has a ready endpoint
// of the Service (as kube-proxy's service health server).
type HealthCheck struct {
	Namespace, Service string
	Port               uint16
	LocalReady         int // ready endpoints on this node, by address
}

// ServiceCIDRsOf are the model's Service ranges of family fam (4, 6).
func (m *Model) ServiceCIDRsOf(fam int) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range m.ServiceCIDRs {
		if family(p.Addr()) == fam {
			out = append(out, p)
		}
	}
	return out
}

// serviceCIDRs are the Service ranges of the flag and of the snapshot's
// ServiceCIDR objects; one that overlaps a pod network or holds a node's
// address is left out and reported: refusing traffic to it would cut
// pods or nodes off.
func serviceCIDRs(st *cluster.State, cfg Config) ([]netip.Prefix, []Problem) {
	var out []netip.Prefix
	var problems []Problem
	add := func(obj string, p netip.Prefix) {
		p = p.Masked()
		for _, r := range cfg.Reserved {
			if p.Overlaps(r) {
				problems = append(problems, Problem{obj, "service-cidr-overlaps",
					fmt.Sprintf("%s overlaps %s, a node's address or pod network", p, r)})
				return
			}
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, p := range cfg.ServiceCIDRs {
		add("--service-cidr", p)
	}
	for _, sc := range st.ServiceCIDRs {
		obj := "ServiceCIDR " + sc.Name
		for _, s := range sc.Spec.CIDRs {
			p, err := netip.ParsePrefix(s)
			if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
				problems = append(problems, Problem{obj, "invalid-service-cidr", fmt.Sprintf("%q is not a CIDR", s)})
				continue
			}
			add(obj, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	// A range inside another goes: an nftables interval set refuses
	// overlapping elements. Sorted so, a range's container comes first.
	kept := out[:0]
	for _, p := range out {
		if !slices.ContainsFunc(kept, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) }) {
			kept = append(kept, p)
		}
	}
	return kept, problems
}

// healthCheck is the Service's health-check node port on this node, nil
// for none: a LoadBalancer Service with externalTrafficPolicy: Local has
// one (the API server allocates it).
func healthCheck(svc *corev1.Service, ports []ServicePort, problems *[]Problem) *HealthCheck {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		return nil
	}
	obj := "Service " + svc.Namespace + "/" + svc.Name
	switch p := svc.Spec.HealthCheckNodePort; {
	case p == 0:
		*problems = append(*problems, Problem{obj, "invalid-health-check-port", "externalTrafficPolicy is Local and healthCheckNodePort is not set"})
		return nil
	case p < 1 || p > 65535:
		*problems = append(*problems, Problem{obj, "invalid-health-check-port", fmt.Sprintf("healthCheckNodePort %d is out of range", p)})
		return nil
	}
	// By address: an endpoint serving two ports (or two families' ports
	// of one pod) is one endpoint to a load balancer.
	local := map[netip.Addr]bool{}
	for i := range ports {
		for _, e := range ports[i].Endpoints {
			if e.Local && e.Ready {
				local[e.Addr] = true
			}
		}
	}
	return &HealthCheck{Namespace: svc.Namespace, Service: svc.Name, Port: uint16(svc.Spec.HealthCheckNodePort), LocalReady: len(local)}
}

// topology picks, as kube-proxy does, which hints narrow the endpoints
// (nil: none do). Node hints (trafficDistribution: PreferSameNode) when
// every ready endpoint has them and one names this node; else zone hints
// (PreferClose, PreferSameZone) when every ready endpoint has them and
// one names this node's zone. A Service half-hinted (the EndpointSlice
// controller is moving it) or hinted only elsewhere uses every endpoint:
// hints are a preference, never a reason to refuse traffic.
func topology(eps []Endpoint) func(Endpoint) bool {
	ready, allNode, forNode, allZone, forZone := false, true, false, true, false
	for _, e := range eps {
		if !e.Ready {
			continue
		}
		ready = true
		allNode, forNode = allNode && e.NodeHinted, forNode || e.ForNode
		allZone, forZone = allZone && e.ZoneHinted, forZone || e.ForZone
	}
	switch {
	case !ready:
		return nil
	case allNode && forNode:
		return func(e Endpoint) bool { return e.ForNode }
	case allZone && forZone:
		return func(e Endpoint) bool { return e.ForZone }
	}
	return nil
}

// LocalEndpoints are the usable endpoints on this node.
func (sp *ServicePort) LocalEndpoints() []Endpoint { return usable(sp.Endpoints, true) }

// usable picks the ready endpoints or, when none is ready, the serving
// and terminating ones.
func usable(eps []Endpoint, localOnly bool) []Endpoint {
	var ready, draining []Endpoint
	for _, e := range eps {
		if localOnly && !e.Local {
			continue
		}
		if e.Ready {
			ready = append(ready, e)
		} else {
			draining = append(draining, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return draining
}

// hints is an endpoint's topology hints as they concern this node.
type hints struct {
	zoned, noded, forZone, forNode bool
	unknownZone                    string // a hinted zone no node is in
}

func hintsOf(h *discoveryv1.EndpointHints, cfg Config) hints {
	var out hints
	if h == nil {
		return out
	}
	for _, z := range h.ForZones {
		out.zoned = true
		out.forZone = out.forZone || (z.Name != "" && z.Name == cfg.Zone)
		if out.unknownZone == "" && !slices.Contains(cfg.Zones, z.Name) {
			out.unknownZone = z.Name
		}
	}
	for _, n := range h.ForNodes {
		out.noded = true
		out.forNode = out.forNode || n.Name == cfg.NodeName
	}
	return out
}
