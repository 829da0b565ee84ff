package dns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	miekg "github.com/miekg/dns"
)

// handler answers queries: the cluster zone from the latest zone, the
// reverse names of its addresses, everything else through the cache and
// the upstreams. Many goroutines run it at once.
type handler struct {
	zone atomic.Pointer[Zone]
	// zoned is closed when the first zone is stored; a query for the
	// zone before it waits up to firstWait (default firstZoneWait).
	zoned     chan struct{}
	zonedOnce sync.Once
	firstWait time.Duration
	origin    string // the zone's, known before the first snapshot
	pods      bool
	fwd       *forwarder
	cache     *cache
	inflight  chan struct{}
	metrics   *Metrics
	// probes are the loop probes in flight: a probe's name, and the
	// upstream it was sent to.
	probes sync.Map
}

// ServeDNS implements miekg.Handler.
func (h *handler) ServeDNS(w miekg.ResponseWriter, req *miekg.Msg) {
	start := time.Now()
	h.reply(w, req, h.resolve(context.Background(), req), start)
}

func refused(req *miekg.Msg) *miekg.Msg {
	m := new(miekg.Msg)
	m.SetRcode(req, miekg.RcodeRefused)
	return m
}

// reply writes m, cut to what the client can take over UDP (its EDNS0
// buffer size, or 512 bytes) with the truncation bit set, and counts it.
func (h *handler) reply(w miekg.ResponseWriter, req, m *miekg.Msg, start time.Time) {
	m.Id = req.Id
	size := 512
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), 512)
		if m.IsEdns0() == nil {
			m.SetEdns0(uint16(min(size, 1232)), false)
		}
	}
	if w.RemoteAddr().Network() == "tcp" {
		size = miekg.MaxMsgSize
	}
	m.Compress = true
	m.Truncate(size)
	_ = w.WriteMsg(m) // a client gone away: nothing to do
	qtype := "none"
	if len(req.Question) == 1 {
		qtype = typeLabel(req.Question[0].Qtype)
	}
	h.metrics.Queries.WithLabelValues(qtype, miekg.RcodeToString[m.Rcode]).Inc()
	h.metrics.Duration.Observe(time.Since(start).Seconds())
}

// firstZoneWait is how long a query for the zone waits for the first
// snapshot after skeind starts: it lists the cluster in well under a
// second, and a SERVFAIL meanwhile would fail a lookup that a moment's
// wait answers (a restarted skeind on an upgrade). Under resolvers'
// 5 s timeout, so that a client gives up on the wait, not on skeind.
const firstZoneWait = 3 * time.Second

// setZone publishes z.
func (h *handler) setZone(z *Zone) {
	h.zone.Store(z)
	h.zonedOnce.Do(func() { close(h.zoned) })
}

// firstZone waits for the first zone, nil when it does not come in time.
// Waiting questions share the bound of those waiting on an upstream: a
// flood at startup gets SERVFAIL at once past it, not a goroutine each.
func (h *handler) firstZone(ctx context.Context) *Zone {
	select {
	case h.inflight <- struct{}{}:
		defer func() { <-h.inflight }()
	default:
		h.metrics.Dropped.Inc()
		return h.zone.Load()
	}
	wait := h.firstWait
	if wait <= 0 {
		wait = firstZoneWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-h.zoned:
	case <-t.C:
	case <-ctx.Done():
	}
	return h.zone.Load()
}

// typeLabel keeps the metric's label values few: common types by name,
// the rest as "other".
func typeLabel(t uint16) string {
	switch t {
	case miekg.TypeA, miekg.TypeAAAA, miekg.TypeSRV, miekg.TypePTR, miekg.TypeCNAME, miekg.TypeTXT,
		miekg.TypeMX, miekg.TypeNS, miekg.TypeSOA, miekg.TypeANY, miekg.TypeHTTPS:
		return miekg.TypeToString[t]
	}
	return "other"
}

