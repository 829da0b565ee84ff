package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/hooks"
)

// Backend writes the model into the kernel.
type Backend interface {
	Name() string
	// Sync makes the kernel hold m: everything rewritten when full,
	// else only what changed since the backend's last successful Sync.
	// A failed Sync leaves the previous rules in place. It returns the
	// size of the ruleset (rules and map elements).
	Sync(ctx context.Context, m *Model, full bool) (int, error)
	// Cleanup removes everything the backend owns.
	Cleanup(ctx context.Context) error
}

// Checker is a Backend that can tell cheaply whether someone else has
// changed what its last Sync left in the kernel. With one, the
// controller looks every CheckEvery and rewrites everything only when
// something changed, or every FullEvery; without, it rewrites everything
// every CheckEvery.
type Checker interface {
	// Drift says what changed, "" when nothing did.
	Drift(ctx context.Context) string
}

// RuleOptions shape either backend's rules.
type RuleOptions struct {
	Bridge string // local pods' traffic comes in on it
	// NodePortAddresses narrows NodePorts to these addresses' prefixes
	// (empty: every local address).
	NodePortAddresses []string
	// Hooks places the iptables backend's jumps from the built-in chains
	// in their order among every controller's (nil: one of its own).
	Hooks *hooks.Owner
}

// nodePorts returns the NodePort prefixes of family fam.
func (o RuleOptions) NodePorts(fam int) []string {
	var out []string
	for _, p := range o.NodePortAddresses {
		if strings.Contains(p, ":") == (fam == 6) {
			out = append(out, p)
		}
	}
	return out
}

// Conntrack deletes connection-tracking entries.
type Conntrack interface {
	// Delete removes the UDP entries of family fam (4, 6) to dst (any
	// when invalid) and, when port is not 0, that destination port and,
	// when backend is valid, only those NATed to it.
	Delete(fam int, dst netip.Addr, port uint16, backend netip.Addr) error
}

// Options tune the controller.
type Options struct {
	NodeName string
	// NodeIP is this node's underlay address when a flag sets it (else
	// the Node object's addresses say it); OverlayPort the VXLAN port.
	// Neither may be taken by a Service.
	NodeIP      netip.Addr
	OverlayPort uint16
	// CheckEvery is how often a Checker backend's rules are looked at,
	// and another backend's rewritten whole (default 1m).
	CheckEvery time.Duration
	// FullEvery is how often a Checker backend's rules are rewritten
	// whole though they look intact (default 1h, as kube-proxy's).
	FullEvery time.Duration
	Log       *slog.Logger
	Metrics   *Metrics
	Conntrack Conntrack // nil: none cleared
	Health    Health    // nil: no health checks served
	// ServiceCIDRs are Service ranges beside the ServiceCIDR objects
	// (--service-cidr).
	ServiceCIDRs []netip.Prefix
}

// Controller turns snapshots into the backend's rules.
type Controller struct {
	b         Backend
	o         Options
	memo      Memo
	last      *Model // what the last successful sync applied
	lastFull  time.Time
	lastCheck time.Time
	lastWhy   string
	lastPrb   string
	// refused are the Services the kernel refused, by "namespace/name",
	// with the generation of their ports then: left out until they change.
	refused map[string]refusal
}

type refusal struct {
	gen uint64
	err string
}

