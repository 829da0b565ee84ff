package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	miekg "github.com/miekg/dns"
)

// upstream is one of the node's resolvers.
type upstream struct {
	addr string // host:port
	// downUntil is when a failed upstream is tried again first (unix
	// nanoseconds); until then the others are.
	downUntil atomic.Int64
	// loop is set once a probe sent to it came back to this server: it
	// forwards to us, and is never used.
	loop atomic.Bool
}

// forwarder sends questions outside the cluster to the upstreams: over
// UDP, again over TCP when the answer is truncated (or always, with
// forceTCP), a failed upstream skipped for a while, the whole exchange
// within budget so that a client sees SERVFAIL before its first retry.
type forwarder struct {
	mu        sync.RWMutex
	upstreams []*upstream
	udp, tcp  *miekg.Client
	forceTCP  bool
	budget    time.Duration
	failed    func(addr, reason string)
}

const (
	attemptTimeout = time.Second
	downFor        = 5 * time.Second
)

func newForwarder(budget time.Duration, forceTCP bool, failed func(addr, reason string)) *forwarder {
	return &forwarder{
		udp:      &miekg.Client{Net: "udp", Timeout: attemptTimeout, UDPSize: miekg.DefaultMsgSize},
		tcp:      &miekg.Client{Net: "tcp", Timeout: attemptTimeout},
		forceTCP: forceTCP, budget: budget, failed: failed,
	}
}

// setUpstreams replaces the upstreams (host:port each), keeping the state
// of those that stay.
func (f *forwarder) setUpstreams(addrs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := map[string]*upstream{}
	for _, u := range f.upstreams {
		old[u.addr] = u
	}
	f.upstreams = nil
	for _, a := range addrs {
		u := old[a]
		if u == nil {
			u = &upstream{addr: a}
		}
		f.upstreams = append(f.upstreams, u)
	}
}

func (f *forwarder) list() []*upstream {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.upstreams
}

// usable are the upstreams to try, in order: those up first, then those
// down (a query must not fail only because every upstream failed once);
// never one that loops.
func (f *forwarder) usable(now time.Time) []*upstream {
	var up, down []*upstream
	for _, u := range f.list() {
		switch {
		case u.loop.Load():
		case u.downUntil.Load() > now.UnixNano():
			down = append(down, u)
		default:
			up = append(up, u)
		}
	}
	return append(up, down...)
}

var errNoUpstream = errors.New("no usable upstream resolver")

// exchange asks the upstreams, one after another, until one answers.
func (f *forwarder) exchange(ctx context.Context, req *miekg.Msg) (*miekg.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.budget)
	defer cancel()
	ups := f.usable(time.Now())
	if len(ups) == 0 {
		return nil, errNoUpstream
	}
	var errs []error
	for _, u := range ups {
		if ctx.Err() != nil {
			break
		}
		resp, err := f.ask(ctx, u, req)
		if err == nil {
			u.downUntil.Store(0)
			return resp, nil
		}
		u.downUntil.Store(time.Now().Add(downFor).UnixNano())
		f.failed(u.addr, reason(err))
		errs = append(errs, fmt.Errorf("%s: %w", u.addr, err))
	}
	if len(errs) == 0 {
		return nil, ctx.Err()
	}
	return nil, errors.Join(errs...)
}

// ask sends one question to one upstream: over UDP, then TCP when the
// answer did not fit.
func (f *forwarder) ask(ctx context.Context, u *upstream, req *miekg.Msg) (*miekg.Msg, error) {
	if !f.forceTCP {
		resp, _, err := f.udp.ExchangeContext(ctx, req, u.addr)
		if err != nil {
			return nil, err
		}
		if !resp.Truncated {
			return resp, nil
		}
	}
	resp, _, err := f.tcp.ExchangeContext(ctx, req, u.addr)
	return resp, err
}

// reason is a failure's metric label.
func reason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, miekg.ErrId):
		return "bad-reply"
	}
	return "error"
}

// upstreamAddr is host:port of a resolver given as an address, with or
// without a port.
func upstreamAddr(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("upstream %q is not an address or address:port", s)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}
