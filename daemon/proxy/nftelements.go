package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"sigs.k8s.io/knftables"
)

// A partial sync that only swaps endpoints (a pod replaced by another,
// the most common change there is) changes elements of the endpoints maps
// and of the hairpin set, nothing else. The nft command would first read
// every chain of the table to resolve names (tens of milliseconds at ten
// thousand Services); written over netlink, the same change is one small
// kernel transaction. Anything else goes through nft.

// nftElement is one element to add or delete, as nft writes it.
type nftElement struct {
	set        string
	key, value string // value "" for a set's element
}

// elementsOnly returns the changes from before to after when they are
// changes of endpoints-map and hairpin elements only; ok is false when
// anything else changes.
func elementsOnly(before, after *nftRules) (del, add []nftElement, ok bool) {
	if len(before.chains) != len(after.chains) || !maps.Equal(before.affinity, after.affinity) {
		return nil, nil, false
	}
	for name, rules := range before.chains {
		if cur, had := after.chains[name]; !had || !slices.Equal(rules, cur) {
			return nil, nil, false
		}
	}
	if len(before.maps) != len(after.maps) || len(before.sets) != len(after.sets) {
		return nil, nil, false
	}
	for _, name := range sortedKeys(before.maps) {
		have := before.maps[name]
		want, had := after.maps[name]
		if !had {
			return nil, nil, false // a map comes or goes
		}
		if !strings.HasPrefix(name, mapEndpoints) {
			if !maps.Equal(have, want) {
				return nil, nil, false
			}
			continue
		}
		for _, k := range keysWhere(have, func(k, v string) bool { w, ok := want[k]; return !ok || w != v }) {
			del = append(del, nftElement{set: name, key: k})
		}
		for _, k := range keysWhere(want, func(k, v string) bool { h, ok := have[k]; return !ok || h != v }) {
			add = append(add, nftElement{set: name, key: k, value: want[k]})
		}
	}
	for name, have := range before.sets {
		want, had := after.sets[name]
		if !had {
			return nil, nil, false
		}
		if name != setHairpin {
			if !slices.Equal(have, want) {
				return nil, nil, false
			}
			continue
		}
		for _, k := range have {
			if !slices.Contains(want, k) {
				del = append(del, nftElement{set: name, key: k})
			}
		}
		for _, k := range want {
			if !slices.Contains(have, k) {
				add = append(add, nftElement{set: name, key: k})
			}
		}
	}
	return del, add, true
}

// writeElements deletes del and adds add in the family's table, in one
// kernel transaction, over conn: a lasting one, as closing a netlink
// socket waits for the kernel's RCU grace period (milliseconds).
func (f nftFamily) writeElements(conn *nftables.Conn, del, add []nftElement) error {
	table := &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
	if f.fam == 6 {
		table.Family = nftables.TableFamilyIPv6
	}
	// Every element is encoded before any is queued on conn: an element
	// that cannot be leaves nothing behind for the next write to send.
	type batch struct {
		set   string
		elems []nftables.SetElement
		write func(*nftables.Set, []nftables.SetElement) error
	}
	var batches []batch
	for _, op := range []struct {
		elems []nftElement
		write func(*nftables.Set, []nftables.SetElement) error
	}{{del, conn.SetDeleteElements}, {add, conn.SetAddElements}} {
		bySet := map[string][]nftables.SetElement{}
		for _, e := range op.elems {
			el, err := f.encode(e)
			if err != nil {
				return fmt.Errorf("%s element %q: %w", e.set, e.key, err)
			}
			bySet[e.set] = append(bySet[e.set], el)
		}
		for _, name := range sortedKeys(bySet) {
			batches = append(batches, batch{name, bySet[name], op.write})
		}
	}
	for _, b := range batches {
		s := &nftables.Set{Table: table, Name: b.set, IsMap: strings.HasPrefix(b.set, mapEndpoints)}
		if err := b.write(s, b.elems); err != nil {
			return fmt.Errorf("%s: %w", b.set, err)
		}
	}
	return conn.Flush()
}

// encode puts an element in the kernel's bytes: an endpoints map's key is
// the random number (a 32-bit integer in host order), its value the
// address and the port (in network order, padded to 4 bytes); a hairpin
// element is two addresses.
func (f nftFamily) encode(e nftElement) (nftables.SetElement, error) {
	addr := func(s string) ([]byte, error) {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || (a.Is4() != (f.fam == 4)) {
			return nil, fmt.Errorf("not an IPv%d address: %q", f.fam, s)
		}
		return a.AsSlice(), nil
	}
	if e.set == setHairpin {
		a, b, _ := strings.Cut(e.key, " . ")
		x, err := addr(a)
		if err != nil {
			return nftables.SetElement{}, err
		}
		y, err := addr(b)
		if err != nil {
			return nftables.SetElement{}, err
		}
		return nftables.SetElement{Key: append(x, y...)}, nil
	}
	n, err := strconv.ParseUint(e.key, 10, 32)
	if err != nil {
		return nftables.SetElement{}, err
	}
	el := nftables.SetElement{Key: binary.NativeEndian.AppendUint32(nil, uint32(n))}
	if e.value == "" {
		return el, nil
	}
	a, p, _ := strings.Cut(e.value, " . ")
	ip, err := addr(a)
	if err != nil {
		return el, err
	}
	port, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
	if err != nil {
		return el, fmt.Errorf("port %q: %w", p, err)
	}
	el.Val = append(binary.BigEndian.AppendUint16(ip, uint16(port)), 0, 0)
	return el, nil
}

// runNFT runs the transaction through nft, with each run of element
// commands on one set joined into commands of up to maxBatch elements:
// nft evaluates one command with a thousand elements far faster than a
// thousand commands (a cold sync at 10,000 Services loads in about two
// thirds of the time).
func runNFT(ctx context.Context, tx *knftables.Transaction) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	// Streamed: the batched text is never held whole beside the
	// transaction's. Text that could not be written whole must not reach
	// nft as a shorter transaction: nft is stopped before it sees the end.
	werr := batchElements(in, tx.String())
	if werr != nil {
		_ = cmd.Process.Kill()
	}
	_ = in.Close()
	if err := cmd.Wait(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("nft: %w: %s", err, msg)
		}
		return fmt.Errorf("nft: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("nft: writing the transaction: %w", werr)
	}
	return nil
}

const maxBatch = 1000

// batchElements writes text to w with consecutive "add element S { e }"
// (or delete) lines on one set S joined into "add element S { e1, e2, … }".
func batchElements(w io.Writer, text string) error {
	b := bufio.NewWriter(w)
	// A bufio.Writer keeps its first error; Flush returns it.
	put := func(parts ...string) {
		for _, p := range parts {
			_, _ = b.WriteString(p)
		}
	}
	prefix, n := "", 0
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		head, elem, ok := strings.Cut(line, " { ")
		ok = ok && strings.HasSuffix(elem, " }") && (strings.HasPrefix(head, "add element ") || strings.HasPrefix(head, "delete element "))
		if ok && head == prefix && n < maxBatch {
			put(", ")
			put(strings.TrimSuffix(elem, " }"))
			n++
			continue
		}
		if prefix != "" {
			put(" }\n")
			prefix = ""
		}
		if !ok {
			put(line)
			put("\n")
			continue
		}
		prefix, n = head, 1
		put(head)
		put(" { ")
		put(strings.TrimSuffix(elem, " }"))
	}
	if prefix != "" {
		put(" }\n")
	}
	return b.Flush()
}
