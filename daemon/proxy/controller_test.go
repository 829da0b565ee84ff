package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
)

// fakeBackend records how it was asked to sync and fails when told to.
type fakeBackend struct {
	fail  bool
	syncs []string
}

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Sync(_ context.Context, m *Model, full bool) (int, error) {
	f.syncs = append(f.syncs, fmt.Sprintf("full=%v ports=%d", full, len(m.Ports)))
	if f.fail {
		return 0, errors.New("transaction refused")
	}
	return len(m.Ports), nil
}

func (f *fakeBackend) Cleanup(context.Context) error { return nil }

// fakeConntrack records what would be deleted.
type fakeConntrack struct{ deleted []string }

func (f *fakeConntrack) Delete(fam int, dst netip.Addr, port uint16, backend netip.Addr) error {
	f.deleted = append(f.deleted, fmt.Sprintf("v%d %v:%d via %v", fam, dst, port, backend))
	return nil
}

func state(t *testing.T, edit func(string) string) *cluster.State {
	t.Helper()
	st, err := cluster.ParseFile([]byte(edit(proxytest.ClusterYAML)))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func same(s string) string { return s }

// TestControllerFullAfterFailure: after a failed transaction the next
// sync rewrites everything; otherwise syncs are partial.
func TestControllerFullAfterFailure(t *testing.T) {
	b := &fakeBackend{}
	c := New(b, Options{NodeName: "node1", Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	st := state(t, same)
	if err := c.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	b.fail = true
	if err := c.Sync(ctx, st); err == nil {
		t.Fatal("a refused transaction was not reported")
	}
	if c.Ready() == "" {
		t.Error("ready after a failed sync with nothing applied since")
	}
	b.fail = false
	if err := c.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	// The refused sync is tried once more without the Services changed
	// since the last good one (none): no object is to blame.
	want := []string{"full=true ports=9", "full=false ports=9", "full=false ports=9", "full=false ports=9", "full=true ports=9"}
	if diff := cmp.Diff(want, b.syncs); diff != "" {
		t.Errorf("syncs (-want +got):\n%s", diff)
	}
}

// TestControllerConntrack: a UDP Service's first endpoint clears the
// entries to its address; an endpoint that leaves clears those NATed to
// it; the first sync clears nothing (it does not know what came before).
func TestControllerConntrack(t *testing.T) {
	ct := &fakeConntrack{}
	c := New(&fakeBackend{}, Options{NodeName: "node1", Log: slog.New(slog.DiscardHandler), Conntrack: ct})
	ctx := context.Background()
	noDNS := func(s string) string {
		s = strings.Replace(s, "- {addresses: [10.244.1.9], nodeName: node1}\n- {addresses: [10.244.2.9], nodeName: node2}\n", "", 1)
		return strings.Replace(s, "- {addresses: [\"fd00:10:244:2::9\"], nodeName: node2}\n", "", 1)
	}
	oneLeft := func(s string) string {
		return strings.Replace(s, "- {addresses: [10.244.2.9], nodeName: node2}\n", "", 1)
	}
	for _, step := range []struct {
		edit func(string) string
		want []string
	}{
		{noDNS, nil},
		{same, []string{"v4 10.96.0.53:53 via invalid IP", "v6 fd00:96::53:53 via invalid IP"}},
		{oneLeft, []string{"v4 10.96.0.53:53 via 10.244.2.9"}},
		// The Service deleted: what was NATed to its endpoints goes.
		{func(s string) string { return oneLeft(strings.Replace(s, "name: dns,", "name: dns-gone,", 1)) },
			[]string{"v4 10.96.0.53:53 via 10.244.1.9", "v6 fd00:96::53:53 via fd00:10:244:2::9"}},
	} {
		ct.deleted = nil
		if err := c.Sync(ctx, state(t, step.edit)); err != nil {
			t.Fatal(err)
		}
		slices.Sort(ct.deleted)
		if diff := cmp.Diff(step.want, ct.deleted); diff != "" {
			t.Errorf("conntrack deletions (-want +got):\n%s", diff)
		}
	}
}

// refusingBackend refuses every model that holds a port of one Service,
// as a kernel refuses a rule it cannot take.
type refusingBackend struct {
	fakeBackend
	refuse  string // "namespace/name"
	applied *Model
}

func (r *refusingBackend) Sync(ctx context.Context, m *Model, full bool) (int, error) {
	r.syncs = append(r.syncs, fmt.Sprintf("full=%v ports=%d", full, len(m.Ports)))
	for _, sp := range m.Ports {
		if serviceKey(sp) == r.refuse {
			return 0, errors.New("the kernel says no")
		}
	}
	r.applied = m
	return len(m.Ports), nil
}

// TestControllerIsolatesRefusedService: one Service whose rules the
// kernel refuses is left out, reported and remembered; every other
// Service is programmed; it is tried again once it changes.
func TestControllerIsolatesRefusedService(t *testing.T) {
	b := &refusingBackend{refuse: "shop/api"}
	c := New(b, Options{NodeName: "node1", Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	programmed := func() []string {
		var out []string
		for _, sp := range b.applied.Ports {
			if k := serviceKey(sp); !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
		return out
	}
	st := state(t, same)
	if err := c.Sync(ctx, st); err != nil {
		t.Fatalf("a sync with one refused Service failed as a whole: %v", err)
	}
	if c.Ready() != "" {
		t.Errorf("not ready after the refused Service was isolated: %s", c.Ready())
	}
	want := []string{"kube-system/dns", "shop/bad-port", "shop/empty", "shop/local-only", "shop/shop-front", "shop/web"}
	if diff := cmp.Diff(want, programmed()); diff != "" {
		t.Errorf("Services programmed (-want +got):\n%s", diff)
	}
	if !strings.Contains(fmt.Sprint(c.lastPrb), "shop/api|kernel-refused") {
		t.Errorf("the refused Service is not reported: %s", c.lastPrb)
	}
	// Unchanged: left out at once, without trying it again.
	b.syncs = nil
	if err := c.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	if len(b.syncs) != 1 {
		t.Errorf("syncs of an unchanged snapshot: %v, want one", b.syncs)
	}
	// Changed and now acceptable: tried again, and programmed.
	b.refuse = ""
	if err := c.Sync(ctx, state(t, func(s string) string { return strings.Replace(s, "clusterIP: 10.96.0.30", "clusterIP: 10.96.0.31", 1) })); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(programmed(), "shop/api") {
		t.Errorf("the changed Service is still left out: %v", programmed())
	}
}

// checkingBackend can tell whether its rules were changed behind it.
type checkingBackend struct {
	fakeBackend
	drift  string
	checks int
}

func (c *checkingBackend) Drift(context.Context) string {
	c.checks++
	return c.drift
}

// TestControllerFullSyncs: with a backend that can check its rules, a
// periodic sync rewrites everything only when they changed behind it
// (counted) or FullEvery has passed; without, every CheckEvery.
func TestControllerFullSyncs(t *testing.T) {
	ctx := context.Background()
	st := state(t, same)
	run := func(b Backend, o Options, before func(i int)) {
		t.Helper()
		o.NodeName, o.Log = "node1", slog.New(slog.DiscardHandler)
		c := New(b, o)
		for i := range 4 {
			before(i)
			if err := c.Sync(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
	}
	full := func(syncs []string) []bool {
		var out []bool
		for _, s := range syncs {
			out = append(out, strings.HasPrefix(s, "full=true"))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		o     Options
		drift map[int]string // before sync i
		want  []bool
		fixes float64
	}{
		{"intact, checked every sync", Options{CheckEvery: time.Nanosecond}, nil, []bool{true, false, false, false}, 0},
		{"changed behind it", Options{CheckEvery: time.Nanosecond}, map[int]string{2: "a chain flushed"}, []bool{true, false, true, false}, 1},
		{"changed, not checked yet", Options{CheckEvery: time.Hour}, map[int]string{1: "a chain flushed"}, []bool{true, false, false, false}, 0},
		{"intact, FullEvery passed", Options{CheckEvery: time.Nanosecond, FullEvery: time.Nanosecond}, nil, []bool{true, true, true, true}, 0},
	} {
		b := &checkingBackend{}
		tc.o.Metrics = NewMetrics(prometheus.NewRegistry())
		run(b, tc.o, func(i int) { b.drift = tc.drift[i] })
		if diff := cmp.Diff(tc.want, full(b.syncs)); diff != "" {
			t.Errorf("%s: full syncs (-want +got):\n%s", tc.name, diff)
		}
		if got := testutil.ToFloat64(tc.o.Metrics.Repairs); got != tc.fixes {
			t.Errorf("%s: %v repairs counted, want %v", tc.name, got, tc.fixes)
		}
		if tc.o.CheckEvery == time.Hour && b.checks != 0 {
			t.Errorf("%s: checked %d times within CheckEvery", tc.name, b.checks)
		}
	}
	for _, every := range []time.Duration{time.Nanosecond, time.Hour} {
		b := &fakeBackend{}
		run(b, Options{CheckEvery: every}, func(int) {})
		want := []bool{true, every == time.Nanosecond, every == time.Nanosecond, every == time.Nanosecond}
		if diff := cmp.Diff(want, full(b.syncs)); diff != "" {
			t.Errorf("a backend that cannot check, CheckEvery %v: full syncs (-want +got):\n%s", every, diff)
		}
	}
}
