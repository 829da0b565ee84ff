package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// Config is the DNS server's settings.
type Config struct {
	// Domain is the cluster zone ("cluster.local").
	Domain string
	// Addrs are the addresses served on: the node-local address and,
	// when given, the kube-dns Service's ClusterIP. They are put on the
	// device skein.dns.
	Addrs []netip.Addr
	Port  uint16 // 53
	// Upstreams are the resolvers of every other name (address or
	// address:port); none: those of ResolvConf.
	Upstreams  []string
	ResolvConf string
	ForceTCP   bool // ask upstreams over TCP only
	TTL        time.Duration
	// Pods answers <a-b-c-d>.<ns>.pod names.
	Pods bool
	// Cache bounds, and the TTLs an answer is kept within.
	CacheEntries   int
	CacheBytes     int
	MinTTL, MaxTTL time.Duration
	// MaxInflight bounds the questions waiting on an upstream at once;
	// past it, REFUSED.
	MaxInflight int
	// UpstreamBudget is the time a forwarded question may take in all.
	UpstreamBudget time.Duration
}

// Defaults fills what c leaves unset.
func (c Config) withDefaults() Config {
	if c.Port == 0 {
		c.Port = 53
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.TTL == 0 {
		c.TTL = 5 * time.Second
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = 10000
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 8 << 20
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = time.Hour
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 1000
	}
	if c.UpstreamBudget == 0 {
		c.UpstreamBudget = 2 * time.Second
	}
	return c
}

// Deps are what the server reports to.
type Deps struct {
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Device puts the addresses on the node and keeps DNS to them out of
	// conntrack; nil: the addresses are the caller's (a test's).
	Device *Device
}

// Controller is the DNS server with skeind's lifecycle: New, then Start
// (listen, SERVFAIL for the zone until the first snapshot), Sync per
// snapshot, Cleanup.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	dev     *Device
	h       *handler
	memo    *Memo
	metrics *Metrics
	mu      sync.Mutex
	servers []*miekg.Server
	loops   []string
	ready   string
	// build serializes zone building (Sync and Withdraw come from two
	// controllers' goroutines); last is the snapshot last published, and
	// pending the one the proxy is programming, whose missing Services
	// no zone answers until it is published itself.
	build   sync.Mutex
	serial  uint32
	last    *cluster.State
	pending *cluster.State
	// ensured is when the device and its table were last written whole,
	// and deviceEvery how often Sync writes them again (see Sync).
	ensured     time.Time
	deviceEvery time.Duration
	// observing is set by the first snapshot published: the trigger
	// times of the next ones are changes it followed.
	observing bool
}

// New builds the server; it listens from Start.
func New(cfg Config, deps Deps) (*Controller, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("dns: no address to serve on")
	}
	if !isDomain(cfg.Domain) {
		return nil, fmt.Errorf("dns: cluster domain %q is not a DNS name", cfg.Domain)
	}
	if cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("dns: minimum TTL %s above maximum %s", cfg.MinTTL, cfg.MaxTTL)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := NewMetrics(deps.Registry)
	ttl := uint32(cfg.TTL / time.Second)
	c := &Controller{cfg: cfg, log: log, dev: deps.Device, memo: NewMemo(cfg.Domain, ttl), metrics: m,
		ready: "no complete snapshot of the cluster yet", deviceEvery: time.Minute}
	c.h = &handler{
		zoned:    make(chan struct{}),
		origin:   miekg.Fqdn(cfg.Domain),
		pods:     cfg.Pods,
		fwd:      newForwarder(cfg.UpstreamBudget, cfg.ForceTCP, func(a, r string) { m.UpstreamErrors.WithLabelValues(a, r).Inc() }),
		cache:    newCache(cfg.CacheEntries, cfg.CacheBytes, cfg.MinTTL, cfg.MaxTTL, m.CacheEvictions.Inc),
		inflight: make(chan struct{}, cfg.MaxInflight),
		metrics:  m,
	}
	return c, nil
}

// Start puts the addresses on the node and listens on each, UDP and
// TCP; then, in the background, it asks every upstream the loop probe.
func (c *Controller) Start(ctx context.Context) error {
	if err := c.ensureDevice(ctx, true); err != nil {
		return err
	}
	if err := c.readUpstreams(); err != nil {
		return err
	}
	for _, a := range c.cfg.Addrs {
		if err := c.listen(net.JoinHostPort(a.String(), strconv.Itoa(int(c.cfg.Port)))); err != nil {
			c.Shutdown()
			return err
		}
	}
	// The probe waits for every upstream; serving does not.
	go c.checkLoops(ctx)
	c.log.Info("cluster DNS serving", "addrs", c.cfg.Addrs, "domain", c.cfg.Domain, "upstreams", c.upstreamAddrs())
	return nil
}

