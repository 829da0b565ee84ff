package nftables

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// A partial sync that only swaps endpoints (a pod replaced by another,
// the most common change there is) changes elements of the endpoints maps
// and of the hairpin set, nothing else: those are written as elements,
// without rendering the transaction's text.

// nftElement is one element to add or delete, and its set.
type nftElement struct {
	set string
	elem
}

// elementsOnly returns the changes from before to after when they are
// changes of endpoints-map and hairpin elements only; ok is false when
// anything else changes.
func elementsOnly(before, after *nftRules) (del, add []nftElement, ok bool) {
	if len(before.chains) != len(after.chains) || !maps.Equal(before.affinity, after.affinity) {
		return nil, nil, false
	}
	for name, rules := range before.chains {
		if cur, had := after.chains[name]; !had || !sameRules(rules, cur) {
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
		for _, k := range keysWhere(have, func(k string, v elem) bool { w, ok := want[k]; return !ok || w != v }) {
			del = append(del, nftElement{name, have[k]})
		}
		for _, k := range keysWhere(want, func(k string, v elem) bool { h, ok := have[k]; return !ok || h != v }) {
			add = append(add, nftElement{name, want[k]})
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
		for _, e := range have {
			if !slices.Contains(want, e) {
				del = append(del, nftElement{name, e})
			}
		}
		for _, e := range want {
			if !slices.Contains(have, e) {
				add = append(add, nftElement{name, e})
			}
		}
	}
	return del, add, true
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
