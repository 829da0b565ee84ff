// Package runner runs one controller's sync: level-triggered, from one
// coalescing trigger, once per minimum interval on average (two may run
// back to back after a quiet spell, as in kube-proxy's bounded-frequency
// runner), again every resync period, and again after a failure with
// exponential backoff. The interval may follow the cost of a sync (a
// multiple of the last one's duration, within a floor and the minimum
// interval): a cheap sync is not held back a whole second, an expensive
// one still cannot take more than a share of the CPU.
package runner

import (
	"context"
	"time"
)

// Options tune a Runner.
type Options struct {
	MinInterval time.Duration // default 1s: the rate, one sync per interval
	Resync      time.Duration // default 1m
	MaxBackoff  time.Duration // default 30s
	// CostFactor, when above 0, makes the interval CostFactor times the
	// last sync's duration, at least Floor and at most MinInterval: with
	// 10, syncs take at most a tenth of a CPU under continuous change.
	CostFactor float64
	// Floor is the shortest interval under CostFactor (default 50ms): at
	// most 1/Floor syncs a second (and the burst), however cheap.
	Floor time.Duration
}

// Runner runs Sync.
type Runner struct {
	sync    func(context.Context) error
	opts    Options
	trigger chan struct{}
}

// New returns a runner of sync.
func New(sync func(context.Context) error, o Options) *Runner {
	if o.MinInterval <= 0 {
		o.MinInterval = time.Second
	}
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Floor <= 0 {
		o.Floor = 50 * time.Millisecond
	}
	o.Floor = min(o.Floor, o.MinInterval)
	return &Runner{sync: sync, opts: o, trigger: make(chan struct{}, 1)}
}

// Trigger asks for a sync; triggers that come while one is pending fold
// into it.
func (r *Runner) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Interval is the interval that follows a sync of duration took.
func (r *Runner) Interval(took time.Duration) time.Duration {
	if r.opts.CostFactor <= 0 {
		return r.opts.MinInterval
	}
	return min(max(time.Duration(r.opts.CostFactor*float64(took)), r.opts.Floor), r.opts.MinInterval)
}

// burst is how many syncs may run back to back: after a quiet spell a
// change is synced at once even if one was synced just before it.
const burst = 2

// Run syncs on every trigger until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	// A token bucket: a sync takes a token; tokens come back one per
	// interval, up to burst.
	tokens, refilled := float64(burst), time.Now()
	interval := r.opts.MinInterval
	refill := func() {
		now := time.Now()
		tokens = min(burst, tokens+float64(now.Sub(refilled))/float64(interval))
		refilled = now
	}
	backoff := time.Duration(0)
	resync := time.NewTimer(r.opts.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-resync.C:
		case <-retry:
		}
		if refill(); tokens < 1 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration((1 - tokens) * float64(interval))):
			}
			refill()
		}
		// Triggers that came while waiting are served by this sync.
		select {
		case <-r.trigger:
		default:
		}
		tokens--
		start := time.Now()
		err := r.sync(ctx)
		if r.opts.CostFactor > 0 {
			// Tokens already earned keep their worth: refill first at the
			// old rate.
			refill()
			interval = r.Interval(time.Since(start))
		}
		retry = nil
		if err != nil {
			backoff = min(max(2*backoff, r.opts.MinInterval), r.opts.MaxBackoff)
			retry = time.After(backoff)
		} else {
			backoff = 0
		}
		resync.Reset(r.opts.Resync)
	}
}
