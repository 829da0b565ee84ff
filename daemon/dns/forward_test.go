package dns

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// serve runs h on a loopback port, UDP and TCP; it returns the address.
func serve(t *testing.T, h miekg.Handler) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue // the TCP port is taken: another one
		}
		for _, s := range []*miekg.Server{{PacketConn: pc, Handler: h, ReadTimeout: 500 * time.Millisecond}, {Listener: l, Handler: h, ReadTimeout: 500 * time.Millisecond}} {
			started := make(chan struct{})
			s.NotifyStartedFunc = func() { close(started) }
			go func() { _ = s.ActivateAndServe() }()
			<-started
			t.Cleanup(func() { _ = s.Shutdown() })
		}
		return pc.LocalAddr().String()
	}
	t.Fatal("no free loopback port")
	return ""
}

// upstreamFunc is a fake upstream: it counts the questions it gets.
type upstreamFunc struct {
	asked atomic.Int32
	fn    func(w miekg.ResponseWriter, r *miekg.Msg)
}

func (u *upstreamFunc) ServeDNS(w miekg.ResponseWriter, r *miekg.Msg) {
	u.asked.Add(1)
	u.fn(w, r)
}

// answering is an upstream that answers every A question with 192.0.2.1
// (TTL 60), and NXDOMAIN for names under "missing.".
func answering() *upstreamFunc {
	return &upstreamFunc{fn: func(w miekg.ResponseWriter, r *miekg.Msg) {
		m := new(miekg.Msg)
		m.SetReply(r)
		if strings.HasSuffix(r.Question[0].Name, "missing.") {
			m.Rcode = miekg.RcodeNameError
			m.Ns = []miekg.RR{&miekg.SOA{Hdr: miekg.RR_Header{Name: "missing.", Rrtype: miekg.TypeSOA, Class: miekg.ClassINET, Ttl: 30},
				Ns: "ns.missing.", Mbox: "h.missing.", Minttl: 20}}
		} else {
			rr, _ := miekg.NewRR(r.Question[0].Name + " 60 IN A 192.0.2.1")
			m.Answer = []miekg.RR{rr}
		}
		_ = w.WriteMsg(m)
	}}
}

func query(t *testing.T, addr, network, name string, qtype uint16) *miekg.Msg {
	t.Helper()
	c := &miekg.Client{Net: network, Timeout: 5 * time.Second}
	req := new(miekg.Msg)
	req.SetQuestion(name, qtype)
	m, _, err := c.Exchange(req, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, name, err)
	}
	return m
}

// TestForwardAndCache: outside names are forwarded; the answer, and a
// negative one, is then served from the cache with its TTL lowered.
func TestForwardAndCache(t *testing.T) {
	up := answering()
	h := testHandler(t, true, serve(t, up))
	srv := serve(t, h)
	m := query(t, srv, "udp", "example.com.", miekg.TypeA)
	if m.Rcode != 0 || len(m.Answer) != 1 || m.Answer[0].(*miekg.A).A.String() != "192.0.2.1" {
		t.Fatalf("forwarded answer: %v", m)
	}
	m = query(t, srv, "udp", "EXAMPLE.com.", miekg.TypeA)
	if len(m.Answer) != 1 || up.asked.Load() != 1 {
		t.Errorf("the second question reached the upstream (%d asked): %v", up.asked.Load(), m)
	}
	for range 2 {
		if m := query(t, srv, "udp", "x.missing.", miekg.TypeA); m.Rcode != miekg.RcodeNameError {
			t.Errorf("negative answer: %v", m)
		}
	}
	if up.asked.Load() != 2 {
		t.Errorf("the upstream was asked %d times, want 2 (the negative answer cached)", up.asked.Load())
	}
	// The TTL goes down as the answer ages.
	k := cacheKey{name: "example.com.", qtype: miekg.TypeA, qclass: miekg.ClassINET}
	if got := h.cache.get(k, time.Now().Add(10*time.Second)); got == nil || got.Answer[0].Header().Ttl > 50 {
		t.Errorf("10 s later the cached answer is %v", got)
	}
	if got := h.cache.get(k, time.Now().Add(61*time.Second)); got != nil {
		t.Errorf("past its TTL the answer is still cached: %v", got)
	}
}

// TestCacheBounds: the cache holds at most its entries, the least
// recently used going first.
func TestCacheBounds(t *testing.T) {
	evicted := 0
	c := newCache(3, 1<<20, 0, time.Hour, func() { evicted++ })
	now := time.Now()
	for _, n := range []string{"a.", "b.", "c.", "d."} {
		m := new(miekg.Msg)
		m.SetQuestion(n, miekg.TypeA)
		rr, _ := miekg.NewRR(n + " 60 IN A 192.0.2.1")
		m.Answer = []miekg.RR{rr}
		c.put(cacheKey{name: n, qtype: miekg.TypeA}, m, now)
		if n == "b." {
			c.get(cacheKey{name: "a.", qtype: miekg.TypeA}, now) // a is used again
		}
	}
	if c.len() != 3 || evicted != 1 || c.get(cacheKey{name: "b.", qtype: miekg.TypeA}, now) != nil ||
		c.get(cacheKey{name: "a.", qtype: miekg.TypeA}, now) == nil {
		t.Errorf("%d entries, %d evicted; b (least recently used) should be the one gone", c.len(), evicted)
	}
}

