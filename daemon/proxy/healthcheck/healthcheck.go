// Package healthcheck answers what load balancers ask a node's Service
// proxy, with kube-proxy's ports, JSON and status codes, so that a load
// balancer cannot tell skeind from kube-proxy:
//   - the proxy health port (default :10256): /healthz, 200 when the
//     Service rules are current and the node may take traffic, 503 when
//     a change has waited for the rules longer than the timeout, before
//     the first sync, or while the node is being deleted; /livez, the
//     same without the node's eligibility (a liveness probe);
//   - for every LoadBalancer Service with externalTrafficPolicy: Local,
//     its healthCheckNodePort: 200 when this node has a ready endpoint
//     of the Service, 503 otherwise (or while the proxy is unhealthy),
//     opened and closed as such Services come and go.
package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skein-net/skein/daemon/proxy"
)

// Options tune a Server.
type Options struct {
	// NodePortAddresses narrows the health-check node ports to the local
	// addresses inside these prefixes, as NodePorts (empty: every one).
	NodePortAddresses []string
	// Timeout is how long a change may wait for the rules before the
	// proxy is unhealthy (kube-proxy: twice its sync period).
	Timeout time.Duration
	Log     *slog.Logger
	// Listen opens a listener (default net.Listen); a seam for tests.
	Listen func(network, addr string) (net.Listener, error)
}

// Server keeps the proxy's health and serves the health checks.
type Server struct {
	o Options

	mu           sync.Mutex
	lastUpdated  time.Time // the last sync that programmed the rules; zero before the first
	pendingSince time.Time // the oldest change not yet programmed; zero when none
	eligible     bool
	families     []int
	ports        map[uint16]*checkPort
}

// checkPort is one open health-check node port.
type checkPort struct {
	check   proxy.HealthCheck
	servers []*http.Server
}

// New returns a server; no port is open until Synced or Serve.
func New(o Options) *Server {
	if o.Listen == nil {
		o.Listen = net.Listen
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	return &Server{o: o, ports: map[uint16]*checkPort{}}
}

// Queued notes a change of the cluster that the rules do not hold yet.
func (s *Server) Queued() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pendingSince.IsZero() {
		s.pendingSince = time.Now()
	}
}

// Synced implements proxy.Health: the rules are current; the health-check
// node ports become m's. A port that cannot be opened (another process
// holds it) is reported and tried again at the next sync.
func (s *Server) Synced(m *proxy.Model, node proxy.NodeStatus) []proxy.Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastUpdated, s.pendingSince = time.Now(), time.Time{}
	s.eligible, s.families = node.Eligible, slices.Clone(node.Families)
	want := map[uint16]proxy.HealthCheck{}
	for _, hc := range m.HealthChecks {
		want[hc.Port] = hc
	}
	for port, cp := range s.ports {
		if _, ok := want[port]; !ok {
			s.o.Log.Info("closing a health-check node port", "service", cp.check.Namespace+"/"+cp.check.Service, "port", port)
			cp.close()
			delete(s.ports, port)
		}
	}
	var problems []proxy.Problem
	for port, hc := range want {
		if cp := s.ports[port]; cp != nil {
			cp.check = hc // the count, or the Service that has the port now
			continue
		}
		cp := &checkPort{check: hc}
		if err := s.open(cp); err != nil {
			problems = append(problems, proxy.Problem{Object: "Service " + hc.Namespace + "/" + hc.Service,
				Reason: "health-check-port-unavailable", Detail: err.Error()})
			continue
		}
		s.o.Log.Info("opened a health-check node port", "service", hc.Namespace+"/"+hc.Service, "port", port)
		s.ports[port] = cp
	}
	slices.SortFunc(problems, func(a, b proxy.Problem) int { return strings.Compare(a.Object, b.Object) })
	return problems
}

// open listens on the port: on every address, or on each local address
// inside NodePortAddresses.
func (s *Server) open(cp *checkPort) error {
	port := strconv.Itoa(int(cp.check.Port))
	addrs := []string{":" + port}
	if len(s.o.NodePortAddresses) > 0 {
		local, err := localAddrs(s.o.NodePortAddresses)
		if err != nil {
			return err
		}
		if len(local) == 0 {
			return fmt.Errorf("no local address inside --nodeport-addresses %v", s.o.NodePortAddresses)
		}
		addrs = addrs[:0]
		for _, a := range local {
			addrs = append(addrs, net.JoinHostPort(a.String(), port))
		}
	}
	for _, a := range addrs {
		ln, err := s.o.Listen("tcp", a)
		if err != nil {
			cp.close()
			return fmt.Errorf("health-check node port: %w", err)
		}
		srv := &http.Server{Handler: s.checkHandler(cp.check.Port), ReadHeaderTimeout: 5 * time.Second}
		cp.servers = append(cp.servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.o.Log.Error("health-check node port stopped", "addr", a, "err", err)
			}
		}()
	}
	return nil
}

