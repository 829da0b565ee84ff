package dns

import (
	"net/netip"
	"slices"
	"strings"

	miekg "github.com/miekg/dns"
)

// records are what one name of the zone holds, of every type.
type records struct {
	addrs  []miekg.RR // A and AAAA
	cname  *miekg.CNAME
	srv    []miekg.RR
	extra  []miekg.RR // the SRV targets' addresses
	others []miekg.RR // SOA, NS, TXT: types whose records answer as they are
}

// inZone tells whether name (lower case, fully qualified) is the zone's.
func (z *Zone) inZone(name string) bool {
	return name == z.origin || strings.HasSuffix(name, "."+z.origin)
}

// lookup finds name (lower case, fully qualified, inside the zone): its
// records, and whether it exists (false: NXDOMAIN). A name that only
// has names below it (svc.cluster.local) exists, with no records.
func (z *Zone) lookup(name string, pods bool) (records, bool) {
	rest := strings.TrimSuffix(strings.TrimSuffix(name, z.origin), ".")
	if rest == "" {
		return records{others: []miekg.RR{z.soa, z.ns}}, true
	}
	if rest == "dns-version" {
		return records{others: []miekg.RR{z.version}}, true
	}
	labels := strings.Split(rest, ".")
	n := len(labels)
	switch labels[n-1] {
	case "svc":
		return z.lookupService(labels[:n-1])
	case "pod":
		if !pods {
			return records{}, false
		}
		return z.lookupPod(name, labels[:n-1])
	case "endpoints":
		if n == 3 {
			if s := z.service(labels[0] + "." + labels[1]); s != nil && len(s.endpoints) > 0 {
				return records{addrs: s.endpoints}, true
			}
			return records{}, false
		}
		return records{}, n == 1 || (n == 2 && z.hasNamespace(labels[0]))
	}
	return records{}, false
}

// lookupService finds <svc>.<ns>, <host>.<svc>.<ns> and
// _<port>._<proto>.<svc>.<ns> (labels before "svc").
func (z *Zone) lookupService(labels []string) (records, bool) {
	n := len(labels)
	switch n {
	case 0:
		return records{}, true
	case 1:
		return records{}, z.hasNamespace(labels[0])
	}
	s := z.service(labels[n-2] + "." + labels[n-1])
	if s == nil {
		return records{}, false
	}
	switch n {
	case 2:
		if s.cname != nil {
			return records{cname: s.cname}, true
		}
		if s.hosts != nil && len(s.addrs) == 0 {
			return records{}, false // headless, no ready endpoint
		}
		return records{addrs: s.addrs}, true
	case 3:
		if rrs, ok := s.hosts[labels[0]]; ok {
			return records{addrs: rrs}, true
		}
		if strings.HasPrefix(labels[0], "_") {
			// _<proto>.<svc>.<ns>: a name with SRV names below it
			for key := range s.srv {
				if strings.HasSuffix(key, "."+labels[0]) {
					return records{}, true
				}
			}
		}
	case 4:
		key := labels[0] + "." + labels[1]
		if rrs, ok := s.srv[key]; ok {
			return records{srv: rrs, extra: s.srvExtra[key]}, true
		}
	}
	return records{}, false
}

// lookupPod answers <a-b-c-d>.<ns>.pod with the address the name spells
// (kubeadm's default "pods insecure": no Pod is looked up).
func (z *Zone) lookupPod(name string, labels []string) (records, bool) {
	switch len(labels) {
	case 0, 1:
		return records{}, true
	case 2:
	default:
		return records{}, false
	}
	a, ok := undashed(labels[0])
	if !ok {
		return records{}, false
	}
	b := builder{origin: z.origin, ttl: z.ttl}
	return records{addrs: []miekg.RR{b.addrRR(name, a)}}, true
}

// undashed is the address of a pod record's label: "10-1-0-5" or
// "fd00-10-244--5".
func undashed(label string) (netip.Addr, bool) {
	if strings.Count(label, "-") == 3 {
		a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
		return a, err == nil && a.Is4()
	}
	a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":"))
	return a, err == nil && a.Is6() && !a.Is4In6()
}

// reverseName is the address a PTR question names, or false.
func reverseName(name string) (netip.Addr, bool) {
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		parts := strings.Split(v4, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		for i, j := 0, 3; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		a, err := netip.ParseAddr(strings.Join(parts, "."))
		return a, err == nil
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		nibbles := strings.Split(v6, ".")
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, nb := range nibbles {
			if len(nb) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", nb[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			pos := 31 - i
			b[pos/2] |= byte(v) << (4 * (1 - pos%2))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// ptrs is the PTR records of an address the zone names; nil for one it
// does not (a question the upstream answers).
func (z *Zone) ptrs(qname string, a netip.Addr) []miekg.RR {
	names, _ := z.reverse.get(a)
	if len(names) == 0 {
		return nil
	}
	out := make([]miekg.RR, len(names))
	for i, n := range names {
		out[i] = &miekg.PTR{Hdr: miekg.RR_Header{Name: qname, Rrtype: miekg.TypePTR, Class: miekg.ClassINET, Ttl: z.ttl}, Ptr: n}
	}
	return out
}

// answer fills m, a reply to a question of the zone: the records of
// type qtype, the CNAME of an ExternalName Service, NODATA for a name
// without records of that type, NXDOMAIN for a name that does not
// exist; SOA in the authority section of both negative answers.
func (z *Zone) answer(m *miekg.Msg, name string, qtype uint16, pods bool) {
	m.Authoritative = true
	r, ok := z.lookup(name, pods)
	if !ok {
		m.Rcode = miekg.RcodeNameError
		m.Ns = []miekg.RR{z.soa}
		return
	}
	switch {
	case r.cname != nil:
		m.Answer = []miekg.RR{r.cname}
		return
	case qtype == miekg.TypeSRV:
		m.Answer, m.Extra = slices.Clip(r.srv), append(m.Extra, r.extra...)
	case qtype == miekg.TypeA || qtype == miekg.TypeAAAA:
		for _, rr := range r.addrs {
			if rr.Header().Rrtype == qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	case qtype == miekg.TypeANY:
		// RFC 8482: one set of records, not all of them.
		switch {
		case len(r.addrs) > 0:
			m.Answer = slices.Clip(r.addrs)
		case len(r.srv) > 0:
			m.Answer = slices.Clip(r.srv)
		default:
			m.Answer = slices.Clip(r.others[:min(1, len(r.others))])
		}
	default:
		for _, rr := range r.others {
			if rr.Header().Rrtype == qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []miekg.RR{z.soa}
	}
}
