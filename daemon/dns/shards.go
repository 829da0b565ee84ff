package dns

import (
	"hash/maphash"
	"maps"
)

// shardBits sets the shards of a shardMap: 256, so that at 10,000
// Services a change copies a shard of about 40 names.
const shardBits = 8

// shardMap is a map that a new zone shares with the last one but for the
// shards its changes touch: a zone is never modified once published
// (queries read it without a lock), and building the next one by copying
// the whole map made every endpoint change cost a walk of every Service.
type shardMap[K comparable, V any] struct {
	seed maphash.Seed
	m    [1 << shardBits]map[K]V
	n    int
}

func newShardMap[K comparable, V any]() *shardMap[K, V] {
	return &shardMap[K, V]{seed: maphash.MakeSeed()}
}

func (s *shardMap[K, V]) shard(k K) int {
	return int(maphash.Comparable(s.seed, k) & (1<<shardBits - 1))
}

func (s *shardMap[K, V]) get(k K) (V, bool) {
	v, ok := s.m[s.shard(k)][k]
	return v, ok
}

func (s *shardMap[K, V]) len() int { return s.n }

// shardEdit makes the next version of a shardMap: the shards it writes
// are its own copies, the others the last version's.
type shardEdit[K comparable, V any] struct {
	s     *shardMap[K, V]
	owned [1 << shardBits]bool
}

func editShards[K comparable, V any](from *shardMap[K, V]) *shardEdit[K, V] {
	next := *from
	return &shardEdit[K, V]{s: &next}
}

func (e *shardEdit[K, V]) own(i int) map[K]V {
	if !e.owned[i] {
		if e.s.m[i] == nil {
			e.s.m[i] = map[K]V{}
		} else {
			e.s.m[i] = maps.Clone(e.s.m[i])
		}
		e.owned[i] = true
	}
	return e.s.m[i]
}

func (e *shardEdit[K, V]) get(k K) (V, bool) { return e.s.get(k) }

func (e *shardEdit[K, V]) set(k K, v V) {
	m := e.own(e.s.shard(k))
	if _, had := m[k]; !had {
		e.s.n++
	}
	m[k] = v
}

func (e *shardEdit[K, V]) del(k K) {
	i := e.s.shard(k)
	if _, had := e.s.m[i][k]; !had {
		return
	}
	delete(e.own(i), k)
	e.s.n--
}
