package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// The nftables backend plans in nft's text (what the golden files hold)
// and writes the same operations to the kernel itself, over netlink, as
// one kernel transaction. The nft command spends most of a large sync
// parsing and re-evaluating the text and reading the table back for its
// cache (about 12 µs per map element); skein's transactions use a small,
// fixed part of nft's language, which is encoded here operation by
// operation, in the attributes and registers nft itself would send.
// Anything outside that part (errNotEncodable) makes the sync go through
// nft. TestWireMatchesNFT loads the same transactions both ways and
// compares what the kernels hold.

// wireBatch is one kernel transaction being built: netlink messages in
// one buffer, between a batch begin and end.
type wireBatch struct {
	f     nftRenderer
	buf   []byte
	msgs  []int    // each message's offset in buf
	lines []string // what each message carries, for errors
	setID uint32
	// The element message being filled, if any.
	elemOp, elemSet string
	elemList        int // offset of its element list
	intervals       []netip.Prefix
	err             error // the first operation that could not be encoded
	done            bool  // finished
	// rules holds each rule text's expressions as encoded: most rules
	// recur (every Service's masquerade test is the same).
	rules map[string][][]byte
}

// Kernel numbers x/sys/unix does not name.
const (
	nftaTableUserdata = 6 // NFTA_TABLE_USERDATA
	nfDrop, nfAccept  = 0, 1
	ipsDstNAT         = 0x20 // IPS_DST_NAT, conntrack status
	icmpPortUnreach   = 3
	icmp6PortUnreach  = 4
)

const (
	nfnlSubsysNFTables = unix.NFNL_SUBSYS_NFTABLES << 8
	// maxElemList keeps an element list under the 64 KiB a netlink
	// attribute can hold.
	maxElemList = 32 << 10
)

func newWireBatch(f nftRenderer) *wireBatch {
	w := &wireBatch{f: f, rules: map[string][][]byte{}}
	w.begin(unix.NFNL_MSG_BATCH_BEGIN, 0, "batch")
	binary.BigEndian.PutUint16(w.buf[len(w.buf)-2:], unix.NFNL_SUBSYS_NFTABLES)
	w.end()
	return w
}

// nfproto is the family's number in netlink (nft's "ip" or "ip6").
func (f nftRenderer) nfproto() byte { return nfproto(f.fam) }

func nfproto(fam int) byte {
	if fam == 6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// reserve makes room for about n operations, so that a full sync's
// buffer is not grown, and copied, a doubling at a time.
func (w *wireBatch) reserve(n int) {
	w.buf = slices.Grow(w.buf, n*bytesPerOp)
}

// bytesPerOp is about what an operation of a large table takes: a map
// element 40 to 80 bytes, a rule 150 to 350.
const bytesPerOp = 96

// begin opens a message: the netlink header (length and sequence number
// filled in later) and nftables' own.
func (w *wireBatch) begin(typ uint16, flags uint16, what string) {
	w.msgs = append(w.msgs, len(w.buf))
	w.lines = append(w.lines, what)
	var h [unix.NLMSG_HDRLEN + 4]byte
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_REQUEST|flags)
	h[16] = w.f.nfproto()
	if typ == unix.NFNL_MSG_BATCH_BEGIN || typ == unix.NFNL_MSG_BATCH_END {
		h[16] = unix.AF_UNSPEC
	}
	w.buf = append(w.buf, h[:]...)
}

func (w *wireBatch) end() {
	start := w.msgs[len(w.msgs)-1]
	binary.NativeEndian.PutUint32(w.buf[start:], uint32(len(w.buf)-start))
}

func (w *wireBatch) msg(typ uint16, flags uint16, what string) {
	w.closeElements()
	w.begin(nfnlSubsysNFTables|typ, flags, what)
}

// attr appends one attribute, padded to 4 bytes.
func (w *wireBatch) attr(typ uint16, data []byte) {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	w.buf = append(w.buf, h[:]...)
	w.buf = append(w.buf, data...)
	w.pad()
}

func (w *wireBatch) pad() {
	for len(w.buf)%4 != 0 {
		w.buf = append(w.buf, 0)
	}
}

func (w *wireBatch) str(typ uint16, s string) { w.attr(typ, append([]byte(s), 0)) }

func (w *wireBatch) u32(typ uint16, v uint32) { w.attr(typ, binary.BigEndian.AppendUint32(nil, v)) }

