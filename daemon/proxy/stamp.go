package proxy

import (
	"cmp"
	"strings"

	"github.com/skein-net/skein/daemon/cluster"
)

// PortStamp is what each backend keeps of a port's rendering: the port
// it was rendered from, by ID and generation.
type PortStamp struct {
	ID  string // the port's
	Gen uint64 // the port's generation when it was rendered
}

// Gen changes whenever the port is computed anew: a backend may keep
// what it rendered for the port while Gen stays.
func (sp *ServicePort) Gen() uint64 { return sp.gen }

// PortSet is what a backend last rendered for one family: the ports of
// that family of the model it was given. The zero value has rendered
// nothing.
type PortSet struct {
	last []*ServicePort
}

// Diff returns the ports of family fam in m to render anew (new, or
// computed again since the last call: another object) and the IDs of
// those rendered at the last call that m no longer has, then remembers
// m's. Both models' ports being in the model's order (see Model.Ports),
// it is a walk of two lists of pointers (cluster.Walk): at 10,000
// Services one change costs neither a map lookup per port nor a walk of
// every rendered chunk.
func (p *PortSet) Diff(m *Model, fam int) (fresh []*ServicePort, gone []string) {
	cur := make([]*ServicePort, 0, len(p.last))
	for _, sp := range m.Ports {
		if sp.Family == fam {
			cur = append(cur, sp)
		}
	}
	cluster.Walk(p.last, cur, comparePorts, func(j, i int) {
		switch {
		case i < 0:
			gone = append(gone, p.last[j].ID())
		case j < 0 || p.last[j] != cur[i]:
			fresh = append(fresh, cur[i])
		}
	})
	p.last = cur
	return fresh, gone
}

// comparePorts is the order of Model.Ports: by Service (key order), then
// name, family and protocol.
func comparePorts(a, b *ServicePort) int {
	if c := cluster.CompareKeys(a.Namespace, a.Service, b.Namespace, b.Service); c != 0 {
		return c
	}
	return cmp.Or(strings.Compare(a.Name(), b.Name()), cmp.Compare(a.Family, b.Family), strings.Compare(a.Protocol, b.Protocol))
}
