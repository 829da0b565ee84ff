package nftables

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/daemon/nftwire"
)

// wireTx writes a transaction's operations as the kernel takes them,
// into one nftwire batch: the table's objects from their declarations,
// rules from their statements, elements from the bytes they were built
// with. TestWireMatchesNFT loads the same transactions through nft and
// this way and compares what the kernels hold.
type wireTx struct {
	b   *nftwire.Batch
	fam int
	// rules holds each rule text's expressions as encoded: most rules
	// recur (every Service's masquerade test is the same).
	rules map[string][][]byte
	err   error // the first operation that could not be written
}

func newWireTx(fam int) *wireTx {
	return &wireTx{b: nftwire.NewBatch(nfproto(fam), Table), fam: fam, rules: map[string][][]byte{}}
}

// nfproto is the family's number in netlink (nft's "ip" or "ip6").
func nfproto(fam int) byte {
	if fam == 6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// finish closes the batch; it fails if an operation could not be
// written.
func (w *wireTx) finish() error {
	if w.err != nil {
		return w.err
	}
	w.b.Finish()
	return nil
}

// AddTable implements nftWriter.
func (w *wireTx) AddTable(comment string) { w.b.AddTable(comment) }

// AddChain implements nftWriter.
func (w *wireTx) AddChain(c chainDecl) {
	var hook *nftwire.Hook
	if c.base != nil {
		hook = &c.base.wire
	}
	w.b.AddChain(c.name, hook)
}

// FlushChain implements nftWriter.
func (w *wireTx) FlushChain(name string) { w.b.FlushChain(name) }

// DeleteChain implements nftWriter.
func (w *wireTx) DeleteChain(name string) { w.b.DeleteChain(name) }

// AddSet implements nftWriter.
func (w *wireTx) AddSet(d setDecl) { w.b.AddSet(d.name, d.wire) }

// FlushSet implements nftWriter.
func (w *wireTx) FlushSet(name string, _ bool) { w.b.FlushSet(name) }

// DeleteSet implements nftWriter.
func (w *wireTx) DeleteSet(name string, _ bool) { w.b.DeleteSet(name) }

// Element implements nftWriter.
func (w *wireTx) Element(op, set string, e elem) {
	switch {
	case op == "delete" && e.kind == interval:
		// An interval set is only ever written whole (its addresses are
		// the node's, fixed at start): a deletion is a bug, not a guess.
		w.fail(fmt.Errorf("delete element %s %s: an interval is only written whole", set, e.text()))
	case op == "delete":
		w.b.DeleteElement(set, e.key())
	case e.kind == interval:
		w.b.AddInterval(set, e.span())
	case e.kind == verdictOf:
		w.b.AddVerdict(set, e.key(), e.code, e.chain())
	case e.kind == dataOf:
		w.b.AddElement(set, e.key(), e.data())
	default:
		w.b.AddElement(set, e.key(), nil)
	}
}

// Rule implements nftWriter: the rule's expressions, encoded once per
// distinct rule (most Services' chains share their first rule).
func (w *wireTx) Rule(chain string, r rule) {
	exprs, ok := w.rules[r.text]
	if !ok {
		var err error
		if exprs, err = r.encode(w.fam); err != nil {
			w.fail(fmt.Errorf("add rule %s: %w", chain, err))
			return
		}
		w.rules[r.text] = exprs
	}
	w.b.AddRule(chain, exprs, r.text)
}

func (w *wireTx) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}
