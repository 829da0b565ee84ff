package cluster

import (
	"maps"
	"slices"
	"sync"

	"k8s.io/client-go/tools/cache"
)

func valuesOf[T any](st *store) []T {
	ptrs := pointersOf[T](st)
	out := make([]T, len(ptrs))
	for i, p := range ptrs {
		out[i] = *p
	}
	return out
}

// pointersOf lists st's objects of type T in key order: two snapshots of
// an unchanged store compare equal, so a change of one kind does not wake
// the controllers of another, and every controller may walk two
// snapshots side by side.
func pointersOf[T any](st *store) []*T {
	st.mu.Lock()
	defer st.mu.Unlock()
	objs := st.sortedLocked()
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(*T); ok {
			out = append(out, t)
		}
	}
	return out
}

// store holds one kind of object as its reflector keeps it, and wakes
// the snapshot loop on every change that matters (every change, when
// matters is nil). Stored objects are never modified: snapshots share
// them.
type store struct {
	mu   sync.Mutex
	objs map[string]any
	// The last listing in key order, and the keys written or deleted
	// since: the next listing changes only those, so that a snapshot
	// under a stream of changes does not sort every key again (at 10,000
	// Services that sort was a quarter of skeind's CPU during a bulk
	// load). relist is set by a complete list, which may change any key.
	keys    []string
	vals    []any
	touched map[string]struct{}
	relist  bool
	synced  chan struct{} // closed by the first complete list
	once    sync.Once
	poke    func()
	matters func(old, cur any) bool
}

func newStore(poke func(), matters func(old, cur any) bool) *store {
	return &store{objs: map[string]any{}, touched: map[string]struct{}{}, synced: make(chan struct{}), poke: poke, matters: matters}
}

func (st *store) Add(obj any) error { return st.put(obj) }

func (st *store) Update(obj any) error { return st.put(obj) }

func (st *store) put(obj any) error {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return err
	}
	trim(obj)
	st.mu.Lock()
	old, had := st.objs[key]
	st.objs[key] = obj
	st.touched[key] = struct{}{}
	st.mu.Unlock()
	if !had || st.matters == nil || st.matters(old, obj) {
		st.poke()
	}
	return nil
}

func (st *store) Delete(obj any) error {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return err
	}
	st.mu.Lock()
	delete(st.objs, key)
	st.touched[key] = struct{}{}
	st.mu.Unlock()
	st.poke()
	return nil
}

// Replace takes a complete list: the first one, and the relist after a
// lost watch (an outage), which may hold any change.
func (st *store) Replace(list []any, _ string) error {
	objs := make(map[string]any, len(list))
	for _, obj := range list {
		key, err := cache.MetaNamespaceKeyFunc(obj)
		if err != nil {
			return err
		}
		trim(obj)
		objs[key] = obj
	}
	st.mu.Lock()
	st.objs, st.relist = objs, true
	clear(st.touched)
	st.mu.Unlock()
	st.once.Do(func() { close(st.synced) })
	st.poke()
	return nil
}

func (st *store) Resync() error { return nil }

// sortedLocked returns the objects in key order. The slice is the
// store's: the caller copies what it keeps before unlocking.
func (st *store) sortedLocked() []any {
	if st.relist {
		st.keys = slices.Sorted(maps.Keys(st.objs))
		st.vals = make([]any, len(st.keys))
		for i, k := range st.keys {
			st.vals[i] = st.objs[k]
		}
		st.relist = false
		clear(st.touched) // listed as they are now
		return st.vals
	}
	var added []string
	var gone []int
	for k := range st.touched {
		i, found := slices.BinarySearch(st.keys, k)
		obj, live := st.objs[k]
		switch {
		case found && live:
			st.vals[i] = obj
		case found:
			gone = append(gone, i)
		case live:
			added = append(added, k)
		}
	}
	clear(st.touched)
	if len(added) == 0 && len(gone) == 0 {
		return st.vals
	}
	slices.Sort(added)
	slices.Sort(gone)
	n := len(st.keys) - len(gone) + len(added)
	keys, vals := make([]string, 0, n), make([]any, 0, n)
	for i, a := 0, 0; i < len(st.keys) || a < len(added); {
		switch {
		case len(gone) > 0 && gone[0] == i:
			gone, i = gone[1:], i+1
		case a < len(added) && (i == len(st.keys) || added[a] < st.keys[i]):
			keys, vals = append(keys, added[a]), append(vals, st.objs[added[a]])
			a++
		default:
			keys, vals = append(keys, st.keys[i]), append(vals, st.vals[i])
			i++
		}
	}
	st.keys, st.vals = keys, vals
	return vals
}
