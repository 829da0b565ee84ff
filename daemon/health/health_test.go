package health

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestEndpoints: /readyz names every part that is not ready, sorted,
// checks included, and answers 200 once none is; /healthz always
// answers; /metrics shows skeind's metrics.
func TestEndpoints(t *testing.T) {
	ready, m := &Readiness{}, NewMetrics()
	srv := httptest.NewServer(Handler(Options{Ready: ready, Metrics: m}))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	stale := "the cluster source has failed for 6m"
	check := ""
	ready.Set("overlay", "node \"a\" is not in the cluster yet")
	ready.Set("conflist", "no snapshot yet")
	ready.Check("source", func() string { return check })
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "conflist: no snapshot yet; overlay: node \"a\"") {
		t.Errorf("readyz = %d %q, want 503 naming both parts in order", code, body)
	}
	ready.Set("overlay", "")
	ready.Set("conflist", "")
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("readyz = %d %q with every part ready", code, body)
	}
	check = stale
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "source: "+stale) {
		t.Errorf("readyz = %d %q, want 503 from the check", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz = %d", code)
	}
	m.SourceErrors.WithLabelValues("parse").Inc()
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `skein_source_errors_total{reason="parse"} 1`) {
		t.Errorf("metrics = %d, without the source error:\n%s", code, body)
	}
}

// TestProfiling: /debug/pprof/ is served only when asked for.
func TestProfiling(t *testing.T) {
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(Handler(Options{Ready: &Readiness{}, Metrics: NewMetrics(), Profiling: on}))
		resp, err := http.Get(srv.URL + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		served := resp.StatusCode == 200 && strings.Contains(string(body), "heap profile")
		if served != on {
			t.Errorf("profiling %v: heap profile = %d, served %v", on, resp.StatusCode, served)
		}
	}
}
