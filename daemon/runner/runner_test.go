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
