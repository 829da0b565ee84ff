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

// compileRule encodes one rule of skein's as the kernel's expressions,
// in the registers and order nft uses for the same text, so that the
// kernel holds, and nft prints, the same rule either way.
func (f nftRenderer) compileRule(rule string) ([][]byte, error) {
	c := ruleCompiler{f: f, t: strings.Fields(rule)}
	for len(c.t) > 0 {
		if err := c.statement(); err != nil {
			return nil, err
		}
	}
	out := make([][]byte, 0, len(c.exprs))
	fam := f.nfproto()
	for _, e := range c.exprs {
		b, err := expr.Marshal(fam, e)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

type ruleCompiler struct {
	f     nftRenderer
	t     []string // the tokens left
	exprs []expr.Any
}

// at reports whether the tokens left start with want ("" matches any).
func (c *ruleCompiler) at(want ...string) bool {
	if len(c.t) < len(want) {
		return false
	}
	for i, w := range want {
		if w != "" && c.t[i] != w {
			return false
		}
	}
	return true
}

func (c *ruleCompiler) add(e ...expr.Any) { c.exprs = append(c.exprs, e...) }

// reg is nft's name for the register at 32-bit slot i: a 16-byte
// register when aligned to one, else a 32-bit one.
func reg(i uint32) uint32 {
	if i%4 == 0 {
		return unix.NFT_REG_1 + i/4
	}
	return unix.NFT_REG32_00 + i
}

func (c *ruleCompiler) addrLen() uint32 {
	if c.f.fam == 6 {
		return 16
	}
	return 4
}

// addr loads the packet's source or destination address.
func (c *ruleCompiler) addr(which string, slot uint32) error {
	off := map[string]uint32{"saddr": 12, "daddr": 16}
	if c.f.fam == 6 {
		off = map[string]uint32{"saddr": 8, "daddr": 24}
	}
	o, ok := off[which]
	if !ok {
		return fmt.Errorf("address %q", which)
	}
	c.add(&expr.Payload{DestRegister: reg(slot), Base: expr.PayloadBaseNetworkHeader, Offset: o, Len: c.addrLen()})
	return nil
}

// protoPort loads "meta l4proto . th dport" from 32-bit slot i on.
func (c *ruleCompiler) protoPort(i uint32) {
	c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg(i)},
		&expr.Payload{DestRegister: reg(i + 1), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
}

func (c *ruleCompiler) lookup(set string, slot uint32) error {
	name, ok := strings.CutPrefix(set, "@")
	if !ok {
		return fmt.Errorf("set %q", set)
	}
	c.add(&expr.Lookup{SourceRegister: reg(slot), SetName: name})
	return nil
}

func (c *ruleCompiler) vmap(set string) error {
	name, ok := strings.CutPrefix(set, "@")
	if !ok {
		return fmt.Errorf("map %q", set)
	}
	c.add(&expr.Lookup{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: name})
	return nil
}

// bits tests "load & mask != 0" (or == 0).
func (c *ruleCompiler) bits(mask uint32, op expr.CmpOp) {
	c.add(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
		Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)})
}

func parseU32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	return uint32(n), err
}

