package nftwire

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// Batch is one kernel transaction being built: netlink messages in one
// buffer, between a batch begin and end, on one table of one family.
type Batch struct {
	family byte
	table  string
	buf    []byte
	msgs   []int    // each message's offset in buf
	what   []string // what each message does, for errors
	setID  uint32
	// The element message being filled, if any.
	elemOp, elemSet string
	elemList        int // offset of its element list
	intervals       []netip.Prefix
	done            bool // finished
}

// Element operations.
const (
	opAdd    = "add"
	opDelete = "delete"
)

const (
	nfnlSubsysNFTables = unix.NFNL_SUBSYS_NFTABLES << 8
	// maxElemList keeps an element list under the 64 KiB a netlink
	// attribute can hold.
	maxElemList = 32 << 10
	// nftaTableUserdata is NFTA_TABLE_USERDATA, which x/sys/unix does not
	// name.
	nftaTableUserdata = 6
	// bytesPerOp is about what an operation of a large table takes: a map
	// element 40 to 80 bytes, a rule 150 to 350.
	bytesPerOp = 96
)

// NewBatch starts a transaction on the table of the family
// (unix.NFPROTO_IPV4 or unix.NFPROTO_IPV6).
func NewBatch(family byte, table string) *Batch {
	b := &Batch{family: family, table: table}
	b.batchMark(unix.NFNL_MSG_BATCH_BEGIN)
	return b
}

// Reserve makes room for about n operations, so that a large
// transaction's buffer is not grown, and copied, a doubling at a time.
func (b *Batch) Reserve(n int) {
	b.buf = slices.Grow(b.buf, n*bytesPerOp)
}

// Ops is the number of operations in the batch.
func (b *Batch) Ops() int {
	if b.done {
		return len(b.msgs) - 2
	}
	n := len(b.msgs) - 1
	if b.elemSet != "" && b.intervals != nil {
		n++ // the intervals' message, written when the run ends
	}
	return n
}

// Finish closes the batch; it is then ready to send.
func (b *Batch) Finish() {
	if b.done {
		return
	}
	b.closeElements()
	b.batchMark(unix.NFNL_MSG_BATCH_END)
	b.done = true
}

// batchMark is the message that begins or ends a batch.
func (b *Batch) batchMark(typ uint16) {
	b.begin(typ, 0, "batch")
	binary.BigEndian.PutUint16(b.buf[len(b.buf)-2:], unix.NFNL_SUBSYS_NFTABLES)
	b.end()
}

// begin opens a message: the netlink header (length and sequence number
// filled in later) and nftables' own.
func (b *Batch) begin(typ uint16, flags uint16, what string) {
	b.msgs = append(b.msgs, len(b.buf))
	b.what = append(b.what, what)
	var h [unix.NLMSG_HDRLEN + 4]byte
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_REQUEST|flags)
	h[16] = b.family
	if typ == unix.NFNL_MSG_BATCH_BEGIN || typ == unix.NFNL_MSG_BATCH_END {
		h[16] = unix.AF_UNSPEC
	}
	b.buf = append(b.buf, h[:]...)
}

func (b *Batch) end() {
	start := b.msgs[len(b.msgs)-1]
	binary.NativeEndian.PutUint32(b.buf[start:], uint32(len(b.buf)-start))
}

// msg opens a message of nftables' on the batch's table.
func (b *Batch) msg(typ uint16, flags uint16, what string) {
	b.closeElements()
	b.begin(nfnlSubsysNFTables|typ, flags, what)
	b.str(1, b.table) // NFTA_*_TABLE is 1 in every message but a table's
}

// attr appends one attribute, padded to 4 bytes.
func (b *Batch) attr(typ uint16, data []byte) {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b.buf = append(b.buf, h[:]...)
	b.buf = append(b.buf, data...)
	b.pad()
}

func (b *Batch) pad() {
	for len(b.buf)%4 != 0 {
		b.buf = append(b.buf, 0)
	}
}