func (cp *checkPort) close() {
	for _, srv := range cp.servers {
		_ = srv.Close() // its listener goes with it; nothing else to undo
	}
	cp.servers = nil
}

// localAddrs are the node's addresses inside the prefixes.
func localAddrs(prefixes []string) ([]netip.Addr, error) {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	var out []netip.Addr
	for _, ia := range ifaddrs {
		ipn, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		for _, p := range prefixes {
			if pp, err := netip.ParsePrefix(p); err == nil && pp.Contains(a) {
				out = append(out, a)
				break
			}
		}
	}
	return out, nil
}

// Close closes every health-check node port.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for port, cp := range s.ports {
		cp.close()
		delete(s.ports, port)
	}
}

// state is the proxy's health at now. Healthy as kube-proxy counts it:
// no change has waited longer than the timeout since the rules were
// first written (before that, only /healthz's synced says no).
type state struct {
	healthy, synced, eligible bool
	lastUpdated               time.Time
	families                  []int
}

func (s *Server) state(now time.Time) state {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := state{synced: !s.lastUpdated.IsZero(), eligible: s.eligible, lastUpdated: s.lastUpdated, families: s.families}
	st.healthy = !st.synced || s.pendingSince.IsZero() || now.Sub(s.pendingSince) < s.o.Timeout
	return st
}

// proxyHealth is the proxy health port's body, field for field
// kube-proxy's.
type proxyHealth struct {
	LastUpdated  time.Time               `json:"lastUpdated"`
	CurrentTime  time.Time               `json:"currentTime"`
	NodeEligible *bool                   `json:"nodeEligible,omitempty"`
	Healthy      bool                    `json:"healthy"`
	Status       map[string]familyHealth `json:"status,omitempty"`
}

type familyHealth struct {
	LastUpdated time.Time `json:"lastUpdated"`
	Healthy     bool      `json:"healthy"`
}

// Handler serves /healthz and /livez.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { s.proxyHealth(w, true) })
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { s.proxyHealth(w, false) })
	return mux
}

func (s *Server) proxyHealth(w http.ResponseWriter, withNode bool) {
	now := time.Now()
	st := s.state(now)
	body := proxyHealth{LastUpdated: st.lastUpdated, CurrentTime: now, Healthy: st.healthy, Status: map[string]familyHealth{}}
	for _, f := range st.families {
		body.Status["IPv"+strconv.Itoa(f)] = familyHealth{LastUpdated: st.lastUpdated, Healthy: st.healthy}
	}
	ok := st.healthy
	if withNode {
		eligible := st.synced && st.eligible
		body.NodeEligible = &eligible
		ok = ok && eligible
	}
	if ok {
		body.LastUpdated = now // as kube-proxy: a healthy proxy is current
	}
	writeJSON(w, ok, body, nil)
}

// serviceHealth is a health-check node port's body, field for field
// kube-proxy's.
type serviceHealth struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (s *Server) checkHandler(port uint16) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := s.state(time.Now())
		s.mu.Lock()
		cp := s.ports[port]
		var hc proxy.HealthCheck
		if cp != nil {
			hc = cp.check
		}
		s.mu.Unlock()
		if cp == nil { // closed while the request came in
			http.Error(w, "no health check on this port", http.StatusServiceUnavailable)
			return
		}
		var body serviceHealth
		body.Service.Namespace, body.Service.Name = hc.Namespace, hc.Service
		body.LocalEndpoints = hc.LocalReady
		body.ServiceProxyHealthy = st.healthy && st.eligible
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(hc.LocalReady))
		writeJSON(w, hc.LocalReady > 0 && body.ServiceProxyHealthy, body, []byte("\t"))
	})
}

func writeJSON(w http.ResponseWriter, ok bool, body any, indent []byte) {
	var out []byte
	var err error
	if indent != nil {
		out, err = json.MarshalIndent(body, "", string(indent))
	} else {
		out, err = json.Marshal(body)
	}
	if err != nil { // plain structs: cannot fail
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(out) // a reply that cannot be written: the client left
}

// Serve serves the proxy health port on addr until ctx ends. A port that
// cannot be opened (kube-proxy still on the node, say) is retried every
// retry, logged each time: load balancers then see the node as down,
// which is the truth until it opens.
func (s *Server) Serve(ctx context.Context, addr string, retry time.Duration) {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	for {
		ln, err := s.o.Listen("tcp", addr)
		if err == nil {
			s.o.Log.Info("proxy health port open", "addr", addr)
			err = srv.Serve(ln)
		}
		if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
			return
		}
		s.o.Log.Error("proxy health port down; trying again", "addr", addr, "err", err, "in", retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}
