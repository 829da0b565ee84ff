package dns

import (
	"container/list"
	"sync"
	"time"

	miekg "github.com/miekg/dns"
)

// cache holds the upstreams' answers, positive and negative, shared by
// every pod of the node: bounded in entries and in bytes (an entry is
// kept packed, so its size is what it holds), each kept for its TTL
// within [minTTL, maxTTL], the least recently used dropped first.
// Written here on container/list rather than with a cache library: the
// well-kept ones (hashicorp/golang-lru's expirable LRU among them) bound
// the number of entries but not their bytes, and a node's memory is
// what the bound is for.
type cache struct {
	mu         sync.Mutex
	byKey      map[cacheKey]*list.Element
	lru        list.List // of *cacheEntry, most recent first
	bytes      int
	maxEntries int
	maxBytes   int
	minTTL     time.Duration
	maxTTL     time.Duration
	evicted    func() // counts an eviction
}

// cacheKey is a question: an answer depends on the name, type and
// class, and on whether DNSSEC records were asked for.
type cacheKey struct {
	name          string // lower case
	qtype, qclass uint16
	do, cd        bool
}

type cacheEntry struct {
	key     cacheKey
	packed  []byte
	stored  time.Time
	expires time.Time
}

func newCache(maxEntries, maxBytes int, minTTL, maxTTL time.Duration, evicted func()) *cache {
	return &cache{byKey: map[cacheKey]*list.Element{}, maxEntries: maxEntries, maxBytes: maxBytes,
		minTTL: minTTL, maxTTL: maxTTL, evicted: evicted}
}

// get returns a copy of the answer to the question, its TTLs lowered by
// the time it spent in the cache; nil when there is none or it expired.
func (c *cache) get(k cacheKey, now time.Time) *miekg.Msg {
	c.mu.Lock()
	el, ok := c.byKey[k]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.remove(el)
		c.mu.Unlock()
		return nil
	}
	c.lru.MoveToFront(el)
	packed, stored := e.packed, e.stored
	c.mu.Unlock()
	m := new(miekg.Msg)
	if err := m.Unpack(packed); err != nil {
		return nil
	}
	age := uint32(now.Sub(stored) / time.Second)
	for _, sec := range [][]miekg.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == miekg.TypeOPT {
				continue
			}
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m
}

// put stores an answer for as long as its TTL says: the smallest TTL of
// its answer, or for a negative answer its SOA's negative TTL. What is
// not an answer (a failure, a truncated reply) is not stored.
func (c *cache) put(k cacheKey, m *miekg.Msg, now time.Time) {
	if m.Truncated || (m.Rcode != miekg.RcodeSuccess && m.Rcode != miekg.RcodeNameError) {
		return
	}
	ttl, ok := answerTTL(m)
	if !ok {
		return
	}
	d := min(max(time.Duration(ttl)*time.Second, c.minTTL), c.maxTTL)
	if d <= 0 {
		return
	}
	packed, err := m.Pack()
	if err != nil || len(packed) > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		c.remove(el)
	}
	e := &cacheEntry{key: k, packed: packed, stored: now, expires: now.Add(d)}
	c.byKey[k] = c.lru.PushFront(e)
	c.bytes += len(packed)
	for len(c.byKey) > c.maxEntries || c.bytes > c.maxBytes {
		c.remove(c.lru.Back())
		c.evicted()
	}
}

func (c *cache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.byKey, e.key)
	c.bytes -= len(e.packed)
}

// len is the number of answers held.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey)
}

// answerTTL is how long an answer may be kept: its records' smallest
// TTL; for a negative answer the smaller of its SOA's TTL and minimum.
func answerTTL(m *miekg.Msg) (uint32, bool) {
	if len(m.Answer) > 0 {
		ttl := m.Answer[0].Header().Ttl
		for _, rr := range m.Answer[1:] {
			ttl = min(ttl, rr.Header().Ttl)
		}
		return ttl, true
	}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*miekg.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}
