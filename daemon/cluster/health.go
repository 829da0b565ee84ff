package cluster

import (
	"sync"
	"time"
)

// Health is what a source tells of itself: whether its snapshot is known
// to be current, and since when it has failed to read the cluster. The
// daemon turns it into metrics and /readyz; the dataplane keeps the last
// good snapshot whatever it says. The zero value is ready, and a nil
// *Health records nothing.
type Health struct {
	mu           sync.Mutex
	lastGood     time.Time
	failingSince time.Time
	lastErr      string
	// OnError, when set, is called for every failed read with a short
	// reason (a metric label).
	OnError func(reason string)
}

// HealthStatus is a Health at one moment.
type HealthStatus struct {
	LastGood     time.Time // the source last read the cluster successfully
	FailingSince time.Time // zero while the last read succeeded
	LastError    string
}

// Good records a successful read: the snapshot is current.
func (h *Health) Good() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastGood, h.failingSince, h.lastErr = time.Now(), time.Time{}, ""
}

// Bad records a failed read.
func (h *Health) Bad(reason string, err error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	if h.failingSince.IsZero() {
		h.failingSince = time.Now()
	}
	h.lastErr = err.Error()
	h.mu.Unlock()
	if h.OnError != nil {
		h.OnError(reason)
	}
}

// Status returns the health now.
func (h *Health) Status() HealthStatus {
	if h == nil {
		return HealthStatus{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return HealthStatus{LastGood: h.lastGood, FailingSince: h.failingSince, LastError: h.lastErr}
}
