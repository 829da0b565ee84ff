package nftables

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// elem is one element of a map or a set, built once, like a rule: as
// nft writes it (text, and value for a map's) and as the kernel takes it
// (key, and data or a verdict for a map's; an interval set's range). It
// is comparable, so two renderings of a map compare element by element.
type elem struct {
	text  string // the key, as nft writes it
	value string // a map's value, as nft writes it; "" in a set
	kind  elemKind
	key   string // the key's bytes
	data  string // a data map's value bytes
	code  int32  // a verdict map's verdict
	chain string // and its chain, for jump and goto
	span  netip.Prefix
}

type elemKind uint8

const (
	setMember elemKind = iota // a plain set's element
	verdictOf                 // a verdict map's element
	dataOf                    // a data map's element
	interval                  // an interval set's range
)

// isMap tells a map's element from a set's.
func (e elem) isMap() bool { return e.kind == verdictOf || e.kind == dataOf }

// padded is b with zeros up to a multiple of 4 bytes: each field of a
// concatenation takes whole registers.
func padded(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// protoPortKey is "tcp . 80" as the kernel takes it: the protocol and
// the port (big endian), each in a register of its own.
func protoPortKey(b []byte, proto string, port uint16) []byte {
	b = padded(append(b, protocols[proto]))
	return padded(binary.BigEndian.AppendUint16(b, port))
}

// withVerdict makes e a verdict map's element: "goto C", "jump C" or
// "drop".
func withVerdict(e elem, kind, chain string) elem {
	e.kind, e.chain = verdictOf, chain
	switch kind {
	case "goto":
		e.code, e.value = unix.NFT_GOTO, "goto "+chain
	case "jump":
		e.code, e.value = unix.NFT_JUMP, "jump "+chain
	default:
		e.code, e.value, e.chain = nfDrop, "drop", ""
	}
	return e
}

// serviceElem is the element of a Service address's verdict map:
// "address . protocol . port" to a verdict.
func serviceElem(addr netip.Addr, proto string, port uint16, kind, chain string) elem {
	text := addr.String() + " . " + proto + " . " + strconv.Itoa(int(port))
	key := protoPortKey(addr.AsSlice(), proto, port)
	return withVerdict(elem{text: text, key: string(key)}, kind, chain)
}

// nodePortElem is the element of a NodePort's verdict map: "protocol .
// port" to a verdict.
func nodePortElem(proto string, port uint16, kind, chain string) elem {
	text := proto + " . " + strconv.Itoa(int(port))
	return withVerdict(elem{text: text, key: string(protoPortKey(nil, proto, port))}, kind, chain)
}

// endpointElem is an endpoints map's element: the key a numgen picks
// (a number in host byte order) to the endpoint's "address . port".
func endpointElem(slot int, to netip.AddrPort) elem {
	data := padded(binary.BigEndian.AppendUint16(padded(to.Addr().AsSlice()), to.Port()))
	return elem{
		text: strconv.Itoa(slot), value: to.Addr().String() + " . " + strconv.Itoa(int(to.Port())), kind: dataOf,
		key: string(binary.NativeEndian.AppendUint32(nil, uint32(slot))), data: string(data),
	}
}

// hairpinElem is the hairpin set's "address . address": a local pod
// reaching itself through its Service.
func hairpinElem(a netip.Addr) elem {
	return elem{text: a.String() + " . " + a.String(), key: string(append(a.AsSlice(), a.AsSlice()...))}
}

// intervalElem is an interval set's range; its bounds are written when
// the set's run of elements ends.
func intervalElem(p netip.Prefix) elem {
	p = p.Masked()
	return elem{text: p.String(), kind: interval, span: p}
}

// sortElems sorts a set's elements by their text, as nft lists them.
func sortElems(es []elem) {
	slices.SortFunc(es, func(a, b elem) int { return strings.Compare(a.text, b.text) })
}