func (b *Batch) str(typ uint16, s string) { b.attr(typ, append([]byte(s), 0)) }

func (b *Batch) u32(typ uint16, v uint32) { b.attr(typ, binary.BigEndian.AppendUint32(nil, v)) }

// nest opens a nested attribute; close finishes it.
func (b *Batch) nest(typ uint16) int {
	at := len(b.buf)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, 0)
	b.buf = binary.NativeEndian.AppendUint16(b.buf, typ|unix.NLA_F_NESTED)
	return at
}

func (b *Batch) close(at int) {
	binary.NativeEndian.PutUint16(b.buf[at:], uint16(len(b.buf)-at))
}

// AddTable adds the table, with nft's comment.
func (b *Batch) AddTable(comment string) {
	b.closeElements()
	b.begin(nfnlSubsysNFTables|unix.NFT_MSG_NEWTABLE, unix.NLM_F_CREATE, "add table")
	b.str(unix.NFTA_TABLE_NAME, b.table)
	b.u32(unix.NFTA_TABLE_FLAGS, 0)
	if comment != "" {
		b.attr(nftaTableUserdata, Userdata(nil, 0, append([]byte(comment), 0))) // NFTNL_UDATA_TABLE_COMMENT
	}
	b.end()
}

// Hook is a base chain's place: its type ("filter", "nat"), hook (one of
// Hooks) and priority.
type Hook struct {
	Type     string
	Num      uint32
	Priority int32
}

// Hooks are nft's names of the hooks of the ip and ip6 families.
var Hooks = map[string]uint32{"prerouting": unix.NF_INET_PRE_ROUTING, "input": unix.NF_INET_LOCAL_IN,
	"forward": unix.NF_INET_FORWARD, "output": unix.NF_INET_LOCAL_OUT, "postrouting": unix.NF_INET_POST_ROUTING}

// AddChain adds a chain; a base chain when hook is not nil.
func (b *Batch) AddChain(name string, hook *Hook) {
	b.msg(unix.NFT_MSG_NEWCHAIN, unix.NLM_F_CREATE, "add chain "+name)
	b.str(unix.NFTA_CHAIN_NAME, name)
	if hook != nil {
		at := b.nest(unix.NFTA_CHAIN_HOOK)
		b.u32(unix.NFTA_HOOK_HOOKNUM, hook.Num)
		b.u32(unix.NFTA_HOOK_PRIORITY, uint32(hook.Priority))
		b.close(at)
		b.str(unix.NFTA_CHAIN_TYPE, hook.Type)
	}
	b.end()
}

// named is a message naming one object of the table: typ on the object
// whose name is attribute attr.
func (b *Batch) named(typ uint16, attr uint16, what, name string) {
	b.msg(typ, 0, what+" "+name)
	b.str(attr, name)
	b.end()
}

// FlushChain deletes the chain's rules (a rule deletion naming no rule).
func (b *Batch) FlushChain(name string) {
	b.named(unix.NFT_MSG_DELRULE, unix.NFTA_RULE_CHAIN, "flush chain", name)
}

// DeleteChain deletes an empty chain no rule refers to.
func (b *Batch) DeleteChain(name string) {
	b.named(unix.NFT_MSG_DELCHAIN, unix.NFTA_CHAIN_NAME, "delete chain", name)
}

// AddRule appends a rule to the chain: its expressions, each as
// github.com/google/nftables/expr.Marshal encodes it; what is the rule as
// errors name it.
func (b *Batch) AddRule(chain string, exprs [][]byte, what string) {
	b.msg(unix.NFT_MSG_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_APPEND, "add rule "+chain+" "+what)
	b.str(unix.NFTA_RULE_CHAIN, chain)
	at := b.nest(unix.NFTA_RULE_EXPRESSIONS)
	for _, e := range exprs {
		el := b.nest(unix.NFTA_LIST_ELEM)
		b.buf = append(b.buf, e...)
		b.pad()
		b.close(el)
	}
	b.close(at)
	b.end()
}
