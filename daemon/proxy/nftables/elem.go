package nftables

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/daemon/nftwire"
)

// elem is one element of a map or a set, built once, like a rule: as
// nft writes it (text, and value for a map's) and as the kernel takes it
// (key, and data or a verdict for a map's; an interval set's range). It
// is comparable, so two renderings of a map compare element by element.
type elem struct {
	// raw holds, in one allocation (a large table has a hundred
	// thousand elements), the key's bytes, then a data map's value bytes
	// (or an interval's prefix length), then a map's value as nft writes
	// it, then the key as nft writes it (which a map is keyed by: the key
	// shares this memory).
	raw            string
	code           int32  // a verdict map's verdict (its chain is in the value)
	vstart, tstart uint16 // where the value's text, and the key's, begin in raw
	split          uint8  // where the key's bytes end in raw
	kind           elemKind
}

// text is the key, as nft writes it.
func (e elem) text() string { return e.raw[e.tstart:] }

func (e elem) key() []byte  { return []byte(e.raw[:e.split]) }
func (e elem) data() []byte { return []byte(e.raw[e.split:e.vstart]) }

// value is a map's value as nft writes it; "" in a set.
func (e elem) value() string { return e.raw[e.vstart:e.tstart] }

// chain is a goto or jump verdict's chain: the value is "goto C" or
// "jump C".
func (e elem) chain() string {
	if e.code == unix.NFT_GOTO || e.code == unix.NFT_JUMP {
		return e.value()[len("goto "):]
	}
	return ""
}

// span is an interval element's range.
func (e elem) span() netip.Prefix {
	a, _ := netip.AddrFromSlice([]byte(e.raw[:e.split]))
	return netip.PrefixFrom(a, int(e.raw[e.split]))
}

// newElem is an element of the given kind.
func newElem(kind elemKind, text string, key, data []byte, value string) elem {
	raw := append(append(append(key, data...), value...), text...)
	n := len(key) + len(data)
	return elem{raw: string(raw), split: uint8(len(key)), vstart: uint16(n), tstart: uint16(n + len(value)), kind: kind}
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

// verdictElem is a verdict map's element: "goto C", "jump C" or "drop".
func verdictElem(text string, key []byte, kind, chain string) elem {
	code, value := nftwire.Drop, "drop"
	switch kind {
	case "goto":
		code, value = unix.NFT_GOTO, "goto "+chain
	case "jump":
		code, value = unix.NFT_JUMP, "jump "+chain
	}
	e := newElem(verdictOf, text, key, nil, value)
	e.code = code
	return e
}

// serviceElem is the element of a Service address's verdict map:
// "address . protocol . port" to a verdict.
func serviceElem(addr netip.Addr, proto string, port uint16, kind, chain string) elem {
	text := addr.String() + " . " + proto + " . " + strconv.Itoa(int(port))
	return verdictElem(text, protoPortKey(addr.AsSlice(), proto, port), kind, chain)
}

// nodePortElem is the element of a NodePort's verdict map: "protocol .
// port" to a verdict.
func nodePortElem(proto string, port uint16, kind, chain string) elem {
	text := proto + " . " + strconv.Itoa(int(port))
	return verdictElem(text, protoPortKey(nil, proto, port), kind, chain)
}

// endpointElem is an endpoints map's element: the key a numgen picks
// (a number in host byte order) to the endpoint's "address . port".
func endpointElem(slot int, to netip.AddrPort) elem {
	data := padded(binary.BigEndian.AppendUint16(padded(to.Addr().AsSlice()), to.Port()))
	return newElem(dataOf, strconv.Itoa(slot), binary.NativeEndian.AppendUint32(nil, uint32(slot)), data,
		to.Addr().String()+" . "+strconv.Itoa(int(to.Port())))
}

// hairpinElem is the hairpin set's "address . address": a local pod
// reaching itself through its Service.
func hairpinElem(a netip.Addr) elem {
	return newElem(setMember, a.String()+" . "+a.String(), append(a.AsSlice(), a.AsSlice()...), nil, "")
}

// intervalElem is an interval set's range; its bounds are written when
// the set's run of elements ends.
func intervalElem(p netip.Prefix) elem {
	p = p.Masked()
	return newElem(interval, p.String(), p.Addr().AsSlice(), []byte{byte(p.Bits())}, "")
}

// sortElems sorts a set's elements by their text, as nft lists them.
func sortElems(es []elem) {
	slices.SortFunc(es, func(a, b elem) int { return strings.Compare(a.text(), b.text()) })
}
