package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skein-net/skein/daemon/proxy"
)

// loopback is a Listen that opens ":port" on 127.0.0.1 only: tests
// never listen on the host's other addresses.
func loopback(network, addr string) (net.Listener, error) {
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	return net.Listen(network, addr)
}

// freePort is a loopback TCP port nothing listens on.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func get(t *testing.T, url string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("GET %s: body %q is not JSON: %v", url, raw, err)
	}
	return resp.StatusCode, body, resp.Header
}

// TestProxyHealth: /healthz and /livez as kube-proxy answers them.
func TestProxyHealth(t *testing.T) {
	s := New(Options{Timeout: 200 * time.Millisecond, Listen: loopback})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	check := func(step, path string, code int, eligible any) {
		t.Helper()
		got, body, hdr := get(t, srv.URL+path)
		if got != code {
			t.Errorf("%s: %s answered %d, want %d (%v)", step, path, got, code, body)
		}
		if body["nodeEligible"] != eligible {
			t.Errorf("%s: %s nodeEligible %v, want %v", step, path, body["nodeEligible"], eligible)
		}
		if hdr.Get("Content-Type") != "application/json" || body["healthy"] == nil || body["currentTime"] == nil {
			t.Errorf("%s: %s: not kube-proxy's reply: %v %v", step, path, hdr, body)
		}
	}
	check("before the first sync", "/healthz", 503, false)
	check("before the first sync", "/livez", 200, nil)
	s.Queued()
	s.Synced(&proxy.Model{}, proxy.NodeStatus{Families: []int{4}, Eligible: true})
	check("synced", "/healthz", 200, true)
	check("synced", "/livez", 200, nil)
	if _, body, _ := get(t, srv.URL+"/healthz"); body["status"].(map[string]any)["IPv4"] == nil {
		t.Errorf("no IPv4 status: %v", body)
	}
	s.Queued()
	check("a change pending", "/healthz", 200, true)
	time.Sleep(250 * time.Millisecond)
	check("a change pending past the timeout", "/healthz", 503, true)
	check("a change pending past the timeout", "/livez", 503, nil)
	s.Synced(&proxy.Model{}, proxy.NodeStatus{Families: []int{4}, Eligible: false})
	check("being deleted", "/healthz", 503, false)
	check("being deleted", "/livez", 200, nil)
}

// TestServiceHealthCheck: a health-check node port opens with its
// Service, answers 200 with a local ready endpoint and 503 without,
// moves, closes, and a port another process holds is reported and
// opened once free.
func TestServiceHealthCheck(t *testing.T) {
	s := New(Options{Timeout: time.Minute, Listen: loopback})
	defer s.Close()
	node := proxy.NodeStatus{Families: []int{4}, Eligible: true}
	p1, p2 := freePort(t), freePort(t)
	url := func(p uint16) string { return fmt.Sprintf("http://127.0.0.1:%d/", p) }
	sync := func(checks ...proxy.HealthCheck) []proxy.Problem {
		t.Helper()
		return s.Synced(&proxy.Model{HealthChecks: checks}, node)
	}
	if probs := sync(proxy.HealthCheck{Namespace: "ns", Service: "web", Port: p1, LocalReady: 2}); len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	code, body, hdr := get(t, url(p1))
	if code != 200 || body["localEndpoints"] != 2.0 || body["serviceProxyHealthy"] != true ||
		body["service"].(map[string]any)["name"] != "web" || hdr.Get("X-Load-Balancing-Endpoint-Weight") != "2" {
		t.Errorf("with two local endpoints: %d %v %v", code, body, hdr)
	}
	sync(proxy.HealthCheck{Namespace: "ns", Service: "web", Port: p1, LocalReady: 0})
	if code, body, _ := get(t, url(p1)); code != 503 || body["localEndpoints"] != 0.0 {
		t.Errorf("with none: %d %v", code, body)
	}
	node.Eligible = false
	sync(proxy.HealthCheck{Namespace: "ns", Service: "web", Port: p1, LocalReady: 1})
	if code, body, _ := get(t, url(p1)); code != 503 || body["serviceProxyHealthy"] != false {
		t.Errorf("node being deleted: %d %v", code, body)
	}
	node.Eligible = true
	// The Service's port moves to p2: p1 closes.
	sync(proxy.HealthCheck{Namespace: "ns", Service: "web", Port: p2, LocalReady: 1})
	if code, _, _ := get(t, url(p2)); code != 200 {
		t.Errorf("on the new port: %d", code)
	}
	if _, err := http.Get(url(p1)); err == nil {
		t.Errorf("the old port still answers")
	}
	// Another process holds p1: reported, not fatal, opened once free.
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p1))
	if err != nil {
		t.Fatal(err)
	}
	probs := sync(proxy.HealthCheck{Namespace: "ns", Service: "web", Port: p2, LocalReady: 1},
		proxy.HealthCheck{Namespace: "ns", Service: "api", Port: p1, LocalReady: 1})
	if len(probs) != 1 || probs[0].Reason != "health-check-port-unavailable" || probs[0].Object != "Service ns/api" {
		t.Errorf("a held port: problems %v", probs)
	}
	if code, _, _ := get(t, url(p2)); code != 200 {
		t.Errorf("the other Service's port: %d", code)
	}
	held.Close()
	if probs := sync(proxy.HealthCheck{Namespace: "ns", Service: "web", Port: p2, LocalReady: 1},
		proxy.HealthCheck{Namespace: "ns", Service: "api", Port: p1, LocalReady: 1}); len(probs) != 0 {
		t.Errorf("once free: problems %v", probs)
	}
	if code, body, _ := get(t, url(p1)); code != 200 || body["service"].(map[string]any)["name"] != "api" {
		t.Errorf("once free: %d %v", code, body)
	}
	sync()
	for _, p := range []uint16{p1, p2} {
		if _, err := http.Get(url(p)); err == nil {
			t.Errorf("port %d still answers with no Service", p)
		}
	}
}

// TestServeRetries: a proxy health port another process holds is tried
// again, not fatal, and served once free; Serve ends with its context.
func TestServeRetries(t *testing.T) {
	opened := make(chan string, 1)
	tries := 0
	listen := func(network, _ string) (net.Listener, error) {
		if tries++; tries < 3 {
			return nil, errors.New("address already in use")
		}
		ln, err := net.Listen(network, "127.0.0.1:0")
		if err == nil {
			opened <- ln.Addr().String()
		}
		return ln, err
	}
	s := New(Options{Listen: listen})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ":10256", 10*time.Millisecond); close(done) }()
	select {
	case addr := <-opened:
		if code, _, _ := get(t, "http://"+addr+"/livez"); code != 200 {
			t.Errorf("/livez after the retries: %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the port was not tried again")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end with its context")
	}
}
