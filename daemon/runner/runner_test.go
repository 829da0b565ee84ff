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