// resolve is the answer to a query.
func (h *handler) resolve(ctx context.Context, req *miekg.Msg) *miekg.Msg {
	m := new(miekg.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	switch {
	case req.Opcode != miekg.OpcodeQuery:
		m.Rcode = miekg.RcodeNotImplemented
		return m
	case len(req.Question) != 1:
		m.Rcode = miekg.RcodeFormatError
		return m
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		m.SetEdns0(1232, false)
		m.Rcode = miekg.RcodeBadVers
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case q.Qclass != miekg.ClassINET && q.Qclass != miekg.ClassANY,
		q.Qtype == miekg.TypeAXFR, q.Qtype == miekg.TypeIXFR:
		m.Rcode = miekg.RcodeRefused
		return m
	case h.isProbe(name):
		m.Rcode = miekg.RcodeNameError
		return m
	}
	z := h.zone.Load()
	if name == h.origin || strings.HasSuffix(name, "."+h.origin) {
		if z == nil {
			z = h.firstZone(ctx)
		}
		if z == nil {
			m.Rcode = miekg.RcodeServerFailure // never a wrong NXDOMAIN
			return m
		}
		z.answer(m, name, q.Qtype, h.pods)
		if len(m.Answer) == 1 && m.Answer[0].Header().Rrtype == miekg.TypeCNAME && req.RecursionDesired &&
			q.Qtype != miekg.TypeCNAME && q.Qtype != miekg.TypeANY {
			h.follow(ctx, m, req, z)
		}
		return m
	}
	if q.Qtype == miekg.TypePTR && z != nil {
		if a, ok := reverseName(name); ok {
			if rrs := z.ptrs(q.Name, a.Unmap()); rrs != nil {
				m.Authoritative = true
				m.Answer = rrs
				return m
			}
		}
	}
	return h.forward(ctx, req)
}

// follow adds what an ExternalName's CNAME target holds of the type
// asked: from the zone when it is the zone's, else from upstream.
func (h *handler) follow(ctx context.Context, m, req *miekg.Msg, z *Zone) {
	q := req.Question[0]
	target := strings.ToLower(m.Answer[0].(*miekg.CNAME).Target)
	if z.inZone(target) {
		t := new(miekg.Msg)
		z.answer(t, target, q.Qtype, h.pods)
		m.Answer = append(m.Answer, t.Answer...)
		return
	}
	sub := req.Copy()
	sub.Question[0].Name = target
	resp := h.forward(ctx, sub)
	m.Answer = append(m.Answer, resp.Answer...)
	if resp.Rcode != miekg.RcodeSuccess {
		m.Rcode = resp.Rcode
	}
}

// forward answers from the cache, else from upstream (storing the
// answer); SERVFAIL when no upstream answers.
func (h *handler) forward(ctx context.Context, req *miekg.Msg) *miekg.Msg {
	q := req.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: req.CheckingDisabled}
	if opt := req.IsEdns0(); opt != nil {
		k.do = opt.Do()
	}
	now := time.Now()
	if m := h.cache.get(k, now); m != nil {
		h.metrics.CacheHits.Inc()
		rcode := m.Rcode
		m.SetReply(req)
		m.Rcode, m.RecursionAvailable = rcode, true
		return m
	}
	h.metrics.CacheMisses.Inc()
	// Only questions waiting on an upstream (or on the first zone) are
	// bounded: the zone's answers and the cache's take microseconds and
	// hold nothing.
	select {
	case h.inflight <- struct{}{}:
		defer func() { <-h.inflight }()
	default:
		// Past the bound: an answer at once, not a queue that grows.
		h.metrics.Dropped.Inc()
		return refused(req)
	}
	up := req.Copy()
	up.Id = miekg.Id()
	resp, err := h.fwd.exchange(ctx, up)
	if err != nil {
		m := new(miekg.Msg)
		m.SetRcode(req, miekg.RcodeServerFailure)
		m.RecursionAvailable = true
		return m
	}
	h.cache.put(k, resp, now)
	resp.Id = req.Id
	return resp
}

// probeSuffix ends the name of a loop probe: a question only this
// server asks, of its upstreams.
const probeSuffix = ".skein-loop-probe.invalid."

func (h *handler) isProbe(name string) bool {
	if !strings.HasSuffix(name, probeSuffix) {
		return false
	}
	if u, ok := h.probes.Load(name); ok {
		u.(*upstream).loop.Store(true)
	}
	return true
}

// probe asks each upstream a question only this server asks: an upstream
// that forwards it back to this server (a loopback stub pointing at the
// node-local address, say) is marked as a loop and no longer used. It
// returns the upstreams that loop.
func (h *handler) probe(ctx context.Context) []string {
	var loops []string
	for _, u := range h.fwd.list() {
		var b [8]byte
		_, _ = rand.Read(b[:])
		name := hex.EncodeToString(b[:]) + probeSuffix
		h.probes.Store(name, u)
		req := new(miekg.Msg)
		req.SetQuestion(name, miekg.TypeA)
		// Any answer, or none, will do: what counts is whether the
		// question came back to this server.
		_, _, _ = h.fwd.udp.ExchangeContext(ctx, req, u.addr)
		h.probes.Delete(name)
		if u.loop.Load() {
			loops = append(loops, u.addr)
		}
	}
	return loops
}