// nest opens a nested attribute; close finishes it.
func (w *wireBatch) nest(typ uint16) int {
	at := len(w.buf)
	w.buf = binary.NativeEndian.AppendUint16(w.buf, 0)
	w.buf = binary.NativeEndian.AppendUint16(w.buf, typ|unix.NLA_F_NESTED)
	return at
}

func (w *wireBatch) close(at int) {
	binary.NativeEndian.PutUint16(w.buf[at:], uint16(len(w.buf)-at))
}

func (w *wireBatch) table() { w.str(1, Table) } // NFTA_*_TABLE is 1 in every message here

// finish closes the batch; the buffer is then ready to send, unless an
// operation could not be encoded.
func (w *wireBatch) finish() error {
	if w.err != nil {
		return w.err
	}
	w.closeElements()
	w.begin(unix.NFNL_MSG_BATCH_END, 0, "batch")
	binary.BigEndian.PutUint16(w.buf[len(w.buf)-2:], unix.NFNL_SUBSYS_NFTABLES)
	w.end()
	w.done = true
	return nil
}

// ops is the number of messages between begin and end.
func (w *wireBatch) ops() int {
	if w.done {
		return len(w.msgs) - 2
	}
	return len(w.msgs) - 1
}

func (w *wireBatch) addTable(comment string) {
	w.msg(unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE, "add table")
	w.str(unix.NFTA_TABLE_NAME, Table)
	w.u32(unix.NFTA_TABLE_FLAGS, 0)
	if comment != "" {
		w.attr(nftaTableUserdata, udata(nil, 0, append([]byte(comment), 0))) // NFTNL_UDATA_TABLE_COMMENT
	}
	w.end()
}

var nftHooks = map[string]uint32{"prerouting": unix.NF_INET_PRE_ROUTING, "input": unix.NF_INET_LOCAL_IN,
	"forward": unix.NF_INET_FORWARD, "output": unix.NF_INET_LOCAL_OUT, "postrouting": unix.NF_INET_POST_ROUTING}

// addChain adds a chain, a base chain with its type, hook and priority.
func (w *wireBatch) addChain(c *knftables.Chain) error {
	w.msg(unix.NFT_MSG_NEWCHAIN, unix.NLM_F_CREATE, "add chain "+c.Name)
	w.table()
	w.str(unix.NFTA_CHAIN_NAME, c.Name)
	if c.Type != nil || c.Hook != nil || c.Priority != nil {
		if c.Type == nil || c.Hook == nil || c.Priority == nil {
			return fmt.Errorf("chain %s: a base chain needs a type, a hook and a priority", c.Name)
		}
		num, ok := nftHooks[string(*c.Hook)]
		if !ok {
			return fmt.Errorf("chain %s: hook %q: %w", c.Name, *c.Hook, errNotEncodable)
		}
		kf := knftables.IPv4Family
		if w.f.fam == 6 {
			kf = knftables.IPv6Family
		}
		prio, err := knftables.ParsePriority(kf, string(*c.Priority))
		if err != nil {
			return fmt.Errorf("chain %s: %w", c.Name, err)
		}
		at := w.nest(unix.NFTA_CHAIN_HOOK)
		w.u32(unix.NFTA_HOOK_HOOKNUM, num)
		w.u32(unix.NFTA_HOOK_PRIORITY, uint32(int32(prio)))
		w.close(at)
		w.str(unix.NFTA_CHAIN_TYPE, string(*c.Type))
	}
	w.end()
	return nil
}

// named is a message naming one object of the table: typ on the object
// whose name is attribute attr.
func (w *wireBatch) named(typ uint16, attr uint16, what, name string) {
	w.msg(typ, 0, what+" "+name)
	w.table()
	w.str(attr, name)
	w.end()
}

// flushChain deletes the chain's rules (a rule deletion naming no rule).
func (w *wireBatch) flushChain(name string) {
	w.named(unix.NFT_MSG_DELRULE, unix.NFTA_RULE_CHAIN, "flush chain", name)
}

func (w *wireBatch) deleteChain(name string) {
	w.named(unix.NFT_MSG_DELCHAIN, unix.NFTA_CHAIN_NAME, "delete chain", name)
}