// statement compiles the next statement or match.
func (c *ruleCompiler) statement() error {
	t := c.t
	ip := c.f.ip
	switch {
	case c.at("jump", "") || c.at("goto", ""):
		kind := expr.VerdictJump
		if t[0] == "goto" {
			kind = expr.VerdictGoto
		}
		c.add(&expr.Verdict{Kind: kind, Chain: t[1]})
		c.t = t[2:]
	case c.at("return"):
		c.add(&expr.Verdict{Kind: expr.VerdictReturn})
		c.t = t[1:]
	case c.at("ct", "state", "new"):
		c.add(&expr.Ct{Key: expr.CtKeySTATE, Register: 1})
		c.bits(expr.CtStateBitNEW, expr.CmpOpNeq)
		c.t = t[3:]
	case c.at("ct", "status", "dnat"):
		c.add(&expr.Ct{Key: expr.CtKeySTATUS, Register: 1})
		c.bits(ipsDstNAT, expr.CmpOpNeq)
		c.t = t[3:]
	case c.at("fib", "", "type", "local"):
		fib := &expr.Fib{Register: 1, ResultADDRTYPE: true}
		switch t[1] {
		case "saddr":
			fib.FlagSADDR = true
		case "daddr":
			fib.FlagDADDR = true
		default:
			return fmt.Errorf("fib %q", t[1])
		}
		c.add(fib, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)})
		c.t = t[4:]
	case c.at("iifname", "!=", ""):
		name, err := strconv.Unquote(t[2])
		if err != nil || len(name) >= unix.IFNAMSIZ {
			return fmt.Errorf("iifname %s", t[2])
		}
		data := make([]byte, unix.IFNAMSIZ)
		copy(data, name)
		c.add(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: data})
		c.t = t[3:]
	case c.at("meta", "l4proto", ".", "th", "dport", "vmap", ""):
		c.protoPort(0)
		if err := c.vmap(t[6]); err != nil {
			return err
		}
		c.t = t[7:]
	case c.at("meta", "l4proto", ""):
		p, ok := protocols[t[2]]
		if !ok {
			return fmt.Errorf("protocol %q", t[2])
		}
		c.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}})
		c.t = t[3:]
	case c.at("meta", "mark", "set", "meta", "mark", "", ""):
		v, err := parseU32(t[6])
		if err != nil {
			return fmt.Errorf("mark %q", t[6])
		}
		mask := ^uint32(0)
		switch t[5] {
		case "or":
			mask = ^v
		case "xor":
		default:
			return fmt.Errorf("mark operation %q", t[5])
		}
		c.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: binary.NativeEndian.AppendUint32(nil, v)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
		c.t = t[7:]
	case c.at("meta", "mark", "&", "", "==", "0"):
		v, err := parseU32(t[3])
		if err != nil {
			return fmt.Errorf("mark %q", t[3])
		}
		c.add(&expr.Meta{Key: expr.MetaKeyMARK, Register: 1})
		c.bits(v, expr.CmpOpEq)
		c.t = t[6:]
	case c.at("numgen", "random", "mod", "", "==", "0"):
		n, err := parseU32(t[3])
		if err != nil {
			return fmt.Errorf("numgen %q", t[3])
		}
		c.add(&expr.Numgen{Register: 1, Modulus: n, Type: unix.NFT_NG_RANDOM},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)})
		c.t = t[6:]
	case c.at(ip, "", ".", ip, "", ""):
		// "ip saddr . ip daddr @set": two addresses.
		if err := c.addr(t[1], 0); err != nil {
			return err
		}
		if err := c.addr(t[4], c.addrLen()/4); err != nil {
			return err
		}
		if err := c.lookup(t[5], 0); err != nil {
			return err
		}
		c.t = t[6:]
	case c.at(ip, "", ".", "meta", "l4proto", ".", "th", "dport", "vmap", ""):
		if err := c.addr(t[1], 0); err != nil {
			return err
		}
		c.protoPort(c.addrLen() / 4)
		if err := c.vmap(t[9]); err != nil {
			return err
		}
		c.t = t[10:]
	case c.at(ip, "", ""):
		if err := c.addr(t[1], 0); err != nil {
			return err
		}
		if err := c.lookup(t[2], 0); err != nil {
			return err
		}
		c.t = t[3:]
	case c.at("update", "", "{", ip, "", "}"):
		name, ok := strings.CutPrefix(t[1], "@")
		if !ok {
			return fmt.Errorf("set %q", t[1])
		}
		if err := c.addr(t[4], 0); err != nil {
			return err
		}
		c.add(&expr.Dynset{SrcRegKey: 1, SetName: name, Operation: unix.NFT_DYNSET_OP_UPDATE})
		c.t = t[6:]
	case c.at("dnat", "to", ""):
		ap, err := netip.ParseAddrPort(t[2])
		if err != nil || ap.Addr().Is4() != (c.f.fam == 4) {
			return fmt.Errorf("dnat to %q", t[2])
		}
		c.add(&expr.Immediate{Register: 1, Data: ap.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, ap.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(c.f.nfproto()), RegAddrMin: 1, RegProtoMin: 2, Specified: true})
		c.t = t[3:]
	case c.at("dnat", ip, "to", "numgen", "random", "mod", "", "offset", "", "map", ""):
		n, err := parseU32(t[6])
		if err != nil {
			return fmt.Errorf("numgen %q", t[6])
		}
		off, err := parseU32(t[8])
		if err != nil {
			return fmt.Errorf("offset %q", t[8])
		}
		name, ok := strings.CutPrefix(t[10], "@")
		if !ok {
			return fmt.Errorf("map %q", t[10])
		}
		c.add(&expr.Numgen{Register: 1, Modulus: n, Type: unix.NFT_NG_RANDOM, Offset: off},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: name},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(c.f.nfproto()), RegAddrMin: 1, RegProtoMin: reg(c.addrLen() / 4)})
		c.t = t[11:]
	case c.at("masquerade", "fully-random"):
		c.add(&expr.Masq{FullyRandom: true})
		c.t = t[2:]
	case c.at("masquerade"):
		c.add(&expr.Masq{})
		c.t = t[1:]
	case c.at("reject", "with", "tcp", "reset"):
		c.add(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		c.t = t[4:]
	case c.at("reject"):
		code := uint8(icmpPortUnreach)
		if c.f.fam == 6 {
			code = icmp6PortUnreach
		}
		c.add(&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: code})
		c.t = t[1:]
	default:
		return fmt.Errorf("cannot encode %q", strings.Join(t, " "))
	}
	return nil
}
