// Command skeind is skein's node daemon. It reads the cluster (from the
// Kubernetes API, or a static file of Node objects), writes the node's
// CNI conflist, programs the VXLAN overlay to every other node's pod CIDR,
// masquerades traffic that leaves the cluster and, in place of
// kube-proxy, installs the rules behind Services (nftables or iptables).
// Exiting leaves the dataplane in place; `skeind cleanup` removes it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/health"
	"github.com/skein-net/skein/daemon/runner"
)

// Version is set at build time.
var Version = "dev"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = run(log, args)
	case "cleanup":
		err = cleanup(log, args)
	case "install-cni":
		err = installCNI(log, args)
	case "version":
		fmt.Println("skeind", Version)
	default:
		err = fmt.Errorf("unknown command %q (run, cleanup, install-cni, version)", cmd)
	}
	if err != nil {
		log.Error("skeind", "err", err)
		os.Exit(1)
	}
}

// cleanup removes everything skein owns on the node: each controller's
// Cleanup (the conflist, the VXLAN device with its routes and entries,
// the masquerade table and forward chain, the Service rules of either
// backend).
func cleanup(log *slog.Logger, args []string) error {
	f, _, err := parseFlags(append([]string{"--node-name", "cleanup"}, args...), os.Environ())
	if err != nil {
		return err
	}
	ctx := context.Background()
	ctrls, err := newControllers(ctx, f, log, health.NewMetrics(), false)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range ctrls {
		if err := c.Cleanup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	errs = append(errs, cleanupProxy(ctx, "", log))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("removed the conflist, the overlay device, the rules and chains", "conflist", f.conflist)
	return nil
}

type daemon struct {
	f       *flags
	log     *slog.Logger
	latest  atomic.Pointer[cluster.State]
	ready   *health.Readiness
	metrics *health.Metrics
}

func run(log *slog.Logger, args []string) error {
	f, unknown, err := parseFlags(args, os.Environ())
	if err != nil {
		return err
	}
	for _, key := range unknown {
		log.Warn("ignoring an environment variable that names no skeind flag", "variable", key)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := &daemon{f: f, log: log, ready: &health.Readiness{}, metrics: health.NewMetrics()}
	ctrls, err := newControllers(ctx, f, log, d.metrics, true)
	if err != nil {
		return err
	}
	healthErr := make(chan error, 1)
	go func() {
		healthErr <- health.Serve(ctx, f.healthAddr, health.Options{Ready: d.ready, Metrics: d.metrics, Profiling: f.profiling})
	}()

	// One runner per controller: each syncs at its own pace, and one that
	// fails backs off without holding the others.
	runners := make([]*runner.Runner, len(ctrls))
	services := false
	for i, c := range ctrls {
		d.ready.Set(c.name, "no complete snapshot of the cluster yet")
		opts := runner.Options{MinInterval: f.minInterval, Resync: f.resync}
		if c.name == "proxy" {
			// The Service rules follow a burst of API writes as closely
			// as their cost allows: by default ten times the last sync's
			// duration (a tenth of a CPU at most under continuous
			// change), at least 50 ms, at most --min-sync-interval.
			opts.CostFactor = f.costFactor
		}
		if c.from != nil {
			// A follower is woken once per sync of the one it follows,
			// which is rate-limited already: it adds no wait of its own.
			opts.MinInterval = 10 * time.Millisecond
		}
		runners[i] = runner.New(d.syncer(c, ctrls, runners), opts)
		services = services || c.services
	}

	updates := make(chan *cluster.State)
	srcHealth := d.sourceHealth()
	var src cluster.Source = &cluster.FileSource{Path: f.clusterFile, Log: log, Health: srcHealth}
	if f.clusterFile == "" {
		client, err := cluster.NewClient(f.kubeconfig)
		if err != nil {
			return err
		}
		src = &cluster.KubeSource{Client: client, Log: log, Services: services, Health: srcHealth}
	}
	go func() {
		if err := src.Run(ctx, updates); err != nil {
			log.Error("cluster source stopped", "err", err)
		}
	}()
	go d.dispatch(ctx, updates, ctrls, runners)
	log.Info("skeind started", "version", Version, "node", f.nodeName, "cluster-file", f.clusterFile, "kubeconfig", f.kubeconfig)
	for _, r := range runners {
		go r.Run(ctx)
	}
	select {
	case <-ctx.Done():
		log.Info("skeind stopping; the dataplane stays in place")
		return nil
	case err := <-healthErr:
		return err
	}
}

// dispatch keeps the latest snapshot and wakes the controllers that read
// what changed in it. A controller is woken only when what it reads
// changed (its periodic resync reconciles regardless): with thousands of
// Services, an endpoint's change must not cost an overlay sync. Followers
// are woken by the one they follow.
func (d *daemon) dispatch(ctx context.Context, updates <-chan *cluster.State, ctrls []named, runners []*runner.Runner) {
	var last *cluster.State
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-updates:
			d.latest.Store(st)
			nodes := last == nil || !reflect.DeepEqual(last.Nodes, st.Nodes)
			svcs := last == nil || !slices.Equal(last.Services, st.Services) || !slices.Equal(last.EndpointSlices, st.EndpointSlices)
			for i, c := range ctrls {
				if c.from == nil && (nodes || (c.services && svcs)) {
					if c.queued != nil {
						c.queued()
					}
					runners[i].Trigger()
				}
			}
			last = st
		}
	}
}

