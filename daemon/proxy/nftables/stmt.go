package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A rule of skein's is built once, as a list of statements; each renders
// itself as nft's text (what the golden files hold, and what nft reads
// when a transaction goes through it) and as the kernel's expressions,
// in the registers and order nft uses for the same text, so that the
// kernel holds, and nft prints, the same rule either way. Nothing parses
// skein's own text back.
type stmt interface {
	text() string
	exprs(b *exprBuilder)
}

// rule is a rule's statements and its text, the text computed once: it
// is what two renderings of a chain are compared by.
type rule struct {
	text  string
	stmts []stmt
}

func newRule(stmts ...stmt) rule {
	parts := make([]string, len(stmts))
	for i, s := range stmts {
		parts[i] = s.text()
	}
	return rule{text: strings.Join(parts, " "), stmts: stmts}
}

// sameRules tells whether two chains hold the same rules.
func sameRules(a, b []rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].text != b[i].text {
			return false
		}
	}
	return true
}

// exprBuilder collects a rule's expressions for one family.
type exprBuilder struct {
	fam int // 4 or 6
	out []expr.Any
}

func (b *exprBuilder) add(e ...expr.Any) { b.out = append(b.out, e...) }

// reg is nft's name for the register at 32-bit slot i: a 16-byte
// register when aligned to one, else a 32-bit one.
func reg(i uint32) uint32 {
	if i%4 == 0 {
		return unix.NFT_REG_1 + i/4
	}
	return unix.NFT_REG32_00 + i
}

func (b *exprBuilder) addrLen() uint32 {
	if b.fam == 6 {
		return 16
	}
	return 4
}

// addr loads the packet's source ("saddr") or destination address.
func (b *exprBuilder) addr(which string, slot uint32) {
	off := uint32(16) // IPv4 daddr
	switch {
	case b.fam == 4 && which == "saddr":
		off = 12
	case b.fam == 6 && which == "saddr":
		off = 8
	case b.fam == 6:
		off = 24
	}
	b.add(&expr.Payload{DestRegister: reg(slot), Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: b.addrLen()})
}

// protoPort loads "meta l4proto . th dport" from 32-bit slot i on.
func (b *exprBuilder) protoPort(i uint32) {
	b.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg(i)},
		&expr.Payload{DestRegister: reg(i + 1), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
}

func (b *exprBuilder) vmap(set string) {
	b.add(&expr.Lookup{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: set})
}

// bits tests "load & mask != 0" (or == 0).
func (b *exprBuilder) bits(mask uint32, op expr.CmpOp) {
	b.add(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
		Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)})
}

// ipName is nft's name of the family's network header.
func ipName(fam int) string {
	if fam == 6 {
		return "ip6"
	}
	return "ip"
}

// Kernel numbers x/sys/unix does not name.
const (
	ipsDstNAT        = 0x20 // IPS_DST_NAT, conntrack status
	icmpPortUnreach  = 3
	icmp6PortUnreach = 4
)

