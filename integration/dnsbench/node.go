package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skein-net/skein/integration/harness"
)

// The servers' addresses on the node: skeind's default node-local
// address (on its own device), and CoreDNS's beside it on lo, as
// NodeLocal DNSCache binds one.
const (
	skeindAddr  = "169.254.20.10:53"
	corednsAddr = "169.254.20.11:53"
)

// node is a harness.BenchNode running both servers; its server pod
// plays the node's upstream resolver.
type node struct {
	*harness.BenchNode
	name     string
	relay    *harness.Relay
	upstream *harness.Upstream
	servers  map[string]*server
	cold     map[string]time.Duration
	binDir   string
	kc       string
}

// server is one DNS server process in the node.
type server struct {
	addr string
	args []string
	log  string
	cmd  *exec.Cmd
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// newNode builds the node, registers it with the API server and starts
// both servers, timing each from its start to the last Service's name.
func newNode(ctx context.Context, api kubernetes.Interface, adminKC, binDir string) (*node, error) {
	n := &node{name: prefix, binDir: binDir, cold: map[string]time.Duration{}}
	var err error
	if n.BenchNode, err = harness.NewBenchNode(n.name); err != nil {
		return n, err
	}
	if n.upstream, err = harness.NewUpstream(n.Server, harness.BenchServerIP); err != nil {
		return n, err
	}
	if _, err := n.NS.Exec(ctx, "ip", "addr", "add", strings.TrimSuffix(corednsAddr, ":53")+"/32", "dev", "lo"); err != nil {
		return n, err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}, Spec: corev1.NodeSpec{PodCIDR: "10.64.1.0/24", PodCIDRs: []string{"10.64.1.0/24"}}}
	if _, err := api.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return n, err
	}
	status := []byte(`{"status":{"addresses":[{"type":"InternalIP","address":"` + harness.BenchUnderlayIP + `"}]}}`)
	if _, err := api.CoreV1().Nodes().Patch(ctx, n.name, types.MergePatchType, status, metav1.PatchOptions{}, "status"); err != nil {
		return n, err
	}
	n.kc = filepath.Join(n.Dir, "kubeconfig")
	if n.relay, err = harness.RelayedKubeconfig(n.NS, nil, adminKC, n.kc, ""); err != nil {
		return n, err
	}
	corefile, err := n.corefile()
	if err != nil {
		return n, err
	}
	n.servers = map[string]*server{
		"skeind":  {addr: skeindAddr, args: n.skeindArgs(true), log: filepath.Join(n.Dir, "skeind.log")},
		"coredns": {addr: corednsAddr, args: []string{*coredns, "-conf", corefile}, log: filepath.Join(n.Dir, "coredns.log")},
	}
	last := fqdn(*services - 1)
	for _, s := range []string{"skeind", "coredns"} {
		fmt.Fprintf(os.Stderr, "%s: cold start ...\n", s)
		srv := n.servers[s]
		t0 := time.Now()
		if err := n.start(srv); err != nil {
			return n, err
		}
		if n.cold[s], err = untilAnswered(ctx, n.Client, srv.addr, last, t0); err != nil {
			return n, fmt.Errorf("%s: %w\n%s", s, err, tail(srv.log))
		}
	}
	return n, nil
}

// skeindArgs runs skeind as the DaemonSet does, its upstream the server
// pod; with dns false, without its DNS server.
func (n *node) skeindArgs(dns bool) []string {
	return []string{filepath.Join(n.binDir, "skeind"), "--node-name", n.name, "--kubeconfig", n.kc,
		"--conflist", filepath.Join(n.Dir, "10-skein.conflist"), "--masquerade=false",
		"--dns-upstream", harness.BenchServerIP, "--dns=" + strconv.FormatBool(dns)}
}

