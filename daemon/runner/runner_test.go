package runner

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestCoalescesAndRetries(t *testing.T) {
	var calls atomic.Int32
	fail := atomic.Bool{}
	r := New(func(context.Context) error {
		calls.Add(1)
		if fail.Load() {
			return errors.New("boom")
		}
		return nil
	}, Options{MinInterval: 50 * time.Millisecond, Resync: time.Hour, MaxBackoff: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	for i := 0; i < 20; i++ {
		r.Trigger()
	}
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n < 1 || n > 2 {
		t.Fatalf("20 quick triggers ran %d syncs, want 1 or 2", n)
	}
	// A failing sync is retried without a trigger.
	fail.Store(true)
	before := calls.Load()
	r.Trigger()
	time.Sleep(600 * time.Millisecond)
	if n := calls.Load() - before; n < 3 {
		t.Fatalf("a failing sync ran %d times in 600ms, want retries", n)
	}
}

// TestRate: a steady stream of triggers runs one sync per interval, give
// or take the burst; after a quiet spell two changes in a row are synced
// at once.
func TestRate(t *testing.T) {
	const interval = 100 * time.Millisecond
	var calls atomic.Int32
	done := make(chan time.Time, 100)
	r := New(func(context.Context) error {
		calls.Add(1)
		done <- time.Now()
		return nil
	}, Options{MinInterval: interval, Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	stream := time.Now()
	for time.Since(stream) < 10*interval {
		r.Trigger()
		time.Sleep(interval / 20)
	}
	time.Sleep(interval)
	if n := calls.Load(); n < 9 || n > 13 {
		t.Errorf("a stream of triggers over 10 intervals ran %d syncs, want 10 to 12 (one an interval, and the burst of 2)", n)
	}
	time.Sleep(3 * interval) // quiet: the bucket fills
	for len(done) > 0 {
		<-done
	}
	for i := range 2 {
		start := time.Now()
		r.Trigger()
		at := <-done
		if d := at.Sub(start); d > interval/2 {
			t.Errorf("change %d after a quiet spell synced %s later, want at once", i+1, d)
		}
	}
	// The bucket is empty now: the third waits for a token.
	start := time.Now()
	r.Trigger()
	if d := (<-done).Sub(start); d < interval/2 {
		t.Errorf("a third change in a row synced after %s, want it to wait for the interval", d)
	}
}

// TestInterval: under CostFactor the interval is that multiple of the
// last sync's duration, within the floor and the minimum interval.
func TestInterval(t *testing.T) {
	r := New(func(context.Context) error { return nil }, Options{MinInterval: time.Second, CostFactor: 10, Floor: 20 * time.Millisecond})
	for _, tc := range []struct{ took, want time.Duration }{
		{0, 20 * time.Millisecond},
		{time.Millisecond, 20 * time.Millisecond},
		{24 * time.Millisecond, 240 * time.Millisecond},
		{300 * time.Millisecond, time.Second},
	} {
		if got := r.Interval(tc.took); got != tc.want {
			t.Errorf("after a sync of %s: interval %s, want %s", tc.took, got, tc.want)
		}
	}
	if got := New(func(context.Context) error { return nil }, Options{MinInterval: time.Second}).Interval(time.Millisecond); got != time.Second {
		t.Errorf("without CostFactor: interval %s, want the minimum interval", got)
	}
}

// TestCostRate: under a steady stream of triggers, cheap syncs run about
// one per CostFactor times their duration, and expensive ones no more
// often than the minimum interval allows.
func TestCostRate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		took     time.Duration
		min, max int32 // syncs over the stream
	}{
		// 5 ms x 10 = 50 ms: about 20 over a second, and the burst.
		{"cheap", 5 * time.Millisecond, 14, 24},
		// 150 ms x 10 = 1.5 s, capped at the minimum interval (400 ms):
		// about 2.5 over a second, and the burst.
		{"expensive", 150 * time.Millisecond, 3, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			r := New(func(context.Context) error {
				calls.Add(1)
				time.Sleep(tc.took)
				return nil
			}, Options{MinInterval: 400 * time.Millisecond, Resync: time.Hour, CostFactor: 10, Floor: 10 * time.Millisecond})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go r.Run(ctx)
			stream := time.Now()
			for time.Since(stream) < time.Second {
				r.Trigger()
				time.Sleep(2 * time.Millisecond)
			}
			cancel()
			if n := calls.Load(); n < tc.min || n > tc.max {
				t.Errorf("a second of triggers ran %d syncs of %s, want %d to %d", n, tc.took, tc.min, tc.max)
			}
		})
	}
}
