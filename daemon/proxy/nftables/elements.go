package nftables

import (
	"maps"
	"slices"
	"strings"
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