// corefile writes CoreDNS's configuration: kubeadm's default server
// block (errors, health, ready, kubernetes with pods insecure,
// prometheus, forward, cache, loop, loadbalance), bound to its address,
// the kubernetes plugin reading the same API server as skeind, and the
// server pod as upstream. TTL 30 s and cache 30 s, as kubeadm ships it.
func (n *node) corefile() (string, error) {
	cfg, err := clientcmd.LoadFromFile(n.kc)
	if err != nil {
		return "", err
	}
	path := filepath.Join(n.Dir, "Corefile")
	text := fmt.Sprintf(`.:53 {
    bind %s
    errors
    health 127.0.0.1:8080 {
        lameduck 5s
    }
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s %s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus 127.0.0.1:9153
    forward . %s {
        max_concurrent 1000
    }
    cache 30
    loop
    loadbalance
}
`, strings.TrimSuffix(corednsAddr, ":53"), n.kc, cfg.CurrentContext, harness.BenchServerIP)
	return path, os.WriteFile(path, []byte(text), 0o644)
}

// start runs s in the node, pinned to -server-cpu.
func (n *node) start(s *server) error {
	var err error
	s.cmd, err = harness.StartIn(n.NS, s.log, append([]string{"taskset", "-c", strconv.Itoa(*serverCPU)}, s.args...)...)
	return err
}

// stop kills s.
func (s *server) stop() { harness.Stop(s.cmd) }

// skeindWithoutDNS stops both servers, starts skeind with --dns=false
// and returns its peak RSS once it is ready (every Service programmed).
func (n *node) skeindWithoutDNS(ctx context.Context) (int, error) {
	for _, s := range n.servers {
		s.stop()
	}
	s := &server{args: n.skeindArgs(false), log: filepath.Join(n.Dir, "skeind-nodns.log")}
	n.servers["skeind --dns=false"] = s
	if err := n.start(s); err != nil {
		return 0, err
	}
	for start := time.Now(); time.Since(start) < 2*time.Minute; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := n.NS.HTTPGet(ctx, "http://127.0.0.1:9897/readyz"); code == 200 {
			return harness.PeakRSS(s.pid()), nil
		}
	}
	return 0, fmt.Errorf("skeind --dns=false not ready after 2 minutes\n%s", tail(s.log))
}

// during starts watching a server while it runs: skeind's Service proxy
// syncs (how many, for how long in all) and each server's Go garbage
// collections (both are Go programs; a collection's marking takes CPU
// the answers wait for on one core). The function it returns says what
// happened since.
func (n *node) during(ctx context.Context, server string) func() string {
	url := "http://127.0.0.1:9897/metrics"
	if server == "coredns" {
		url = "http://127.0.0.1:9153/metrics"
	}
	read := func() (syncs int, took time.Duration, gcs int, err error) {
		if server == "skeind" {
			if syncs, took, err = harness.HistogramTotals(ctx, n.NS, url, "skein_proxy_sync_duration_seconds"); err != nil {
				return
			}
		}
		gcs, _, err = harness.HistogramTotals(ctx, n.NS, url, "go_gc_duration_seconds")
		return
	}
	s0, t0, g0, err0 := read()
	return func() string {
		s, t, g, err := read()
		if err0 != nil || err != nil {
			return "unknown"
		}
		if server != "skeind" {
			return fmt.Sprintf("GC %d", g-g0)
		}
		return fmt.Sprintf("syncs %d, %.0f ms; GC %d", s-s0, ms(t-t0), g-g0)
	}
}

// close stops the servers and removes the node.
func (n *node) close(api kubernetes.Interface) {
	for _, s := range n.servers {
		s.stop()
	}
	if n.upstream != nil {
		n.upstream.Close()
	}
	if n.relay != nil {
		n.relay.Close()
	}
	if n.BenchNode != nil {
		n.Close() // the BenchNode's
	}
	_ = api.CoreV1().Nodes().Delete(context.Background(), n.name, metav1.DeleteOptions{})
}

// tail is the end of a log file.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}