// TestUpstreamDown: an upstream that does not answer gives SERVFAIL
// within the budget, well inside a client's first retry (5 s); with a
// second upstream the answer comes from it, and the dead one is skipped
// next time.
func TestUpstreamDown(t *testing.T) {
	silent := &upstreamFunc{fn: func(miekg.ResponseWriter, *miekg.Msg) {}}
	dead := serve(t, silent)
	h := testHandler(t, true, dead)
	srv := serve(t, h)
	start := time.Now()
	m := query(t, srv, "udp", "example.com.", miekg.TypeA)
	if took := time.Since(start); m.Rcode != miekg.RcodeServerFailure || took > 3*time.Second {
		t.Errorf("rcode %s after %s, want SERVFAIL within the 2 s budget", miekg.RcodeToString[m.Rcode], took)
	}
	up := answering()
	h.fwd.setUpstreams([]string{dead, serve(t, up)})
	if m := query(t, srv, "udp", "one.example.", miekg.TypeA); len(m.Answer) != 1 {
		t.Fatalf("with a live second upstream: %v", m)
	}
	before := silent.asked.Load()
	start = time.Now()
	if m := query(t, srv, "udp", "two.example.", miekg.TypeA); len(m.Answer) != 1 || time.Since(start) > 500*time.Millisecond {
		t.Errorf("the next question took %s: %v", time.Since(start), m)
	}
	if silent.asked.Load() != before {
		t.Error("the dead upstream was asked again while down")
	}
}

// TestTruncation: an answer too large for UDP comes truncated, and whole
// over TCP; an upstream that answers large only over TCP is asked again
// over TCP.
func TestTruncation(t *testing.T) {
	big := &upstreamFunc{fn: func(w miekg.ResponseWriter, r *miekg.Msg) {
		m := new(miekg.Msg)
		m.SetReply(r)
		for i := range 60 {
			rr, _ := miekg.NewRR(r.Question[0].Name + " 60 IN TXT \"" + strings.Repeat("x", 50) + string(rune('a'+i%26)) + "\"")
			m.Answer = append(m.Answer, rr)
		}
		if w.RemoteAddr().Network() == "udp" {
			m.Truncate(512)
		}
		_ = w.WriteMsg(m)
	}}
	h := testHandler(t, true, serve(t, big))
	srv := serve(t, h)
	if m := query(t, srv, "udp", "big.example.", miekg.TypeTXT); !m.Truncated || func() int { m.Compress = true; return m.Len() }() > 512 {
		t.Errorf("over UDP: truncated %v, %d bytes", m.Truncated, m.Len())
	}
	if m := query(t, srv, "tcp", "big.example.", miekg.TypeTXT); m.Truncated || len(m.Answer) != 60 {
		t.Errorf("over TCP: truncated %v, %d records", m.Truncated, len(m.Answer))
	}
}

// TestTCPOnlyUpstream: with ForceTCP, upstreams are asked over TCP only.
func TestTCPOnlyUpstream(t *testing.T) {
	viaTCP := &upstreamFunc{fn: func(w miekg.ResponseWriter, r *miekg.Msg) {
		if w.RemoteAddr().Network() != "tcp" {
			return // no answer over UDP
		}
		answering().fn(w, r)
	}}
	h := testHandler(t, true, serve(t, viaTCP))
	h.fwd.forceTCP = true
	if m := query(t, serve(t, h), "udp", "example.com.", miekg.TypeA); len(m.Answer) != 1 {
		t.Errorf("through a TCP-only upstream: %v", m)
	}
}

// TestLoopGuard: an upstream that forwards back to this server is found
// by the probe, reported, and not used: outside names fail at once
// rather than loop.
func TestLoopGuard(t *testing.T) {
	h := testHandler(t, true)
	srv := serve(t, h)
	loop := &upstreamFunc{fn: func(w miekg.ResponseWriter, r *miekg.Msg) {
		resp, _, err := (&miekg.Client{Timeout: time.Second}).Exchange(r, srv)
		if err == nil {
			_ = w.WriteMsg(resp)
		}
	}}
	h.fwd.setUpstreams([]string{serve(t, loop)})
	loops := h.probe(context.Background())
	if len(loops) != 1 {
		t.Fatalf("loops found: %v", loops)
	}
	if len(h.fwd.usable(time.Now())) != 0 {
		t.Error("the looping upstream is still used")
	}
	if m := query(t, srv, "udp", "example.com.", miekg.TypeA); m.Rcode != miekg.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", miekg.RcodeToString[m.Rcode])
	}
}

// TestInflightBound: past the bound on questions waiting on an
// upstream, one more is answered REFUSED at once and counted; the
// cluster's names are still answered.
func TestInflightBound(t *testing.T) {
	release := make(chan struct{})
	slow := &upstreamFunc{fn: func(w miekg.ResponseWriter, r *miekg.Msg) {
		<-release
		answering().fn(w, r)
	}}
	h := testHandler(t, true, serve(t, slow))
	h.inflight = make(chan struct{}, 1)
	srv := serve(t, h)
	done := make(chan *miekg.Msg)
	go func() {
		c := &miekg.Client{Timeout: 5 * time.Second}
		req := new(miekg.Msg)
		req.SetQuestion("slow.example.", miekg.TypeA)
		m, _, _ := c.Exchange(req, srv)
		done <- m
	}()
	for slow.asked.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if m := query(t, srv, "udp", "other.example.", miekg.TypeA); m.Rcode != miekg.RcodeRefused {
		t.Errorf("past the bound: rcode %s, want REFUSED", miekg.RcodeToString[m.Rcode])
	}
	if m := query(t, srv, "udp", "backend.shop.svc.cluster.local.", miekg.TypeA); len(m.Answer) != 1 {
		t.Errorf("a cluster name past the bound: %v, want its answer", m)
	}
	close(release)
	if m := <-done; m == nil || len(m.Answer) != 1 {
		t.Errorf("the query in flight: %v", m)
	}
}