// New returns the controller of backend b.
func New(b Backend, o Options) *Controller {
	if o.CheckEvery <= 0 {
		o.CheckEvery = time.Minute
	}
	if o.FullEvery <= 0 {
		o.FullEvery = time.Hour
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Controller{b: b, o: o}
}

// Ready tells why the controller has not synced yet, or "" once it has.
func (c *Controller) Ready() string {
	if c.last != nil {
		return ""
	}
	if c.lastWhy != "" {
		return c.lastWhy
	}
	return "the service rules are not written yet"
}

// Sync implements the daemon's reconcile: the model from the snapshot,
// written whole or, between full syncs, only what changed.
func (c *Controller) Sync(ctx context.Context, st *cluster.State) error {
	me, ok := st.Node(c.o.NodeName)
	if !ok {
		c.waiting(fmt.Sprintf("node %q is not in the cluster yet", c.o.NodeName))
		return nil
	}
	cidrs, err := st.Facts().PodCIDRs(me.Name)
	if err != nil || len(cidrs) == 0 {
		c.waiting("this node has no usable podCIDR yet")
		return nil
	}
	cfg := Config{NodeName: c.o.NodeName, Reserved: withAddr(st.Facts().Reserved, c.o.NodeIP), OverlayPort: c.o.OverlayPort,
		Zone: me.Labels[corev1.LabelTopologyZone], Zones: zones(st), ServiceCIDRs: c.o.ServiceCIDRs}
	for _, p := range cidrs {
		if f := family(p.Addr()); !slices.Contains(cfg.Families, f) {
			cfg.Families = append(cfg.Families, f)
		}
	}
	c.lastWhy = ""
	m := c.memo.Build(st, cfg)
	m = c.withoutRefused(m)
	c.report(m.Problems)
	// The Service ranges live in the fixed part of the rules, which only
	// a full sync writes; they change seldom.
	full := c.needFull(ctx) || (c.last != nil && !slices.Equal(c.last.ServiceCIDRs, m.ServiceCIDRs))
	mode := "partial"
	if full {
		mode = "full"
	}
	start := time.Now()
	size, err := c.b.Sync(ctx, &m, full)
	if err != nil {
		prev := c.last
		c.last = nil // the next sync is a full one
		good, n, ierr := c.isolate(ctx, m, prev)
		if ierr != nil {
			return fmt.Errorf("%s: %w", c.b.Name(), err)
		}
		m, size = good, n
		c.report(m.Problems)
	}
	done := time.Now()
	c.o.Metrics.Duration.WithLabelValues(mode).Observe(done.Sub(start).Seconds())
	c.o.Metrics.Rules.Set(float64(size))
	c.o.Metrics.LastSync.Set(float64(done.UnixNano()) / 1e9)
	if full {
		c.lastFull, c.lastCheck = done, done
	}
	c.observeLatency(m.Triggers, done, c.last != nil)
	if c.last != nil && c.o.Conntrack != nil {
		if err := c.clearConntrack(c.last, &m); err != nil {
			c.o.Log.Warn("conntrack entries not cleared", "err", err)
		}
	}
	if c.o.Health != nil {
		if more := c.o.Health.Synced(&m, NodeStatus{Families: cfg.Families, Eligible: eligible(me)}); len(more) > 0 {
			m.Problems = slices.Concat(m.Problems, more)
			c.report(m.Problems)
		}
	}
	c.last = &m
	return nil
}

// needFull tells whether this sync rewrites everything: the first, the
// one after a failure, and then as CheckEvery and FullEvery say.
func (c *Controller) needFull(ctx context.Context) bool {
	if c.last == nil {
		return true
	}
	since := time.Since(c.lastFull)
	ch, ok := c.b.(Checker)
	if !ok {
		return since >= c.o.CheckEvery
	}
	if since >= c.o.FullEvery {
		return true
	}
	if time.Since(c.lastCheck) < c.o.CheckEvery {
		return false
	}
	c.lastCheck = time.Now()
	if what := ch.Drift(ctx); what != "" {
		c.o.Log.Warn("the service rules were changed behind skeind's back; rewriting them all", "what", what)
		c.o.Metrics.Repairs.Inc()
		return true
	}
	return false
}

// serviceKey is the Service a port belongs to.
func serviceKey(sp *ServicePort) string { return sp.Namespace + "/" + sp.Service }

// withoutRefused leaves out the Services the kernel refused, as long as
// they have not changed since, and reports them.
func (c *Controller) withoutRefused(m Model) Model {
	if len(c.refused) == 0 {
		return m
	}
	seen := map[string]bool{}
	ports := make([]*ServicePort, 0, len(m.Ports))
	for _, sp := range m.Ports {
		k := serviceKey(sp)
		r, ok := c.refused[k]
		seen[k] = true
		if !ok || r.gen != sp.gen {
			delete(c.refused, k) // changed: tried again
			ports = append(ports, sp)
			continue
		}
	}
	for k, r := range c.refused {
		if !seen[k] {
			delete(c.refused, k) // gone
			continue
		}
		m.Problems = append(m.Problems, Problem{Object: "Service " + k, Reason: "kernel-refused", Detail: r.err})
	}
	m.Ports = ports
	return m
}

// isolate finds the Services whose rules the kernel refuses after a sync
// of m failed, so that one object cannot hold every other back. The
// suspects are the Services changed since prev, the last model applied
// (all of them when there is none); the rest are applied first, then
// the suspects in halves, a half that fails split again down to single
// Services, which are left out and remembered. Each try is a real
// transaction, so while this runs a suspect may be missing from the
// kernel for a few syncs: only a refused transaction gets here, and
// without it nothing would be programmed at all. It returns the model
// applied last and its size, or an error when even the Services that
// did not change are refused (then no object is to blame).
func (c *Controller) isolate(ctx context.Context, m Model, prev *Model) (Model, int, error) {
	had := map[string]uint64{}
	if prev != nil {
		for _, sp := range prev.Ports {
			had[sp.ID()] = sp.gen
		}
	}
	changed := map[string]bool{}
	var suspects []string
	for _, sp := range m.Ports {
		k := serviceKey(sp)
		if g, ok := had[sp.ID()]; (prev == nil || !ok || g != sp.gen) && !changed[k] {
			changed[k] = true
			suspects = append(suspects, k)
		}
	}
	include := map[string]bool{}
	for _, sp := range m.Ports {
		k := serviceKey(sp)
		include[k] = !changed[k]
	}
	try := func() (Model, int, error) {
		t := m
		t.Ports = make([]*ServicePort, 0, len(m.Ports))
		for _, sp := range m.Ports {
			if include[serviceKey(sp)] {
				t.Ports = append(t.Ports, sp)
			}
		}
		n, err := c.b.Sync(ctx, &t, false)
		return t, n, err
	}
	last, size, err := try()
	if err != nil {
		return Model{}, 0, err
	}
	last.Problems = slices.Clone(m.Problems)
	var walk func(group []string)
	walk = func(group []string) {
		for _, k := range group {
			include[k] = true
		}
		t, n, err := try()
		if err == nil {
			t.Problems = last.Problems
			last, size = t, n
			return
		}
		for _, k := range group {
			include[k] = false
		}
		if len(group) == 1 {
			gen := uint64(0)
			for _, sp := range m.Ports {
				if serviceKey(sp) == group[0] {
					gen = sp.gen
					break
				}
			}
			if c.refused == nil {
				c.refused = map[string]refusal{}
			}
			c.refused[group[0]] = refusal{gen: gen, err: err.Error()}
			last.Problems = append(last.Problems, Problem{Object: "Service " + group[0], Reason: "kernel-refused", Detail: err.Error()})
			c.o.Log.Error("the kernel refused a Service's rules; it is left out until it changes", "service", group[0], "err", err)
			return
		}
		walk(group[:len(group)/2])
		walk(group[len(group)/2:])
	}
	walk(suspects)
	// The last try may have failed: write what did land once more, so that
	// the backend's memory and the kernel agree.
	if _, err := c.b.Sync(ctx, &last, true); err != nil {
		return Model{}, 0, err
	}
	return last, size, nil
}

// Cleanup removes the backend's rules.
func (c *Controller) Cleanup(ctx context.Context) error {
	c.last = nil
	return c.b.Cleanup(ctx)
}

func (c *Controller) waiting(why string) {
	if why != c.lastWhy {
		c.o.Log.Warn("service proxy waiting", "why", why)
	}
	c.lastWhy = why
}

func (c *Controller) report(problems []Problem) {
	c.o.Metrics.Skipped.Reset()
	var b strings.Builder
	for _, p := range problems {
		c.o.Metrics.Skipped.WithLabelValues(p.Reason).Inc()
		fmt.Fprintf(&b, "%s|%s|%s;", p.Object, p.Reason, p.Detail)
	}
	if b.String() != c.lastPrb {
		for _, p := range problems {
			c.o.Log.Warn("left out of the service rules", "object", p.Object, "reason", p.Reason, "detail", p.Detail)
		}
		c.lastPrb = b.String()
	}
}

// observeLatency records how long it took from each change that moved
// an EndpointSlice to its rules in the kernel. The first sync does not,
// nor the full one after a failure: they did not follow those changes
// one by one.
func (c *Controller) observeLatency(times []string, done time.Time, report bool) {
	if !report {
		return
	}
	cluster.ObserveTriggers(times, done, c.o.Metrics.Programming.Observe)
}

// clearConntrack deletes the UDP entries that would keep clients talking
// into a black hole, or keep traffic DNATed that no rule sends there any
// more: those of a Service that just got its first endpoint (entries made
// while it had none), those NATed to an endpoint that went away, and
// those NATed through an address or NodePort that is no longer the
// Service's (the Service deleted, an externalIP dropped, or an address
// found reserved: UDP entries live as long as traffic keeps coming, so a
// Service that once captured a node's VXLAN flow would hold it for good).
func (c *Controller) clearConntrack(prev, cur *Model) error {
	type key struct {
		name   string
		family int
	}
	index := func(m *Model) map[key]*ServicePort {
		out := map[key]*ServicePort{}
		for _, sp := range m.Ports {
			if sp.Protocol == "udp" {
				out[key{sp.Name(), sp.Family}] = sp
			}
		}
		return out
	}
	before, now := index(prev), index(cur)
	var errs []error
	del := func(sp *ServicePort, dst netip.Addr, port uint16, backend netip.Addr) {
		errs = append(errs, c.o.Conntrack.Delete(sp.Family, dst, port, backend))
	}
	// What went: every old destination the port no longer has, for each
	// endpoint it NATed to.
	for k, old := range before {
		sp := now[k]
		for _, d := range udpDests(old) {
			if sp != nil && slices.Contains(udpDests(sp), d) {
				continue
			}
			for _, e := range old.Endpoints {
				del(old, d.addr, d.port, e.Addr)
			}
		}
	}
	for k, sp := range now {
		old := before[k]
		if len(sp.ClusterEndpoints()) > 0 && (old == nil || len(old.ClusterEndpoints()) == 0) {
			for _, d := range udpDests(sp) {
				del(sp, d.addr, d.port, netip.Addr{})
			}
		}
		if old == nil {
			continue
		}
		for _, e := range old.ClusterEndpoints() {
			if slices.ContainsFunc(sp.ClusterEndpoints(), func(n Endpoint) bool { return n.AddrPort() == e.AddrPort() }) {
				continue
			}
			for _, d := range udpDests(sp) {
				del(sp, d.addr, d.port, e.Addr)
			}
		}
	}
	return errors.Join(errs...)
}

// udpDest is where a port's clients send: an address and port, or any
// local address (invalid addr) at the NodePort.
type udpDest struct {
	addr netip.Addr
	port uint16
}

func udpDests(sp *ServicePort) []udpDest {
	out := []udpDest{{sp.ClusterIP, sp.Port}}
	for _, a := range sp.External {
		out = append(out, udpDest{a, sp.Port})
	}
	if sp.NodePort != 0 {
		out = append(out, udpDest{netip.Addr{}, sp.NodePort})
	}
	return out
}

// Metrics are the proxy's Prometheus metrics.
type Metrics struct {
	Duration    *prometheus.HistogramVec
	Programming prometheus.Histogram
	Rules       prometheus.Gauge
	LastSync    prometheus.Gauge
	Skipped     *prometheus.GaugeVec
	Repairs     prometheus.Counter
}

// NewMetrics registers the proxy's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skein_proxy_sync_duration_seconds", Help: "Time a service-proxy sync took, by mode (full, partial).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"mode"}),
		Programming: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skein_proxy_network_programming_duration_seconds",
			Help:    "Time from an EndpointSlice's last-change-trigger-time to its rules applied.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		Rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_proxy_rules", Help: "Rules and map elements the service proxy last wrote.",
		}),
		LastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_proxy_last_sync_timestamp_seconds", Help: "When the last successful service-proxy sync ended.",
		}),
		Skipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skein_proxy_objects_skipped", Help: "Services, ports and endpoints left out of the rules, by reason.",
		}, []string{"reason"}),
	}
	m.Repairs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "skein_proxy_repairs_total",
		Help: "Full syncs made because the service rules in the kernel were changed by something else.",
	})
	reg.MustRegister(m.Duration, m.Programming, m.Rules, m.LastSync, m.Skipped, m.Repairs)
	return m
}