// The statements skein's rules are made of.
type (
	// verdict is "jump C", "goto C" or "return".
	verdict struct{ kind, chain string }
	// ctStateNew is "ct state new".
	ctStateNew struct{}
	// ctStatusDNAT is "ct status dnat".
	ctStatusDNAT struct{}
	// fibLocal is "fib saddr type local" (or daddr).
	fibLocal struct{ which string }
	// fibNotLocal is "fib daddr type != local" (or saddr).
	fibNotLocal struct{ which string }
	// iifnameNot is `iifname != "name"`.
	iifnameNot struct{ name string }
	// l4proto is "meta l4proto tcp".
	l4proto struct{ proto string }
	// markOr is "meta mark set meta mark or V" (xor when xor is set).
	markOr struct {
		bits uint32
		xor  bool
	}
	// markClear is "meta mark & V == 0".
	markClear struct{ bits uint32 }
	// numgenIs0 is "numgen random mod N == 0": true once in N.
	numgenIs0 struct{ mod uint32 }
	// addrIn is "ip daddr @set" (saddr, ip6 alike).
	addrIn struct {
		fam        int
		which, set string
	}
	// addrPairIn is "ip saddr . ip daddr @set".
	addrPairIn struct {
		fam int
		set string
	}
	// protoPortVmap is "meta l4proto . th dport vmap @map".
	protoPortVmap struct{ set string }
	// addrProtoPortVmap is "ip daddr . meta l4proto . th dport vmap @map".
	addrProtoPortVmap struct {
		fam int
		set string
	}
	// updateSaddr is "update @set { ip saddr }".
	updateSaddr struct {
		fam int
		set string
	}
	// dnatTo is "dnat to address:port".
	dnatTo struct{ to netip.AddrPort }
	// dnatNumgenMap is "dnat ip to numgen random mod N offset K map @map":
	// the endpoint at a random key of the port's run in an endpoints map.
	dnatNumgenMap struct {
		fam         int
		mod, offset uint32
		set         string
	}
	// masquerade is "masquerade" ("masquerade fully-random").
	masquerade struct{ fullyRandom bool }
	// reject is "reject with tcp reset", or "reject" (ICMP port
	// unreachable).
	reject struct{ tcpReset bool }
)

func (s verdict) text() string {
	if s.kind == "return" {
		return "return"
	}
	return s.kind + " " + s.chain
}

func (s verdict) exprs(b *exprBuilder) {
	switch s.kind {
	case "return":
		b.add(&expr.Verdict{Kind: expr.VerdictReturn})
	case "goto":
		b.add(&expr.Verdict{Kind: expr.VerdictGoto, Chain: s.chain})
	default:
		b.add(&expr.Verdict{Kind: expr.VerdictJump, Chain: s.chain})
	}
}

func (ctStateNew) text() string { return "ct state new" }

func (ctStateNew) exprs(b *exprBuilder) {
	b.add(&expr.Ct{Key: expr.CtKeySTATE, Register: 1})
	b.bits(expr.CtStateBitNEW, expr.CmpOpNeq)
}

func (ctStatusDNAT) text() string { return "ct status dnat" }

func (ctStatusDNAT) exprs(b *exprBuilder) {
	b.add(&expr.Ct{Key: expr.CtKeySTATUS, Register: 1})
	b.bits(ipsDstNAT, expr.CmpOpNeq)
}

func (s fibLocal) text() string { return "fib " + s.which + " type local" }

func (s fibLocal) exprs(b *exprBuilder) { fibAddrType(b, s.which, expr.CmpOpEq) }

// fibAddrType compares the address type of saddr or daddr with local.
func fibAddrType(b *exprBuilder, which string, op expr.CmpOp) {
	fib := &expr.Fib{Register: 1, ResultADDRTYPE: true}
	if which == "saddr" {
		fib.FlagSADDR = true
	} else {
		fib.FlagDADDR = true
	}
	b.add(fib, &expr.Cmp{Op: op, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)})
}

func (s fibNotLocal) text() string { return "fib " + s.which + " type != local" }

func (s fibNotLocal) exprs(b *exprBuilder) { fibAddrType(b, s.which, expr.CmpOpNeq) }

func (s iifnameNot) text() string { return "iifname != " + strconv.Quote(s.name) }

func (s iifnameNot) exprs(b *exprBuilder) {
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, s.name)
	b.add(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: data})
}

func (s l4proto) text() string { return "meta l4proto " + s.proto }

func (s l4proto) exprs(b *exprBuilder) {
	b.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protocols[s.proto]}})
}

func (s markOr) text() string {
	op := "or"
	if s.xor {
		op = "xor"
	}
	return fmt.Sprintf("meta mark set meta mark %s 0x%x", op, s.bits)
}

func (s markOr) exprs(b *exprBuilder) {
	mask := ^s.bits // or: keep the other bits, set these
	if s.xor {
		mask = ^uint32(0) // xor: keep every bit, flip these
	}
	b.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: binary.NativeEndian.AppendUint32(nil, s.bits)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

func (s markClear) text() string { return fmt.Sprintf("meta mark & 0x%x == 0", s.bits) }

func (s markClear) exprs(b *exprBuilder) {
	b.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: 1})
	b.bits(s.bits, expr.CmpOpEq)
}

