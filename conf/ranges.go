package conf

import (
	"fmt"
	"net/netip"
)

func parseRanges(in []RangeFile) ([]Range, error) {
	if len(in) == 0 {
		return nil, invalid("ranges", "required: at least one subnet, e.g. [{\"subnet\": \"10.244.1.0/24\"}]")
	}
	out := make([]Range, 0, len(in))
	for i, rf := range in {
		field := fmt.Sprintf("ranges[%d]", i)
		r, err := parseRange(field, rf)
		if err != nil {
			return nil, err
		}
		for j, prev := range out {
			if prev.Subnet.Overlaps(r.Subnet) {
				return nil, invalid(field+".subnet", "%s overlaps ranges[%d].subnet %s", r.Subnet, j, prev.Subnet)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRange(field string, rf RangeFile) (Range, error) {
	if rf.Subnet == "" {
		return Range{}, invalid(field+".subnet", "required")
	}
	p, err := netip.ParsePrefix(rf.Subnet)
	if err != nil {
		return Range{}, invalid(field+".subnet", "%q is not a CIDR subnet", rf.Subnet)
	}
	if p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return Range{}, invalid(field+".subnet", "%q: write IPv4 subnets in dotted form, without a zone", rf.Subnet)
	}
	if p.Masked() != p {
		return Range{}, invalid(field+".subnet", "%s is not a network address; did you mean %s?", p, p.Masked())
	}
	// The smallest subnet that holds a network address, a gateway and one
	// pod (and, for IPv4, a broadcast address).
	maxBits := 30
	if p.Addr().Is6() {
		maxBits = 126
	}
	if p.Bits() > maxBits {
		return Range{}, invalid(field+".subnet", "%s is too small to hold a gateway and a pod (use /%d or larger)", p, maxBits)
	}
	r := Range{Subnet: p, Start: p.Addr().Next(), End: lastUsable(p), Gateway: p.Addr().Next()}
	if r.Gateway, err = addrIn(field+".gateway", rf.Gateway, p, r.Gateway); err != nil {
		return Range{}, err
	}
	if r.Gateway == p.Addr() || r.Gateway == broadcast(p) {
		return Range{}, invalid(field+".gateway", "%s is the subnet's network or broadcast address", r.Gateway)
	}
	if r.Start, err = addrIn(field+".rangeStart", rf.RangeStart, p, r.Start); err != nil {
		return Range{}, err
	}
	if r.End, err = addrIn(field+".rangeEnd", rf.RangeEnd, p, r.End); err != nil {
		return Range{}, err
	}
	if r.Start.Compare(r.End) > 0 {
		return Range{}, invalid(field+".rangeStart", "%s is after rangeEnd %s", r.Start, r.End)
	}
	return r, nil
}

// addrIn parses an optional address that must lie inside p.
func addrIn(field, s string, p netip.Prefix, def netip.Addr) (netip.Addr, error) {
	if s == "" {
		return def, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, invalid(field, "%q is not an IP address", s)
	}
	if !p.Contains(a) {
		return netip.Addr{}, invalid(field, "%s is outside subnet %s", a, p)
	}
	return a, nil
}

func parseExclude(in []string, ranges []Range) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range in {
		field := fmt.Sprintf("exclude[%d]", i)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, invalid(field, "%q is neither an IP address nor a CIDR", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		inside := false
		for _, r := range ranges {
			if r.Subnet.Overlaps(p) {
				inside = true
			}
		}
		if !inside {
			return nil, invalid(field, "%s is in no configured subnet", p)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseRoutes(in []RouteFile, ranges []Range) ([]Route, error) {
	var out []Route
	for i, rf := range in {
		field := fmt.Sprintf("routes[%d]", i)
		dst, err := netip.ParsePrefix(rf.Dst)
		if err != nil {
			return nil, invalid(field+".dst", "%q is not a CIDR", rf.Dst)
		}
		rt := Route{Dst: dst.Masked()}
		if rf.GW != "" {
			if rt.GW, err = netip.ParseAddr(rf.GW); err != nil {
				return nil, invalid(field+".gw", "%q is not an IP address", rf.GW)
			}
			if rt.GW.Is4() != dst.Addr().Is4() {
				return nil, invalid(field+".gw", "%s is not of the same family as dst %s", rt.GW, dst)
			}
		}
		hasFamily := false
		for _, r := range ranges {
			if r.Subnet.Addr().Is4() == dst.Addr().Is4() {
				hasFamily = true
			}
		}
		if !hasFamily {
			return nil, invalid(field+".dst", "%s: no range of that address family is configured", dst)
		}
		out = append(out, rt)
	}
	return out, nil
}

// broadcast returns the last address of p (the broadcast address in IPv4).
func broadcast(p netip.Prefix) netip.Addr {
	return LastAddr(p)
}

// LastAddr returns the highest address in p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// lastUsable is the last address a pod may get: the one before the
// broadcast address in IPv4, the last address in IPv6.
func lastUsable(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		return LastAddr(p).Prev()
	}
	return LastAddr(p)
}

// Reserved reports whether a is an address of r that no pod may hold.
func (r Range) Reserved(a netip.Addr) bool {
	return a == r.Subnet.Addr() || a == r.Gateway || (a.Is4() && a == LastAddr(r.Subnet))
}

// Contains reports whether a lies in the range's [Start, End].
func (r Range) Contains(a netip.Addr) bool {
	return a.BitLen() == r.Start.BitLen() && r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

// hasUsable reports whether r holds an address a pod may get. It jumps
// over excluded prefixes, so it takes at most a few steps per exclusion
// even in an IPv6 /64.
func hasUsable(r Range, exclude []netip.Prefix) bool {
	for a := r.Start; a.IsValid() && a.Compare(r.End) <= 0; {
		if p, ok := Excluded(a, exclude); ok {
			a = LastAddr(p).Next()
			continue
		}
		if !r.Reserved(a) {
			return true
		}
		a = a.Next()
	}
	return false
}

// Excluded returns the prefix of exclude that holds a, if any.
func Excluded(a netip.Addr, exclude []netip.Prefix) (netip.Prefix, bool) {
	for _, p := range exclude {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