func (w *wireBatch) addSet(name string, s setSpec) {
	w.setID++
	w.msg(unix.NFT_MSG_NEWSET, unix.NLM_F_CREATE, "add set "+name)
	w.table()
	w.str(unix.NFTA_SET_NAME, name)
	w.u32(unix.NFTA_SET_FLAGS, s.flags)
	w.u32(unix.NFTA_SET_KEY_TYPE, s.keyType)
	w.u32(unix.NFTA_SET_KEY_LEN, s.keyLen)
	if s.flags&unix.NFT_SET_MAP != 0 {
		w.u32(unix.NFTA_SET_DATA_TYPE, s.dataType)
		w.u32(unix.NFTA_SET_DATA_LEN, s.dataLen)
	}
	if s.timeoutMS > 0 {
		w.attr(unix.NFTA_SET_TIMEOUT, binary.BigEndian.AppendUint64(nil, s.timeoutMS))
	}
	w.u32(unix.NFTA_SET_ID, w.setID)
	w.attr(unix.NFTA_SET_USERDATA, s.udata)
	w.end()
}

// flushSet deletes the set's elements (an element deletion naming none).
func (w *wireBatch) flushSet(name string) {
	w.named(unix.NFT_MSG_DELSETELEM, unix.NFTA_SET_ELEM_LIST_SET, "flush set", name)
}

func (w *wireBatch) deleteSet(name string) {
	w.named(unix.NFT_MSG_DELSET, unix.NFTA_SET_NAME, "delete set", name)
}

// Element implements nftWriter: one element added or deleted, from the
// bytes it was built with; consecutive ones on the same set share a
// message.
func (w *wireBatch) Element(op, set string, e elem) {
	if w.err != nil {
		return
	}
	if e.kind == interval {
		// Intervals are written as their bounds once the set's run of
		// elements ends; only whole rewrites (after a flush) come here.
		if op != "add" {
			w.err = fmt.Errorf("set %s: %s of an interval: %w", set, op, errNotEncodable)
			return
		}
		if w.elemSet != set || w.elemOp != op {
			w.closeElements()
			w.elemOp, w.elemSet = op, set
		}
		w.intervals = append(w.intervals, e.span())
		return
	}
	w.openElements(op, set)
	at := w.elemKey(e.key(), 0)
	switch {
	case op != "add":
	case e.kind == verdictOf:
		dat := w.nest(unix.NFTA_SET_ELEM_DATA)
		vat := w.nest(unix.NFTA_DATA_VERDICT)
		w.attr(unix.NFTA_VERDICT_CODE, binary.BigEndian.AppendUint32(nil, uint32(e.code)))
		if c := e.chain(); c != "" {
			w.str(unix.NFTA_VERDICT_CHAIN, c)
		}
		w.close(vat)
		w.close(dat)
	case e.kind == dataOf:
		dat := w.nest(unix.NFTA_SET_ELEM_DATA)
		w.attr(unix.NFTA_DATA_VALUE, e.data())
		w.close(dat)
	}
	w.close(at)
}

func (w *wireBatch) openElements(op, set string) {
	if w.elemSet == set && w.elemOp == op && len(w.buf)-w.elemList < maxElemList {
		return
	}
	w.closeElements()
	w.elemList = w.beginElements(op, set)
	w.elemOp, w.elemSet = op, set
}

// beginElements opens a message adding or deleting elements of set and
// its element list, whose offset it returns.
func (w *wireBatch) beginElements(op, set string) int {
	typ, flags := uint16(unix.NFT_MSG_NEWSETELEM), uint16(unix.NLM_F_CREATE)
	if op == "delete" {
		typ, flags = unix.NFT_MSG_DELSETELEM, 0
	}
	w.begin(nfnlSubsysNFTables|typ, flags, op+" element "+set)
	w.table()
	w.str(unix.NFTA_SET_ELEM_LIST_SET, set)
	return w.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
}

// elemKey opens an element with its key and flags; the caller adds its
// data, if any, and closes it at the offset returned.
func (w *wireBatch) elemKey(key []byte, flags uint32) int {
	at := w.nest(unix.NFTA_LIST_ELEM)
	kat := w.nest(unix.NFTA_SET_ELEM_KEY)
	w.attr(unix.NFTA_DATA_VALUE, key)
	w.close(kat)
	if flags != 0 {
		w.u32(unix.NFTA_SET_ELEM_FLAGS, flags)
	}
	return at
}

