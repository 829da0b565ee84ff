package nftwire

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

// Set is a set's or map's declaration as the kernel takes it.
type Set struct {
	Flags             uint32 // unix.NFT_SET_MAP, _INTERVAL, _TIMEOUT, _EVAL
	KeyType, KeyLen   uint32
	DataType, DataLen uint32
	Timeout           time.Duration // whole milliseconds; 0 for none
	// Userdata is what nft reads back to print the set as declared
	// (KeyUserdata, or a typeof's).
	Userdata []byte
}

// AddSet declares a set or a map.
func (b *Batch) AddSet(name string, s Set) {
	b.setID++
	b.msg(unix.NFT_MSG_NEWSET, unix.NLM_F_CREATE, "add set "+name)
	b.str(unix.NFTA_SET_NAME, name)
	b.u32(unix.NFTA_SET_FLAGS, s.Flags)
	b.u32(unix.NFTA_SET_KEY_TYPE, s.KeyType)
	b.u32(unix.NFTA_SET_KEY_LEN, s.KeyLen)
	if s.Flags&unix.NFT_SET_MAP != 0 {
		b.u32(unix.NFTA_SET_DATA_TYPE, s.DataType)
		b.u32(unix.NFTA_SET_DATA_LEN, s.DataLen)
	}
	if s.Timeout > 0 {
		b.attr(unix.NFTA_SET_TIMEOUT, binary.BigEndian.AppendUint64(nil, uint64(s.Timeout.Milliseconds())))
	}
	b.u32(unix.NFTA_SET_ID, b.setID)
	if s.Userdata != nil {
		b.attr(unix.NFTA_SET_USERDATA, s.Userdata)
	}
	b.end()
}

// Datatype is one of nft's datatypes: its number, size, and whether its
// bytes are big endian.
type Datatype struct {
	Name      string
	ID, Size  uint32
	BigEndian bool
}

// The datatypes of addresses, protocols and ports.
var (
	IPv4Addr    = Datatype{"ipv4_addr", 7, 4, true}
	IPv6Addr    = Datatype{"ipv6_addr", 8, 16, true}
	InetProto   = Datatype{"inet_proto", 12, 1, false}
	InetService = Datatype{"inet_service", 13, 2, true}
	// Integer is a number in host byte order (numgen's result).
	Integer = Datatype{"integer", 4, 4, false}
)

// Concat is the type number and length of fields joined by ".": each
// field 4-byte aligned, type numbers 6 bits each; a single field is
// itself.
func Concat(types ...Datatype) (id, size uint32) {
	if len(types) == 1 {
		return types[0].ID, types[0].Size
	}
	for _, t := range types {
		id = id<<6 | t.ID
		size += (t.Size + 3) &^ 3
	}
	return id, size
}

// nft's user data on a set (libnftnl's NFTNL_UDATA_SET_*).
const (
	UdataKeyByteOrder  = 0
	UdataDataByteOrder = 1
	UdataKeyTypeof     = 3
	UdataDataTypeof    = 4
	UdataDataInterval  = 6
	// Within a typeof: the expression's kind and its own data.
	udataTypeofExpr = 0
	udataTypeofData = 1
)

// nft's expression kinds, as a typeof names them.
const (
	ExprPayload = 7
	ExprConcat  = 13
	ExprNumgen  = 23
)

// Byte orders, as the user data names them.
const (
	ByteOrderHost = 1
	ByteOrderBig  = 2
)

// Userdata appends one TLV of nft's user data.
func Userdata(b []byte, typ byte, v []byte) []byte {
	return append(append(b, typ, byte(len(v))), v...)
}

// UserdataU32 appends a TLV holding a number.
func UserdataU32(b []byte, typ byte, v uint32) []byte {
	return Userdata(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

// Typeof is one typeof expression: its kind and data.
func Typeof(kind uint32, data []byte) []byte {
	return Userdata(UserdataU32(nil, udataTypeofExpr, kind), udataTypeofData, data)
}

// KeyUserdata is what nft writes for a set declared by type: a key of
// the types given (a verdict map's data needs nothing more).
func KeyUserdata(types []Datatype, isMap bool) []byte {
	if len(types) == 1 {
		order := uint32(ByteOrderHost)
		if types[0].BigEndian {
			order = ByteOrderBig
		}
		return UserdataU32(nil, UdataKeyByteOrder, order)
	}
	b := UserdataU32(nil, UdataKeyByteOrder, 0)
	if isMap {
		b = UserdataU32(b, UdataDataByteOrder, 0)
	}
	b = Userdata(b, UdataKeyTypeof, Typeof(ExprConcat, nil))
	if isMap {
		b = UserdataU32(b, UdataDataInterval, 0)
	}
	return b
}
