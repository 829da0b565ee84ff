package nftwire

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// Elements: consecutive additions (or deletions) on one set share a
// message, as nft writes them.

// AddElement adds an element to a set (data nil) or a data map.
func (b *Batch) AddElement(set string, key, data []byte) {
	b.openElements(opAdd, set)
	at := b.elemKey(key, 0)
	if data != nil {
		dat := b.nest(unix.NFTA_SET_ELEM_DATA)
		b.attr(unix.NFTA_DATA_VALUE, data)
		b.close(dat)
	}
	b.close(at)
}

// AddVerdict adds an element to a verdict map: the verdict's code
// (unix.NFT_GOTO, unix.NFT_JUMP, Drop, Accept) and, for a jump or goto,
// its chain.
func (b *Batch) AddVerdict(set string, key []byte, code int32, chain string) {
	b.openElements(opAdd, set)
	at := b.elemKey(key, 0)
	dat := b.nest(unix.NFTA_SET_ELEM_DATA)
	vat := b.nest(unix.NFTA_DATA_VERDICT)
	b.attr(unix.NFTA_VERDICT_CODE, binary.BigEndian.AppendUint32(nil, uint32(code)))
	if chain != "" {
		b.str(unix.NFTA_VERDICT_CHAIN, chain)
	}
	b.close(vat)
	b.close(dat)
	b.close(at)
}

// Verdicts without a chain.
const (
	Drop   int32 = 0 // NF_DROP
	Accept int32 = 1 // NF_ACCEPT
)

// DeleteElement deletes the element of key from a set or map.
func (b *Batch) DeleteElement(set string, key []byte) {
	b.openElements(opDelete, set)
	b.close(b.elemKey(key, 0))
}

// AddInterval adds a range to an interval set. A set's run of intervals
// is written as their bounds when the run ends: each interval's start,
// and the address after its end as an element flagged as an end, from
// the lowest address up (as nft writes them). Only a whole set is written
// so (after a flush, or once declared): the bounds of a run do not merge
// with intervals the set holds already.
func (b *Batch) AddInterval(set string, p netip.Prefix) {
	if b.elemSet != set || b.elemOp != opAdd || b.intervals == nil {
		b.closeElements()
		b.elemOp, b.elemSet = opAdd, set
	}
	b.intervals = append(b.intervals, p.Masked())
}

// FlushSet deletes the elements of a set or map (an element deletion
// naming none).
func (b *Batch) FlushSet(name string) {
	b.named(unix.NFT_MSG_DELSETELEM, unix.NFTA_SET_ELEM_LIST_SET, "flush set", name)
}

// DeleteSet deletes a set or map no rule refers to.
func (b *Batch) DeleteSet(name string) {
	b.named(unix.NFT_MSG_DELSET, unix.NFTA_SET_NAME, "delete set", name)
}

func (b *Batch) openElements(op, set string) {
	if b.elemSet == set && b.elemOp == op && b.intervals == nil && len(b.buf)-b.elemList < maxElemList {
		return
	}
	b.closeElements()
	b.elemList = b.beginElements(op, set)
	b.elemOp, b.elemSet = op, set
}

// beginElements opens a message adding or deleting elements of set and
// its element list, whose offset it returns.
func (b *Batch) beginElements(op, set string) int {
	typ, flags := uint16(unix.NFT_MSG_NEWSETELEM), uint16(unix.NLM_F_CREATE)
	if op == opDelete {
		typ, flags = unix.NFT_MSG_DELSETELEM, 0
	}
	b.begin(nfnlSubsysNFTables|typ, flags, op+" element "+set)
	b.str(1, b.table)
	b.str(unix.NFTA_SET_ELEM_LIST_SET, set)
	return b.nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
}

// elemKey opens an element with its key and flags; the caller adds its
// data, if any, and closes it at the offset returned.
func (b *Batch) elemKey(key []byte, flags uint32) int {
	at := b.nest(unix.NFTA_LIST_ELEM)
	kat := b.nest(unix.NFTA_SET_ELEM_KEY)
	b.attr(unix.NFTA_DATA_VALUE, key)
	b.close(kat)
	if flags != 0 {
		b.u32(unix.NFTA_SET_ELEM_FLAGS, flags)
	}
	return at
}

// closeElements ends the element message being filled, writing a run of
// intervals as their bounds.
func (b *Batch) closeElements() {
	if b.elemSet == "" {
		return
	}
	set, ivs := b.elemSet, b.intervals
	b.elemSet, b.elemOp, b.intervals = "", "", nil
	if ivs != nil {
		slices.SortFunc(ivs, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		b.elemList = b.beginElements(opAdd, set)
		for _, p := range ivs {
			b.close(b.elemKey(p.Addr().AsSlice(), 0))
			if last, ok := lastPlusOne(p); ok {
				b.close(b.elemKey(last, unix.NFT_SET_ELEM_INTERVAL_END))
			}
		}
	}
	b.close(b.elemList)
	b.end()
}

// lastPlusOne is the address after p's last; false past the end of the
// address space.
func lastPlusOne(p netip.Prefix) ([]byte, bool) {
	a := p.Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	for i := len(a) - 1; i >= 0; i-- {
		a[i]++
		if a[i] != 0 {
			return a, true
		}
	}
	return nil, false
}