func (s numgenIs0) text() string { return fmt.Sprintf("numgen random mod %d == 0", s.mod) }

func (s numgenIs0) exprs(b *exprBuilder) {
	b.add(&expr.Numgen{Register: 1, Modulus: s.mod, Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)})
}

func (s addrIn) text() string { return ipName(s.fam) + " " + s.which + " @" + s.set }

func (s addrIn) exprs(b *exprBuilder) {
	b.addr(s.which, 0)
	b.add(&expr.Lookup{SourceRegister: reg(0), SetName: s.set})
}

func (s addrPairIn) text() string {
	ip := ipName(s.fam)
	return ip + " saddr . " + ip + " daddr @" + s.set
}

func (s addrPairIn) exprs(b *exprBuilder) {
	b.addr("saddr", 0)
	b.addr("daddr", b.addrLen()/4)
	b.add(&expr.Lookup{SourceRegister: reg(0), SetName: s.set})
}

func (s protoPortVmap) text() string { return "meta l4proto . th dport vmap @" + s.set }

func (s protoPortVmap) exprs(b *exprBuilder) {
	b.protoPort(0)
	b.vmap(s.set)
}

func (s addrProtoPortVmap) text() string {
	return ipName(s.fam) + " daddr . meta l4proto . th dport vmap @" + s.set
}

func (s addrProtoPortVmap) exprs(b *exprBuilder) {
	b.addr("daddr", 0)
	b.protoPort(b.addrLen() / 4)
	b.vmap(s.set)
}

func (s updateSaddr) text() string { return "update @" + s.set + " { " + ipName(s.fam) + " saddr }" }

func (s updateSaddr) exprs(b *exprBuilder) {
	b.addr("saddr", 0)
	b.add(&expr.Dynset{SrcRegKey: 1, SetName: s.set, Operation: unix.NFT_DYNSET_OP_UPDATE})
}

func (s dnatTo) text() string { return "dnat to " + s.to.String() }

func (s dnatTo) exprs(b *exprBuilder) {
	b.add(&expr.Immediate{Register: 1, Data: s.to.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, s.to.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(nfproto(b.fam)), RegAddrMin: 1, RegProtoMin: 2, Specified: true})
}

func (s dnatNumgenMap) text() string {
	return fmt.Sprintf("dnat %s to numgen random mod %d offset %d map @%s", ipName(s.fam), s.mod, s.offset, s.set)
}

func (s dnatNumgenMap) exprs(b *exprBuilder) {
	b.add(&expr.Numgen{Register: 1, Modulus: s.mod, Type: unix.NFT_NG_RANDOM, Offset: s.offset},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: s.set},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(nfproto(b.fam)), RegAddrMin: 1, RegProtoMin: reg(b.addrLen() / 4)})
}

func (s masquerade) text() string {
	if s.fullyRandom {
		return "masquerade fully-random"
	}
	return "masquerade"
}

func (s masquerade) exprs(b *exprBuilder) { b.add(&expr.Masq{FullyRandom: s.fullyRandom}) }

func (s reject) text() string {
	if s.tcpReset {
		return "reject with tcp reset"
	}
	return "reject"
}

func (s reject) exprs(b *exprBuilder) {
	if s.tcpReset {
		b.add(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		return
	}
	code := uint8(icmpPortUnreach)
	if b.fam == 6 {
		code = icmp6PortUnreach
	}
	b.add(&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code})
}

// encode is the rule's expressions as the kernel takes them.
func (r rule) encode(fam int) ([][]byte, error) {
	b := &exprBuilder{fam: fam}
	for _, s := range r.stmts {
		s.exprs(b)
	}
	out := make([][]byte, 0, len(b.out))
	for _, e := range b.out {
		data, err := expr.Marshal(nfproto(fam), e)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.text, err)
		}
		out = append(out, data)
	}
	return out, nil
}
