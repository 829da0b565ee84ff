// Package health serves skeind's /healthz (the process answers), /readyz
// (the first sync is done and the conflist written) and /metrics
// (Prometheus), and holds the metrics every controller reports to.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are skeind's Prometheus metrics.
type Metrics struct {
	Registry     *prometheus.Registry
	SyncDuration *prometheus.HistogramVec
	SyncErrors   *prometheus.CounterVec
	Peers        prometheus.Gauge
	Skipped      *prometheus.GaugeVec
	SourceErrors *prometheus.CounterVec
}

// NewMetrics registers the metrics on a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		SyncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skein_sync_duration_seconds", Help: "Time a controller's sync took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"controller"}),
		SyncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_sync_errors_total", Help: "Failed syncs, by controller and reason.",
		}, []string{"controller", "reason"}),
		Peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_overlay_peers", Help: "Nodes the overlay has programmed.",
		}),
		Skipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skein_overlay_nodes_skipped", Help: "Nodes left out of the overlay, by reason.",
		}, []string{"reason"}),
	}
	m.SourceErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_source_errors_total", Help: "Failed reads of the cluster (the file or the API server), by reason.",
	}, []string{"reason"})
	m.Registry.MustRegister(m.SyncDuration, m.SyncErrors, m.Peers, m.Skipped, m.SourceErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Readiness is what keeps the daemon from being ready: per part (a
// controller), why it is not, or nothing once it is.
type Readiness struct {
	mu     sync.Mutex
	why    map[string]string
	checks map[string]func() string
}

// Check makes part's readiness what check returns at each request ("":
// ready), for a condition that grows with time rather than with a sync.
func (r *Readiness) Check(part string, check func() string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checks == nil {
		r.checks = map[string]func() string{}
	}
	r.checks[part] = check
}

// Set records why part is not ready; "" marks it ready.
func (r *Readiness) Set(part, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.why == nil {
		r.why = map[string]string{}
	}
	if why == "" {
		delete(r.why, part)
	} else {
		r.why[part] = why
	}
}

// Err returns why the daemon is not ready, or nil.
func (r *Readiness) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for part, why := range r.why {
		parts = append(parts, part+": "+why)
	}
	for part, check := range r.checks {
		if why := check(); why != "" {
			parts = append(parts, part+": "+why)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	sort.Strings(parts)
	return errors.New(strings.Join(parts, "; "))
}

// Options are what the health server serves.
type Options struct {
	Ready   *Readiness
	Metrics *Metrics
	// Profiling serves Go's profiles under /debug/pprof/, as kube-proxy's
	// --profiling: what a sync costs on a busy node, measured there.
	Profiling bool
}

// Handler serves /healthz (the process answers), /readyz (200, or 503
// with every reason it is not ready), /metrics, and with Profiling
// /debug/pprof/.
func Handler(o Options) http.Handler {
	ready, m := o.Ready, o.Metrics
	mux := http.NewServeMux()
	// A reply that cannot be written means the client left; nothing to do.
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready.Err(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	if o.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Serve listens on addr until ctx ends.
func Serve(ctx context.Context, addr string, o Options) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: Handler(o), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
