package overlay

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// DeviceName is the VXLAN device skein owns.
const DeviceName = "skein.vxlan"

// RouteProtocol marks the routes skein installs, so that it never touches
// a route it did not make.
const RouteProtocol = 171

// Neigh is a permanent neighbour entry on the device.
type Neigh struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// FDB is a forwarding entry: frames for MAC go to the underlay address Dst.
type FDB struct {
	MAC net.HardwareAddr
	Dst netip.Addr
}

// Route sends a peer's pod CIDR via its VTEP address on the device.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Entries is the per-peer state on the device, desired or found.
type Entries struct {
	Neighs []Neigh
	FDB    []FDB
	Routes []Route
}

// Want returns the entries the peers need.
func Want(peers []Peer) Entries {
	var e Entries
	for _, p := range peers {
		e.FDB = append(e.FDB, FDB{MAC: p.MAC, Dst: p.Underlay})
		for _, c := range p.PodCIDRs {
			e.Neighs = append(e.Neighs, Neigh{IP: c.Addr(), MAC: p.MAC})
			e.Routes = append(e.Routes, Route{Dst: c, Via: c.Addr()})
		}
	}
	return e
}

// OpKind is what an operation does.
type OpKind int

// Operation kinds, in the order they run.
const (
	NeighReplace OpKind = iota
	FDBReplace
	RouteReplace
	RouteDel
	FDBDel
	NeighDel
)

// Op is one kernel change.
type Op struct {
	Kind  OpKind
	Neigh Neigh
	FDB   FDB
	Route Route
}

// String renders the operation as the iproute2 command that does it.
func (o Op) String() string {
	switch o.Kind {
	case NeighReplace:
		return fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", o.Neigh.IP, o.Neigh.MAC, DeviceName)
	case NeighDel:
		return fmt.Sprintf("ip neigh del %s dev %s", o.Neigh.IP, DeviceName)
	case FDBReplace:
		return fmt.Sprintf("bridge fdb replace %s dev %s dst %s self permanent", o.FDB.MAC, DeviceName, o.FDB.Dst)
	case FDBDel:
		return fmt.Sprintf("bridge fdb del %s dev %s dst %s self", o.FDB.MAC, DeviceName, o.FDB.Dst)
	case RouteReplace:
		return fmt.Sprintf("ip route replace %s via %s dev %s onlink proto %d", o.Route.Dst, o.Route.Via, DeviceName, RouteProtocol)
	case RouteDel:
		return fmt.Sprintf("ip route del %s dev %s proto %d", o.Route.Dst, DeviceName, RouteProtocol)
	}
	return "unknown op"
}

// Diff returns the operations that turn have into want: every add and
// change first (neighbours, FDB, routes), then every removal (routes,
// FDB, neighbours), each group sorted so the plan reads the same for the
// same states.
func Diff(want, have Entries) []Op {
	var ops []Op
	haveN := make(map[netip.Addr]net.HardwareAddr, len(have.Neighs))
	for _, n := range have.Neighs {
		haveN[n.IP] = n.MAC
	}
	wantN := make(map[netip.Addr]bool, len(want.Neighs))
	for _, n := range want.Neighs {
		wantN[n.IP] = true
		if mac, ok := haveN[n.IP]; !ok || !bytes.Equal(mac, n.MAC) {
			ops = append(ops, Op{Kind: NeighReplace, Neigh: n})
		}
	}
	haveF := make(map[fdbID]bool, len(have.FDB))
	for _, f := range have.FDB {
		haveF[fdbKey(f)] = true
	}
	wantF := make(map[fdbID]bool, len(want.FDB))
	for _, f := range want.FDB {
		wantF[fdbKey(f)] = true
		if !haveF[fdbKey(f)] {
			ops = append(ops, Op{Kind: FDBReplace, FDB: f})
		}
	}
	haveR := make(map[netip.Prefix]netip.Addr, len(have.Routes))
	for _, r := range have.Routes {
		haveR[r.Dst] = r.Via
	}
	wantR := make(map[netip.Prefix]bool, len(want.Routes))
	for _, r := range want.Routes {
		wantR[r.Dst] = true
		if via, ok := haveR[r.Dst]; !ok || via != r.Via {
			ops = append(ops, Op{Kind: RouteReplace, Route: r})
		}
	}
	for _, r := range have.Routes {
		if !wantR[r.Dst] {
			ops = append(ops, Op{Kind: RouteDel, Route: r})
		}
	}
	wantMAC := make(map[string]bool, len(want.FDB))
	for _, f := range want.FDB {
		wantMAC[string(f.MAC)] = true
	}
	for _, f := range have.FDB {
		// An entry whose MAC is still wanted was replaced in place.
		if !wantF[fdbKey(f)] && !wantMAC[string(f.MAC)] {
			ops = append(ops, Op{Kind: FDBDel, FDB: f})
		}
	}
	for _, n := range have.Neighs {
		if !wantN[n.IP] {
			ops = append(ops, Op{Kind: NeighDel, Neigh: n})
		}
	}
	// Each operation printed once, not at every comparison: a cold start
	// sorts three operations per peer.
	type keyed struct {
		op  Op
		key string
	}
	ks := make([]keyed, len(ops))
	for i, o := range ops {
		ks[i] = keyed{o, o.String()}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if a.op.Kind != b.op.Kind {
			return cmp.Compare(a.op.Kind, b.op.Kind)
		}
		return strings.Compare(a.key, b.key)
	})
	for i := range ks {
		ops[i] = ks[i].op
	}
	return ops
}

// fdbID is an FDB entry as a map key: its MAC's bytes and its
// destination (no text formatted per entry at every sync).
type fdbID struct {
	mac string
	dst netip.Addr
}

func fdbKey(f FDB) fdbID { return fdbID{string(f.MAC), f.Dst} }

// Render prints a plan one command a line.
func Render(ops []Op) string {
	var b strings.Builder
	for _, o := range ops {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}
