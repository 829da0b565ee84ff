package ipam

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/skein-net/skein/conf"
)

// ErrExhausted means every address of a family's ranges is taken.
var ErrExhausted = errors.New("no free address")

// UnavailableError is a requested address that cannot be handed out.
type UnavailableError struct {
	Addr   netip.Addr
	Reason string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("requested address %s %s", e.Addr, e.Reason)
}

// family is the ranges of one address family, in configuration order.
type family struct {
	ranges  []conf.Range
	exclude []netip.Prefix
}

func familyOf(n *conf.Network, fam int) family {
	f := family{exclude: n.Exclude}
	for _, r := range n.Ranges {
		if conf.Family(r.Subnet.Addr()) == fam {
			f.ranges = append(f.ranges, r)
		}
	}
	return f
}

// next returns the first address after last that is neither taken nor
// reserved nor excluded, walking the ranges in order and wrapping once
// (next-fit): a just-released address is handed out again only after
// every other one has been, so a peer holding a stale ARP or conntrack
// entry for it has time to forget.
func (f family) next(taken func(netip.Addr) bool, last netip.Addr) (netip.Addr, error) {
	n := len(f.ranges)
	if n == 0 {
		return netip.Addr{}, ErrExhausted
	}
	first, from, wrap := 0, f.ranges[0].Start, false
	for i, r := range f.ranges {
		if last.IsValid() && r.Contains(last) {
			first, from, wrap = i, last.Next(), true
			break
		}
	}
	passes := n
	if wrap {
		passes = n + 1 // end on the part of the first range before last
	}
	for k := 0; k < passes; k++ {
		r := f.ranges[(first+k)%n]
		lo, hi := r.Start, r.End
		if k == 0 {
			lo = from
		}
		if k == n {
			hi = last
		}
		if a, ok := f.scan(r, lo, hi, taken); ok {
			return a, nil
		}
	}
	return netip.Addr{}, ErrExhausted
}

// scan returns the first usable address of r in [lo, hi]. Excluded
// prefixes are jumped over, so the walk costs one step per taken,
// reserved or excluded block, not per address.
func (f family) scan(r conf.Range, lo, hi netip.Addr, taken func(netip.Addr) bool) (netip.Addr, bool) {
	for a := lo; a.IsValid() && a.Compare(hi) <= 0; {
		if p, ok := conf.Excluded(a, f.exclude); ok {
			a = conf.LastAddr(p).Next()
			continue
		}
		if !r.Reserved(a) && !taken(a) {
			return a, true
		}
		a = a.Next()
	}
	return netip.Addr{}, false
}

// check tells whether a requested address may be handed out at all.
func (f family) check(a netip.Addr) (conf.Range, error) {
	for _, r := range f.ranges {
		if !r.Subnet.Contains(a) {
			continue
		}
		switch {
		case r.Reserved(a):
			return r, &UnavailableError{a, fmt.Sprintf("is the network, gateway or broadcast address of %s", r.Subnet)}
		case !r.Contains(a):
			return r, &UnavailableError{a, fmt.Sprintf("is outside the range %s-%s", r.Start, r.End)}
		}
		if p, ok := conf.Excluded(a, f.exclude); ok {
			return r, &UnavailableError{a, fmt.Sprintf("is excluded (%s)", p)}
		}
		return r, nil
	}
	return conf.Range{}, &UnavailableError{a, "is in no configured subnet"}
}

// rangeOf returns the range whose subnet holds a.
func (f family) rangeOf(a netip.Addr) (conf.Range, bool) {
	for _, r := range f.ranges {
		if r.Subnet.Contains(a) {
			return r, true
		}
	}
	return conf.Range{}, false
}
