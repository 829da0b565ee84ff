// Package runner runs one controller's sync: level-triggered, from one
// coalescing trigger, at most once per minimum interval, again every
// resync period, and again after a failure with exponential backoff.
package runner

import (
	"context"
	"time"
)

// Options tune a Runner.
type Options struct {
	MinInterval time.Duration // default 1s
	Resync      time.Duration // default 1m
	MaxBackoff  time.Duration // default 30s
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

// Run syncs on every trigger until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	var last time.Time
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
		if wait := r.opts.MinInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		// Triggers that came while waiting are served by this sync.
		select {
		case <-r.trigger:
		default:
		}
		last = time.Now()
		err := r.sync(ctx)
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