// udpBuffer is the UDP socket's receive buffer: room for a burst of a
// few thousand questions (each queued question takes about 1 KiB of
// kernel memory), such as a node's pods all resolving at once, each
// asking A and AAAA. The kernel's default, about 200 KiB, holds a few
// hundred: the rest would be dropped, and their clients would wait out a
// 5 s retry.
const udpBuffer = 8 << 20

// listenUDP opens addr with a udpBuffer receive buffer: SO_RCVBUFFORCE
// passes net.core.rmem_max with CAP_NET_ADMIN, which skeind has; without
// it, SO_RCVBUF gets what rmem_max allows, and serving goes on.
func listenUDP(addr string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, udpBuffer)
			}
		})
	}}
	return lc.ListenPacket(context.Background(), "udp", addr)
}

// listen opens addr, UDP and TCP, and serves both. The sockets are
// opened here, on the caller's thread, so that they are in the caller's
// network namespace and a port taken is an error of Start.
func (c *Controller) listen(addr string) error {
	pc, err := listenUDP(addr)
	if err != nil {
		return fmt.Errorf("dns: listen on %s/udp: %w", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		_ = pc.Close()
		return fmt.Errorf("dns: listen on %s/tcp: %w", addr, err)
	}
	for _, s := range []*miekg.Server{{PacketConn: pc}, {Listener: l}} {
		s.Handler, s.ReadTimeout, s.WriteTimeout = c.h, 2*time.Second, 2*time.Second
		s.IdleTimeout = func() time.Duration { return 5 * time.Second }
		started := make(chan error, 2)
		s.NotifyStartedFunc = func() { started <- nil }
		go func() {
			err := s.ActivateAndServe()
			if err != nil {
				c.log.Error("dns: serving stopped", "addr", addr, "err", err)
			}
			started <- err
		}()
		if err := <-started; err != nil {
			_ = pc.Close()
			_ = l.Close()
			return fmt.Errorf("dns: serve %s: %w", addr, err)
		}
		c.mu.Lock()
		c.servers = append(c.servers, s)
		c.mu.Unlock()
	}
	return nil
}

// readUpstreams takes the upstreams from the flags or resolv.conf,
// leaving out this server's own addresses.
func (c *Controller) readUpstreams() error {
	given := c.cfg.Upstreams
	if len(given) == 0 {
		rc, err := miekg.ClientConfigFromFile(c.cfg.ResolvConf)
		if err != nil {
			return fmt.Errorf("dns: upstreams from %s: %w", c.cfg.ResolvConf, err)
		}
		for _, s := range rc.Servers {
			given = append(given, net.JoinHostPort(s, rc.Port))
		}
	}
	var addrs []string
	for _, g := range given {
		a, err := upstreamAddr(g)
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		if ap := netip.MustParseAddrPort(a); ap.Port() == c.cfg.Port && c.serves(ap.Addr()) {
			c.log.Warn("dns: an upstream is this server itself; not used", "upstream", a)
			c.loops = append(c.loops, a)
			continue
		}
		addrs = append(addrs, a)
	}
	c.h.fwd.setUpstreams(addrs)
	return nil
}

func (c *Controller) serves(a netip.Addr) bool {
	for _, s := range c.cfg.Addrs {
		if s == a.Unmap() {
			return true
		}
	}
	return false
}

func (c *Controller) upstreamAddrs() []string {
	var out []string
	for _, u := range c.h.fwd.list() {
		out = append(out, u.addr)
	}
	return out
}

// checkLoops probes the upstreams for loops back to this server.
func (c *Controller) checkLoops(ctx context.Context) {
	loops := c.h.probe(ctx)
	for _, l := range loops {
		c.log.Warn("dns: an upstream forwards back to this server (a loop); not used", "upstream", l)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loops = append(c.loops, loops...)
	c.metrics.Loops.Set(float64(len(c.loops)))
}

// Sync builds the zone of the snapshot and answers from it, then puts
// the device and its rules back if they went. With a Service proxy,
// skeind gives it the snapshot the proxy last programmed: a new
// Service's name is answered once its rules are in the kernel.
func (c *Controller) Sync(ctx context.Context, st *cluster.State) error {
	c.publish(st, true)
	return c.ensureDevice(ctx, false)
}

// ensureDevice writes the device and its table whole: always, at Start,
// or when netlink shows the device or an address gone, or once
// deviceEvery (the runner's periodic resync brings a Sync). The device
// does not follow the snapshot, and writing its table runs nft: done on
// every Sync, it cost each Service change an nft run before the next
// one's name could be published.
func (c *Controller) ensureDevice(ctx context.Context, force bool) error {
	if c.dev == nil {
		return nil
	}
	now := time.Now()
	if !force && now.Sub(c.ensured) < c.deviceEvery && c.dev.Holds(c.cfg.Addrs) {
		return nil
	}
	if err := c.dev.Ensure(ctx, c.cfg.Addrs, c.cfg.Port); err != nil {
		return err
	}
	c.ensured = now
	return nil
}

// Withdraw stops answering, at once, the Services of the zone that st
// no longer has (or has with another address): skeind calls it before
// the Service proxy programs st, so that no name outlives its rules.
// Until Sync is given st itself, every zone published leaves them out.
//
// It runs on the proxy's path to the kernel, so the common case costs
// little: when st keeps every Service of the zone (a new Service, an
// endpoint changed), nothing is rebuilt.
func (c *Controller) Withdraw(st *cluster.State) {
	c.build.Lock()
	defer c.build.Unlock()
	c.pending = st
	if c.last != nil && withdrawn(c.last, st) != c.last {
		c.publishLocked(c.last, false)
	}
}

// withdrawn is st less the Services the pending snapshot lacks (or has
// with another address); st itself when it lacks none. It runs before
// every sync of the proxy: for two sealed snapshots it is a walk of both
// (most Services are the same objects), else a map of the pending ones.
func withdrawn(st, pending *cluster.State) *cluster.State {
	keep := make([]bool, len(st.Services))
	if st.Sealed() && pending.Sealed() {
		cluster.PairServices(pending.Services, st.Services, func(i, j int) {
			s, p := st.Services[i], pending.Services[j]
			keep[i] = s == p || s.Spec.ClusterIP == p.Spec.ClusterIP
		})
	} else {
		keys := make(map[string]bool, len(pending.Services))
		for _, p := range pending.Services {
			keys[serviceKey(p)] = true
		}
		for i, s := range st.Services {
			keep[i] = keys[serviceKey(s)]
		}
	}
	if !slices.Contains(keep, false) {
		return st
	}
	return st.Keep(func(i int) bool { return keep[i] })
}

func serviceKey(s *corev1.Service) string {
	return s.Namespace + "/" + s.Name + "/" + s.Spec.ClusterIP
}

// publish builds st's zone and answers from it; a snapshot (not a
// withdrawal) also clears the readiness wait and counts its problems.
func (c *Controller) publish(st *cluster.State, snapshot bool) {
	c.build.Lock()
	defer c.build.Unlock()
	if c.pending == st {
		c.pending = nil // the proxy has programmed it
	}
	c.publishLocked(st, snapshot)
}

func (c *Controller) publishLocked(st *cluster.State, snapshot bool) {
	c.last = st
	if c.pending != nil {
		st = withdrawn(st, c.pending)
	}
	c.serial++
	z := c.memo.Build(st, c.serial)
	c.h.setZone(z)
	if !snapshot {
		return
	}
	c.observeTriggers(time.Now())
	c.metrics.Skipped.Reset()
	for _, p := range z.problems {
		c.metrics.Skipped.WithLabelValues(p.reason).Inc()
	}
	c.mu.Lock()
	c.ready = ""
	c.mu.Unlock()
}

// observeTriggers records the time from each change of an
// EndpointSlice to its names being answered. The first zone does not:
// it did not follow those changes.
func (c *Controller) observeTriggers(now time.Time) {
	triggers := c.memo.Triggers()
	if !c.observing {
		c.observing = true
		return
	}
	cluster.ObserveTriggers(triggers, now, c.metrics.ProgrammingTime.Observe)
}

// Ready implements skeind's controller: why DNS is not ready.
func (c *Controller) Ready() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready != "" {
		return c.ready
	}
	if len(c.h.fwd.usable(time.Now())) == 0 {
		if len(c.loops) > 0 {
			return fmt.Sprintf("every upstream resolver loops back to this server (%v): names outside the cluster fail", c.loops)
		}
		return "no upstream resolver: names outside the cluster fail"
	}
	return ""
}

// Shutdown stops listening.
func (c *Controller) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.servers {
		_ = s.Shutdown() // a server that never started has nothing to stop
	}
	c.servers = nil
}

// Cleanup stops listening and removes the device and its rules.
func (c *Controller) Cleanup(ctx context.Context) error {
	c.Shutdown()
	if c.dev == nil {
		return nil
	}
	return c.dev.Remove(ctx)
}