// syncer is one controller's reconcile from the latest snapshot (or,
// for one that follows another, from the snapshot that one last
// programmed): nothing before the first complete one; its duration, its
// errors and its readiness reported. The runners are filled in before
// any runs.
func (d *daemon) syncer(c named, ctrls []named, runners []*runner.Runner) func(context.Context) error {
	return func(ctx context.Context) error {
		st := d.latest.Load()
		if c.from != nil {
			st = c.from.Load()
		}
		if st == nil {
			return nil
		}
		if c.before != nil {
			c.before(st)
		}
		start := time.Now()
		err := c.Sync(ctx, st)
		d.metrics.SyncDuration.WithLabelValues(c.name).Observe(time.Since(start).Seconds())
		if err != nil {
			d.metrics.SyncErrors.WithLabelValues(c.name, "sync").Inc()
			d.ready.Set(c.name, "the last sync failed: "+err.Error())
			d.log.Error("sync failed; what was programmed stays, will retry", "controller", c.name, "err", err)
			return err
		}
		if c.programmed != nil {
			c.programmed.Store(st)
			for i, o := range ctrls {
				if o.from == c.programmed {
					runners[i].Trigger()
				}
			}
		}
		why := c.Ready()
		if why != "" && c.refused != nil {
			if reason := c.refused(); reason != "" {
				d.metrics.SyncErrors.WithLabelValues(c.name, reason).Inc()
			}
		}
		d.ready.Set(c.name, why)
		return nil
	}
}

// sourceHealth is the cluster source's health, reported in
// skein_source_errors_total, skein_source_snapshot_age_seconds (0 while
// the source reads the cluster, else how long since it last did) and
// /readyz once the source has failed for --source-stale-after.
func (d *daemon) sourceHealth() *cluster.Health {
	h := &cluster.Health{OnError: func(reason string) { d.metrics.SourceErrors.WithLabelValues(reason).Inc() }}
	d.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "skein_source_snapshot_age_seconds",
		Help: "0 while the cluster source reads the cluster; while it fails, the time since it last read it.",
	}, func() float64 {
		st := h.Status()
		if st.FailingSince.IsZero() || st.LastGood.IsZero() {
			return 0
		}
		return time.Since(st.LastGood).Seconds()
	}))
	d.ready.Check("source", func() string {
		st := h.Status()
		if st.FailingSince.IsZero() {
			return ""
		}
		if failing := time.Since(st.FailingSince); failing >= d.f.staleAfter {
			return fmt.Sprintf("the cluster source has failed for %s (last error: %s); the dataplane keeps the last good snapshot",
				failing.Round(time.Second), st.LastError)
		}
		return ""
	})
	return h
}
