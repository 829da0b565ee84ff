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

// PortSet is what a backend last rendered for one family: the Ports of
// the model it was given. The zero value has rendered nothing.
type PortSet struct {
	last []*ServicePort
}

// Diff returns the ports of family fam in m to render anew (new, or
// computed again since the last call: another object) and the IDs of
// those rendered at the last call that m no longer has, then remembers
// m's. Both models' ports being in the model's order (see Model.Ports),
// it is a walk of two lists of pointers that compares names only where
// they differ: at 10,000 Services one change costs neither a map lookup
// per port nor a walk of every rendered chunk.
func (p *PortSet) Diff(m *Model, fam int) (fresh []*ServicePort, gone []string) {
	cur, last := m.Ports, p.last
	i, j := 0, 0
	for {
		for i < len(cur) && cur[i].Family != fam {
			i++
		}
		for j < len(last) && last[j].Family != fam {
			j++
		}
		var c int
		switch {
		case i == len(cur) && j == len(last):
			p.last = m.Ports
			return fresh, gone
		case i == len(cur):
			c = 1
		case j == len(last):
			c = -1
		case cur[i] == last[j]:
			i, j = i+1, j+1
			continue
		default:
			c = comparePorts(cur[i], last[j])
		}
		switch {
		case c < 0:
			fresh, i = append(fresh, cur[i]), i+1
		case c > 0:
			gone, j = append(gone, last[j].ID()), j+1
		default: // the same port computed again
			fresh, i, j = append(fresh, cur[i]), i+1, j+1
		}
	}
}

// comparePorts is the order of Model.Ports: by Service (key order), then
// name, family and protocol.
func comparePorts(a, b *ServicePort) int {
	if c := cluster.CompareKeys(a.Namespace, a.Service, b.Namespace, b.Service); c != 0 {
		return c
	}
	return cmp.Or(strings.Compare(a.Name(), b.Name()), cmp.Compare(a.Family, b.Family), strings.Compare(a.Protocol, b.Protocol))
}
