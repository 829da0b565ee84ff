package proxy

// PortStamp is what each backend keeps of a port's rendering to tell
// whether it is still the port's current one.
type PortStamp struct {
	ID   string // the port's
	Gen  uint64 // the port's generation when it was rendered
	Seen uint64 // the last call that found its port unchanged
}

// Stamp lets a chunk that embeds a PortStamp be passed to ChangedPorts.
func (p *PortStamp) Stamp() *PortStamp { return p }

// Gen changes whenever the port is computed anew: a backend may keep
// what it rendered for the port while Gen stays.
func (sp *ServicePort) Gen() uint64 { return sp.gen }

// ChangedPorts returns the model's ports of family fam that need
// rendering anew (no chunk, or one of another generation), and their IDs;
// the chunks still current are stamped seen in call. After it, a chunk
// neither seen in call nor renewed is one whose port went.
func ChangedPorts[C interface{ Stamp() *PortStamp }](m *Model, fam int, chunks map[string]C, call uint64) (fresh []*ServicePort, renewed map[string]bool) {
	for _, sp := range m.Ports {
		if sp.Family != fam {
			continue
		}
		if c, ok := chunks[sp.ID()]; ok && c.Stamp().Gen == sp.gen && sp.gen != 0 {
			c.Stamp().Seen = call
		} else {
			fresh = append(fresh, sp)
		}
	}
	renewed = make(map[string]bool, len(fresh))
	for _, sp := range fresh {
		renewed[sp.ID()] = true
	}
	return fresh, renewed
}
