package nftables

import (
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/skein-net/skein/daemon/nftwire"
)

// A chain or set is declared once, as a value holding both what nft's
// text says (the golden files, debug output) and what the kernel takes:
// neither is derived from the other.

// chainDecl is a chain; a base chain when base is not nil.
type chainDecl struct {
	name string
	base *baseChain
}

// baseChain is a base chain's place, in nft's words and the kernel's.
type baseChain struct {
	typ  knftables.BaseChainType
	hook knftables.BaseChainHook
	prio knftables.BaseChainPriority
	wire nftwire.Hook
}

// baseChainDecl is a base chain of the family's table. Its priority is
// nft's name and an offset ("dstnat-10").
func (f nftRenderer) baseChainDecl(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority) chainDecl {
	kf := knftables.IPv4Family
	if f.fam == 6 {
		kf = knftables.IPv6Family
	}
	// skein's priorities are its own constants, known to parse.
	num, _ := knftables.ParsePriority(kf, string(prio))
	return chainDecl{name: name, base: &baseChain{typ: typ, hook: hook, prio: prio,
		wire: nftwire.Hook{Type: string(typ), Num: nftwire.Hooks[string(hook)], Priority: int32(num)}}}
}

// setDecl is a set or a map.
type setDecl struct {
	name  string
	isMap bool
	// As nft declares it: "type K [: verdict]" or "typeof …", flags and
	// a timeout.
	typ, typeOf string
	flags       []knftables.SetFlag
	timeout     *time.Duration
	// As the kernel takes it.
	wire nftwire.Set
}

// setFlags are the kernel's bits of nft's set flags.
var setFlags = map[knftables.SetFlag]uint32{
	knftables.IntervalFlag: unix.NFT_SET_INTERVAL,
	knftables.DynamicFlag:  unix.NFT_SET_EVAL,
	knftables.TimeoutFlag:  unix.NFT_SET_TIMEOUT,
}

func typeName(types []nftwire.Datatype) string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.Name
	}
	return strings.Join(names, " . ")
}

// setOf is a set keyed by the types given.
func setOf(name string, key []nftwire.Datatype, flags ...knftables.SetFlag) setDecl {
	d := setDecl{name: name, typ: typeName(key), flags: flags}
	d.wire.KeyType, d.wire.KeyLen = nftwire.Concat(key...)
	d.wire.Userdata = nftwire.KeyUserdata(key, false)
	for _, fl := range flags {
		d.wire.Flags |= setFlags[fl]
	}
	return d
}

// verdictMap is a map from keys of the types given to verdicts.
func verdictMap(name string, key ...nftwire.Datatype) setDecl {
	d := setDecl{name: name, isMap: true, typ: typeName(key) + " : verdict"}
	d.wire.Flags = unix.NFT_SET_MAP
	d.wire.KeyType, d.wire.KeyLen = nftwire.Concat(key...)
	d.wire.DataType = unix.NFT_DATA_VERDICT
	d.wire.Userdata = nftwire.KeyUserdata(key, true)
	return d
}

// affinitySet is a Service port's ClientIP affinity: the client
// addresses seen, each forgotten after the timeout.
func (f nftRenderer) affinitySet(name string, timeout time.Duration) setDecl {
	d := setOf(name, []nftwire.Datatype{f.addrDatatype()}, knftables.DynamicFlag, knftables.TimeoutFlag)
	d.timeout = &timeout
	d.wire.Timeout = timeout
	return d
}

// endpointsMap is an endpoints map: "typeof numgen random mod 1 : ip
// daddr . tcp dport", a number a numgen picks to an address and port.
func (f nftRenderer) endpointsMap(name string) setDecl {
	d := setDecl{name: name, isMap: true, typeOf: "numgen random mod 1 : " + f.ip + " daddr . tcp dport"}
	d.wire.Flags = unix.NFT_SET_MAP
	d.wire.KeyType, d.wire.KeyLen = nftwire.Concat(nftwire.Integer)
	d.wire.DataType, d.wire.DataLen = nftwire.Concat(f.addrDatatype(), nftwire.InetService)
	d.wire.Userdata = f.endpointsUdata()
	return d
}

func (f nftRenderer) addrDatatype() nftwire.Datatype {
	if f.fam == 6 {
		return nftwire.IPv6Addr
	}
	return nftwire.IPv4Addr
}

// object is the declaration as knftables writes it.
func (d setDecl) object() knftables.Object {
	if d.isMap {
		return &knftables.Map{Name: d.name, Type: d.typ, TypeOf: d.typeOf, Flags: d.flags, Timeout: d.timeout}
	}
	return &knftables.Set{Name: d.name, Type: d.typ, TypeOf: d.typeOf, Flags: d.flags, Timeout: d.timeout}
}

// endpointsUdata is nft's user data of the endpoints maps' typeof.
func (f nftRenderer) endpointsUdata() []byte {
	// nft's protocol descriptions and header fields.
	const (
		descTCP, descIP, descIP6    = 8, 12, 13
		fieldTCPDport               = 2
		fieldIPDaddr, fieldIP6Daddr = 12, 9
		ngRandom                    = 1
	)
	payload := func(desc, field uint32) []byte {
		return nftwire.Typeof(nftwire.ExprPayload, nftwire.UserdataU32(nftwire.UserdataU32(nil, 0, desc), 1, field))
	}
	desc, field := uint32(descIP), uint32(fieldIPDaddr)
	if f.fam == 6 {
		desc, field = descIP6, fieldIP6Daddr
	}
	ng := nftwire.UserdataU32(nftwire.UserdataU32(nftwire.UserdataU32(nil, 0, ngRandom), 1, 1), 2, 0)
	var parts []byte
	parts = nftwire.Userdata(parts, 0, payload(desc, field))
	parts = nftwire.Userdata(parts, 1, payload(descTCP, fieldTCPDport))
	b := nftwire.UserdataU32(nil, nftwire.UdataKeyByteOrder, nftwire.ByteOrderHost)
	b = nftwire.UserdataU32(b, nftwire.UdataDataByteOrder, 0)
	b = nftwire.Userdata(b, nftwire.UdataKeyTypeof, nftwire.Typeof(nftwire.ExprNumgen, ng))
	b = nftwire.Userdata(b, nftwire.UdataDataTypeof, nftwire.Typeof(nftwire.ExprConcat, parts))
	return nftwire.UserdataU32(b, nftwire.UdataDataInterval, 0)
}

var protocols = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}