// closeElements ends the element message being filled, writing a run of
// intervals as their bounds: each interval's start, and the address
// after its end as an element flagged as an end, from the lowest address
// up (as nft writes them).
func (w *wireBatch) closeElements() {
	if w.elemSet == "" {
		return
	}
	set, ivs := w.elemSet, w.intervals
	w.elemSet, w.elemOp, w.intervals = "", "", nil
	if ivs != nil {
		slices.SortFunc(ivs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		w.elemList = w.beginElements("add", set)
		for _, p := range ivs {
			w.close(w.elemKey(p.Addr().AsSlice(), 0))
			if last, ok := lastPlusOne(p); ok {
				w.close(w.elemKey(last, unix.NFT_SET_ELEM_INTERVAL_END))
			}
		}
	}
	w.close(w.elemList)
	w.end()
}

// lastPlusOne is the address after p's last; false past the end of the
// address space.
func lastPlusOne(p netip.Prefix) ([]byte, bool) {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return b, true
		}
	}
	return nil, false
}

// Rule implements nftWriter: the rule's expressions, encoded once per
// distinct rule (most Services' chains share their first rule).
func (w *wireBatch) Rule(chain string, r rule) {
	if w.err != nil {
		return
	}
	exprs, ok := w.rules[r.text]
	if !ok {
		var err error
		if exprs, err = r.encode(w.f.fam); err != nil {
			w.err = fmt.Errorf("add rule %s: %w", chain, err)
			return
		}
		w.rules[r.text] = exprs
	}
	w.msg(unix.NFT_MSG_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_APPEND, "add rule "+chain+" "+r.text)
	w.table()
	w.str(unix.NFTA_RULE_CHAIN, chain)
	at := w.nest(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range exprs {
		el := w.nest(unix.NFTA_LIST_ELEM)
		w.buf = append(w.buf, e...)
		w.pad()
		w.close(el)
	}
	w.close(at)
	w.end()
}

// errNotEncodable marks what the encoder does not know: the same
// operations then go to nft as text.
var errNotEncodable = errors.New("not encodable")

// The batch takes the operations transaction writes, as a knftables
// transaction does (see nftWriter); the first error stops it.

// Add implements nftWriter.
func (w *wireBatch) Add(obj knftables.Object) { w.op("add", obj) }

// Flush implements nftWriter.
func (w *wireBatch) Flush(obj knftables.Object) { w.op("flush", obj) }

// Delete implements nftWriter.
func (w *wireBatch) Delete(obj knftables.Object) { w.op("delete", obj) }

func (w *wireBatch) op(verb string, obj knftables.Object) {
	if w.err != nil {
		return
	}
	if err := w.encode(verb, obj); err != nil {
		w.err = fmt.Errorf("%s %T: %w", verb, obj, err)
	}
}

func (w *wireBatch) encode(verb string, obj knftables.Object) error {
	switch o := obj.(type) {
	case *knftables.Table:
		if verb != "add" || o.Handle != nil {
			break
		}
		comment := ""
		if o.Comment != nil {
			comment = *o.Comment
		}
		w.addTable(comment)
		return nil
	case *knftables.Chain:
		if o.Handle != nil || o.Device != nil || o.Comment != nil {
			break
		}
		switch verb {
		case "add":
			return w.addChain(o)
		case "flush":
			w.flushChain(o.Name)
			return nil
		case "delete":
			w.deleteChain(o.Name)
			return nil
		}
	case *knftables.Set:
		return w.set(verb, o.Name, false, o.Type, o.TypeOf, o.Flags, o.Timeout,
			o.GCInterval == nil && o.Size == nil && o.Policy == nil && o.AutoMerge == nil && o.Comment == nil && o.Handle == nil)
	case *knftables.Map:
		return w.set(verb, o.Name, true, o.Type, o.TypeOf, o.Flags, o.Timeout,
			o.GCInterval == nil && o.Size == nil && o.Policy == nil && o.Comment == nil && o.Handle == nil)
	}
	return errNotEncodable
}

func (w *wireBatch) set(verb, name string, isMap bool, typ, typeOf string, flags []knftables.SetFlag, timeout *time.Duration, plain bool) error {
	if !plain {
		return errNotEncodable
	}
	switch verb {
	case "add":
		s, err := w.f.setSpecOf(isMap, typ, typeOf, flags, timeout)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		w.addSet(name, s)
	case "flush":
		w.flushSet(name)
	case "delete":
		w.deleteSet(name)
	}
	return nil
}
