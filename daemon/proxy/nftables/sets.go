package nftables

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// A set's declaration as the kernel takes it, and its elements' bytes:
// what the wire encoder writes for a set nft would have declared from
// text.

// Set types: nft's datatype numbers and sizes.
type datatype struct {
	id, size  uint32
	bigEndian bool
}

var datatypes = map[string]datatype{
	"ipv4_addr": {7, 4, true}, "ipv6_addr": {8, 16, true},
	"inet_proto": {12, 1, false}, "inet_service": {13, 2, true},
}

// setSpec is a set's declaration, as the kernel takes it.
type setSpec struct {
	flags             uint32
	keyType, keyLen   uint32
	dataType, dataLen uint32
	timeoutMS         uint64
	udata             []byte
	keyParts          []datatype // the key's fields; the data's are dataParts
	dataParts         []datatype
}

// concat is nft's type number and length of fields joined by ".": each
// field 4-byte aligned, type numbers 6 bits each.
func concat(parts []string) (id, size uint32, types []datatype, err error) {
	for _, p := range parts {
		dt, ok := datatypes[strings.TrimSpace(p)]
		if !ok {
			return 0, 0, nil, fmt.Errorf("type %q", p)
		}
		id = id<<6 | dt.id
		size += (dt.size + 3) &^ 3
		types = append(types, dt)
	}
	if len(types) == 1 {
		size = types[0].size
	}
	return id, size, types, nil
}

// setSpecOf is a set's declaration: "type K [: verdict]" with flags and
// a timeout, or the endpoints maps' "typeof numgen random mod 1 : ip
// daddr . tcp dport".
func (f nftRenderer) setSpecOf(isMap bool, typ, typeOf string, flags []knftables.SetFlag, timeout *time.Duration) (setSpec, error) {
	var s setSpec
	if isMap {
		s.flags |= unix.NFT_SET_MAP
	}
	switch {
	case typeOf != "" && typ == "":
		if typeOf != "numgen random mod 1 : "+f.ip+" daddr . tcp dport" || !isMap {
			return s, fmt.Errorf("typeof %q: %w", typeOf, errNotEncodable)
		}
		_, size, types, err := concat([]string{f.addrType, "inet_service"})
		if err != nil {
			return s, err
		}
		s.keyType, s.keyLen = 4, 4 // integer, in host byte order
		s.dataType, s.dataLen, s.dataParts = types[0].id<<6|types[1].id, size, types
		s.udata = f.endpointsUdata()
	case typ != "" && typeOf == "":
		key, value, _ := strings.Cut(typ, " : ")
		id, size, types, err := concat(strings.Split(key, " . "))
		if err != nil {
			return s, err
		}
		s.keyType, s.keyLen, s.keyParts = id, size, types
		if isMap {
			if value != "verdict" {
				return s, fmt.Errorf("map data %q: %w", value, errNotEncodable)
			}
			s.dataType = unix.NFT_DATA_VERDICT
		}
		s.udata = typeUdata(types, isMap)
	default:
		return s, fmt.Errorf("type %q, typeof %q: %w", typ, typeOf, errNotEncodable)
	}
	for _, fl := range flags {
		switch fl {
		case knftables.IntervalFlag:
			s.flags |= unix.NFT_SET_INTERVAL
		case knftables.DynamicFlag:
			s.flags |= unix.NFT_SET_EVAL
		case knftables.TimeoutFlag:
			s.flags |= unix.NFT_SET_TIMEOUT
		default:
			return s, fmt.Errorf("flag %q: %w", fl, errNotEncodable)
		}
	}
	if timeout != nil {
		if *timeout%time.Second != 0 || *timeout <= 0 {
			return s, fmt.Errorf("timeout %v: %w", *timeout, errNotEncodable)
		}
		s.timeoutMS = uint64(timeout.Milliseconds())
	}
	return s, nil
}

// nft's user data on a set (libnftnl's NFTNL_UDATA_SET_*), which nft
// reads back to print the set as it was declared.
const (
	udataKeyByteOrder  = 0
	udataDataByteOrder = 1
	udataKeyTypeof     = 3
	udataDataTypeof    = 4
	udataDataInterval  = 6
	// Within a typeof: the expression's kind and its own data.
	udataTypeofExpr = 0
	udataTypeofData = 1
	// nft's expression kinds, protocol descriptions and header fields.
	exprPayload, exprConcat, exprNumgen = 7, 13, 23
	descTCP, descIP, descIP6            = 8, 12, 13
	fieldTCPDport                       = 2
	fieldIPDaddr, fieldIP6Daddr         = 12, 9
	byteOrderHost, byteOrderBig         = 1, 2
	ngRandom                            = 1
)

// udata appends one TLV of nft's user data.
func udata(b []byte, typ byte, v []byte) []byte {
	return append(append(b, typ, byte(len(v))), v...)
}

func udataU32(b []byte, typ byte, v uint32) []byte {
	return udata(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

// typeof is one typeof expression: its kind and data.
func typeof(kind uint32, data []byte) []byte {
	return udata(udataU32(nil, udataTypeofExpr, kind), udataTypeofData, data)
}

func typeUdata(types []datatype, isMap bool) []byte {
	var b []byte
	if len(types) == 1 {
		order := uint32(byteOrderHost)
		if types[0].bigEndian {
			order = byteOrderBig
		}
		return udataU32(b, udataKeyByteOrder, order)
	}
	b = udataU32(b, udataKeyByteOrder, 0)
	if isMap {
		b = udataU32(b, udataDataByteOrder, 0)
	}
	b = udata(b, udataKeyTypeof, typeof(exprConcat, nil))
	if isMap {
		b = udataU32(b, udataDataInterval, 0)
	}
	return b
}

// endpointsUdata is "typeof numgen random mod 1 : ip daddr . tcp dport".
func (f nftRenderer) endpointsUdata() []byte {
	payload := func(desc, field uint32) []byte {
		return typeof(exprPayload, udataU32(udataU32(nil, 0, desc), 1, field))
	}
	desc, field := uint32(descIP), uint32(fieldIPDaddr)
	if f.fam == 6 {
		desc, field = descIP6, fieldIP6Daddr
	}
	ng := udataU32(udataU32(udataU32(nil, 0, ngRandom), 1, 1), 2, 0)
	var parts []byte
	parts = udata(parts, 0, payload(desc, field))
	parts = udata(parts, 1, payload(descTCP, fieldTCPDport))
	b := udataU32(nil, udataKeyByteOrder, byteOrderHost)
	b = udataU32(b, udataDataByteOrder, 0)
	b = udata(b, udataKeyTypeof, typeof(exprNumgen, ng))
	b = udata(b, udataDataTypeof, typeof(exprConcat, parts))
	return udataU32(b, udataDataInterval, 0)
}

var protocols = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}
