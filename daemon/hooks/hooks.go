// Package hooks owns skein's jumps from the built-in iptables chains
// (PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING) into skein's own
// chains. Two controllers have chains there (the Service proxy's
// iptables backend and the masquerade controller's SKEIN-FORWARD), and
// the order of their jumps matters: the proxy must refuse a new
// connection to a Service without endpoints before SKEIN-FORWARD
// accepts the pod's traffic. Each controller asks the one Owner, which
// places every jump in the fixed order below, above everything that is
// not skein's, and edits one chain at a time.
package hooks

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// Order is where skein's jumps stand in a built-in chain, first first.
var Order = []string{"SKEIN-SERVICES", "SKEIN-POSTROUTING", "SKEIN-FORWARD"}

// Jump is one rule in a built-in chain that jumps to a chain of skein's:
// Rule is the rule's match and "-j" target, as iptables takes it.
type Jump struct {
	Table, Chain string
	Rule         []string
}

func (j Jump) target() string {
	if i := slices.Index(j.Rule, "-j"); i >= 0 && i+1 < len(j.Rule) {
		return j.Rule[i+1]
	}
	return ""
}

// Owner places and removes the jumps, one edit of a chain at a time.
// The zero value is ready.
type Owner struct {
	mu sync.Mutex
}

// Chains is what the Owner needs of iptables (one family's).
type Chains interface {
	List(table, chain string) ([]string, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	Delete(table, chain string, rulespec ...string) error
}

// New opens iptables of family fam (4 or 6) for the Owner.
func New(fam int) (Chains, error) {
	proto := iptables.ProtocolIPv4
	if fam == 6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ipt, nil
}

// rank is a target's place in Order; a skein chain not in it counts as
// first.
func rank(target string) int { return max(slices.Index(Order, target), 0) }

// listed is one of skein's jumps in a built-in chain: its position
// (from 1, counting every rule), its target and its rule as listed.
type listed struct {
	pos    int
	target string
	spec   []string
}

// skeinJumps lists j's chain and returns skein's jumps in it.
func skeinJumps(ipt Chains, j Jump) ([]listed, error) {
	rules, err := ipt.List(j.Table, j.Chain)
	if err != nil {
		return nil, fmt.Errorf("list %s %s: %w", j.Table, j.Chain, err)
	}
	var out []listed
	pos := 0
	for _, r := range rules {
		f := strings.Fields(r)
		if len(f) == 0 || f[0] != "-A" {
			continue
		}
		pos++
		if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) && strings.HasPrefix(f[i+1], "SKEIN-") {
			out = append(out, listed{pos: pos, target: f[i+1], spec: f[2:]})
		}
	}
	return out, nil
}

// Ensure makes j the one jump to its target in its chain, in its place:
// below every skein jump that Order puts before it, above every other
// rule. A jump in its place is left alone, so a sync that changes
// nothing writes nothing.
func (o *Owner) Ensure(ipt Chains, j Jump) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	jumps, err := skeinJumps(ipt, j)
	if err != nil {
		return err
	}
	target := j.target()
	var ours []listed // the jumps to target
	before := 0       // the last position of a skein jump that goes before
	after := 0        // the first position of a skein jump that goes after
	for _, l := range jumps {
		switch {
		case l.target == target:
			ours = append(ours, l)
		case rank(l.target) <= rank(target):
			before = l.pos
		case after == 0:
			after = l.pos
		}
	}
	if len(ours) == 1 && ours[0].pos > before && (after == 0 || ours[0].pos < after) {
		return nil
	}
	// Out of place, or more than one: all go, one comes back.
	at := before + 1
	for _, l := range ours {
		if err := ipt.Delete(j.Table, j.Chain, l.spec...); err != nil {
			return fmt.Errorf("move the %s %s jump to %s: %w", j.Table, j.Chain, target, err)
		}
		if l.pos < before {
			at--
		}
	}
	if err := ipt.Insert(j.Table, j.Chain, at, j.Rule...); err != nil {
		return fmt.Errorf("add the %s %s jump to %s: %w", j.Table, j.Chain, target, err)
	}
	return nil
}

// Remove deletes every jump like j; one that is not there is no error.
func (o *Owner) Remove(ipt Chains, j Jump) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	jumps, err := skeinJumps(ipt, j)
	if err != nil {
		return err
	}
	for _, l := range jumps {
		if l.target != j.target() {
			continue
		}
		if err := ipt.Delete(j.Table, j.Chain, l.spec...); err != nil {
			return fmt.Errorf("remove the %s %s jump to %s: %w", j.Table, j.Chain, l.target, err)
		}
	}
	return nil
}
