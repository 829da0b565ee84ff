package cluster

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// State is one complete snapshot of the cluster. Its objects are shared
// between readers and never modified. A Service or EndpointSlice that did
// not change since the previous snapshot is the same pointer in both (the
// informer's cache and the file source's item cache keep them), so a
// controller may memoize per object.
type State struct {
	Nodes          []corev1.Node
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// ServiceCIDRs are the ranges ClusterIPs are allocated from (with
	// Services, where the API server serves them).
	ServiceCIDRs []*networkingv1.ServiceCIDR
	facts        *Facts
}

// Seal computes the snapshot's Facts once. A source calls it before it
// sends the snapshot; from then on the State is only read, by every
// controller at once.
func (s *State) Seal() *State {
	s.facts = newFacts(s)
	return s
}

// Facts returns what the snapshot's Nodes say to every controller:
// computed by Seal, or now for a State that was not sealed (a test's).
func (s *State) Facts() *Facts {
	if s.facts != nil {
		return s.facts
	}
	return newFacts(s)
}

// Node returns the node of that name.
func (s *State) Node(name string) (*corev1.Node, bool) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], true
		}
	}
	return nil, false
}

// Source produces snapshots. Run sends every new complete snapshot on
// updates until ctx ends; the first one only once the source has read the
// whole cluster.
type Source interface {
	Run(ctx context.Context, updates chan<- *State) error
}
