// Command proxybench measures skeind's Service proxy from the static
// cluster file, per backend: the cold full sync (process start to ready)
// at several cluster sizes with its ruleset size and skeind's peak RSS;
// the latency of one endpoint change (file renamed -> the kernel's
// nftables event for it, which iptables-nft emits as well); and the
// first-packet cost, the TCP connect time from a pod to a ClusterIP
// against connecting to the endpoint directly. It prints Markdown.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/integration/harness"
)

var (
	backends = flag.String("backends", "nftables,iptables", "proxy backends to measure")
	sizes    = flag.String("sizes", "1000x10,10000x10,30000x2", "cold syncs: services x endpoints each")
	changes  = flag.Int("changes", 100, "endpoint changes at -change-size")
	changeAt = flag.Int("change-size", 10000, "services (10 endpoints each) while changing one endpoint")
	connects = flag.String("connect-sizes", "100,1000,10000,30000", "services present while timing connects")
	dials    = flag.Int("dials", 5000, "connects timed per size, to the Service and as many directly")
	gap      = flag.Duration("gap", 1100*time.Millisecond, "time between changes (longer than skeind's minimum sync interval)")
)

const prefix = "skbench-px"

// partialMean is skeind's own mean partial sync (model, rules, diff and
// the nft or iptables-restore run) during the changes, per backend.
var partialMean = map[string]time.Duration{}

func main() {
	flag.Parse()
	// Interrupted, it still stops its skeind and removes its namespaces.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		live.closeAll()
		os.Exit(130)
	}()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

// cluster is the file's content: node1 (this node, pod CIDR
// 10.64.1.0/24) and n Services, ClusterIP 10.96.x.y, each with eps
// endpoints spread over a 50-node cluster (1 in 50 is on node1). The last
// Service's only endpoint is the real server pod, 10.64.1.10:8080.
func cluster(n, eps, version int) ([]byte, error) {
	items := []any{map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": "node1"},
		"spec":     map[string]any{"podCIDRs": []string{"10.64.1.0/24"}},
		"status":   map[string]any{"addresses": []map[string]string{{"type": "InternalIP", "address": "172.31.0.1"}}},
	}}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc%d", i)
		items = append(items, map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": name, "namespace": "bench"},
			"spec": map[string]any{"clusterIP": fmt.Sprintf("10.96.%d.%d", i/256, i%256),
				"ports": []map[string]any{{"name": "http", "port": 80, "protocol": "TCP"}}},
		})
		var list []map[string]any
		if i == n-1 {
			list = append(list, map[string]any{"addresses": []string{harness.BenchServerIP}, "nodeName": "node1"})
		} else {
			for j := 0; j < eps; j++ {
				addr := fmt.Sprintf("10.%d.%d.%d", 100+j, i/256, i%256)
				if i == 0 && j == 0 {
					addr = fmt.Sprintf("10.99.%d.%d", version/256, version%256) // the endpoint that changes
				}
				list = append(list, map[string]any{"addresses": []string{addr}, "nodeName": fmt.Sprintf("node%d", (i*eps+j)%50)})
			}
		}
		items = append(items, map[string]any{
			"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
			"metadata": map[string]any{"name": name + "-1", "namespace": "bench",
				"labels": map[string]string{"kubernetes.io/service-name": name}},
			"addressType": "IPv4",
			"ports":       []map[string]any{{"name": "http", "port": 8080, "protocol": "TCP"}},
			"endpoints":   list,
		})
	}
	return json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

type cold struct {
	services, eps int
	took          time.Duration
	rules         string
	rssKiB        int
}

type connect struct {
	services           int
	viaService, direct time.Duration // medians
	viaP99, directP99  time.Duration
}

type result struct {
	backend  string
	colds    []cold
	change   []time.Duration
	connects []connect
}

func run() error {
	fmt.Fprintln(os.Stderr, "building skeind ...")
	binDir, err := harness.BuildTemp(prefix+"-bin-", harness.Skeind)
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	live.dir(binDir)
	var results []result
	for _, be := range strings.Split(*backends, ",") {
		r := result{backend: be}
		for _, s := range strings.FieldsFunc(*sizes, func(r rune) bool { return r == ',' }) {
			var n, eps int
			if _, err := fmt.Sscanf(s, "%dx%d", &n, &eps); err != nil {
				return fmt.Errorf("-sizes %q: %w", s, err)
			}
			fmt.Fprintf(os.Stderr, "%s: cold sync, %d services x %d endpoints ...\n", be, n, eps)
			c, err := measureCold(binDir, be, n, eps)
			if err != nil {
				return err
			}
			r.colds = append(r.colds, c)
		}
		fmt.Fprintf(os.Stderr, "%s: %d endpoint changes at %d services ...\n", be, *changes, *changeAt)
		if r.change, err = measureChanges(binDir, be); err != nil {
			return err
		}
		for _, s := range strings.FieldsFunc(*connects, func(r rune) bool { return r == ',' }) {
			var n int
			fmt.Sscan(s, &n)
			fmt.Fprintf(os.Stderr, "%s: connect latency at %d services ...\n", be, n)
			c, err := measureConnect(binDir, be, n)
			if err != nil {
				return err
			}
			r.connects = append(r.connects, c)
		}
		results = append(results, r)
	}
	report(results)
	return nil
}

// node is a harness.BenchNode running skeind on the cluster file.
type node struct {
	*harness.BenchNode
	file    string
	cmd     *exec.Cmd
	log     string
	started time.Time
}

// live are the nodes not closed yet, for an interrupt to close.
var live liveNodes

type liveNodes struct {
	mu    sync.Mutex
	nodes map[*node]bool
	bin   string // the built binaries' directory
}

func (l *liveNodes) dir(d string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bin = d
}

func (l *liveNodes) add(n *node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nodes == nil {
		l.nodes = map[*node]bool{}
	}
	l.nodes[n] = true
}

func (l *liveNodes) remove(n *node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.nodes, n)
}

func (l *liveNodes) closeAll() {
	l.mu.Lock()
	nodes := l.nodes
	l.nodes = nil
	l.mu.Unlock()
	for n := range nodes {
		n.close()
	}
	if l.bin != "" {
		os.RemoveAll(l.bin)
	}
}

func newNode(binDir, backend string, data []byte, extra ...string) (*node, error) {
	ctx := context.Background()
	n := &node{}
	live.add(n)
	var err error
	if n.BenchNode, err = harness.NewBenchNode(prefix); err != nil {
		return n, err
	}
	n.file = filepath.Join(n.Dir, "cluster.json")
	if err := os.WriteFile(n.file, data, 0o600); err != nil {
		return n, err
	}
	n.log = filepath.Join(n.Dir, "skeind.log")
	logf, err := os.Create(n.log)
	if err != nil {
		return n, err
	}
	defer logf.Close()
	n.cmd = exec.Command("ip", "netns", "exec", n.NS.Name, filepath.Join(binDir, "skeind"),
		"--node-name", "node1", "--cluster-file", n.file, "--conflist", filepath.Join(n.Dir, "10-skein.conflist"),
		"--masquerade=false", "--proxy", backend)
	n.cmd.Args = append(n.cmd.Args, extra...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.started = time.Now()
	if err := n.cmd.Start(); err != nil {
		return n, err
	}
	for {
		code, _, _ := n.NS.HTTPGet(ctx, "http://127.0.0.1:9897/readyz")
		if code == 200 {
			return n, nil
		}
		if time.Since(n.started) > 5*time.Minute {
			log, _ := os.ReadFile(n.log)
			return n, fmt.Errorf("skeind not ready:\n%s", log)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (n *node) close() {
	if n == nil {
		return
	}
	live.remove(n)
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
	}
	if n.BenchNode != nil {
		n.Close() // the BenchNode's
	}
}

func (n *node) metric(name string) string {
	_, body, _ := n.NS.HTTPGet(context.Background(), "http://127.0.0.1:9897/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return "?"
}

// startNode starts a node on a cluster of services x eps.
func startNode(binDir, backend string, services, eps int, extra ...string) (*node, error) {
	data, err := cluster(services, eps, 0)
	if err != nil {
		return nil, err
	}
	return newNode(binDir, backend, data, extra...)
}

func measureCold(binDir, backend string, services, eps int) (cold, error) {
	c := cold{services: services, eps: eps}
	n, err := startNode(binDir, backend, services, eps)
	defer n.close()
	if err != nil {
		return c, err
	}
	c.took = time.Since(n.started)
	c.rssKiB = harness.PeakRSS(n.cmd.Process.Pid)
	c.rules = n.metric("skein_proxy_rules")
	// The last Service answers: the rules are really there.
	if _, err := harness.DialTimes(n.Client, "10.96."+fmt.Sprintf("%d.%d", (services-1)/256, (services-1)%256)+":80", 1); err != nil {
		return c, fmt.Errorf("the last Service does not answer after the cold sync: %w", err)
	}
	return c, nil
}

// measureChanges changes one endpoint of one Service, again and again,
// and times each from the file's rename to the kernel's first nftables
// event in the IPv4 table the backend writes ("skein", or iptables'
// "nat"): the commit of the transaction that carries the change.
func measureChanges(binDir, backend string) ([]time.Duration, error) {
	// No periodic full resync while changes are timed: its burst of
	// events would be taken for a change's.
	n, err := startNode(binDir, backend, *changeAt, 10, "--resync", "1h")
	defer n.close()
	if err != nil {
		return nil, err
	}
	table := "skein"
	if backend == "iptables" {
		table = "nat"
	}
	events, stop, err := harness.NFTablesEvents(n.NS, unix.AF_INET, table)
	if err != nil {
		return nil, err
	}
	defer stop()
	var out []time.Duration
	for k := 1; k <= *changes; k++ {
		data, err := cluster(*changeAt, 10, k)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(n.file+".tmp", data, 0o600); err != nil {
			return nil, err
		}
		// This process's garbage from making the file is collected now,
		// not on the second CPU while skeind takes the change.
		runtime.GC()
		time.Sleep(*gap)
		// Nothing before the change counts: wait for 200 ms without events.
		harness.Quiet(events, 200*time.Millisecond)
		t0 := time.Now()
		if err := os.Rename(n.file+".tmp", n.file); err != nil {
			return nil, err
		}
		select {
		case at, ok := <-events:
			if !ok {
				return nil, fmt.Errorf("the netlink socket closed")
			}
			out = append(out, at.Sub(t0))
		case <-time.After(30 * time.Second):
			log, _ := os.ReadFile(n.log)
			return nil, fmt.Errorf("change %d never reached the kernel:\n%s", k, log)
		}
	}
	var sum float64
	var count int
	fmt.Sscan(n.metric(`skein_proxy_sync_duration_seconds_sum{mode="partial"}`), &sum)
	fmt.Sscan(n.metric(`skein_proxy_sync_duration_seconds_count{mode="partial"}`), &count)
	if count > 0 {
		partialMean[backend] = time.Duration(sum / float64(count) * float64(time.Second))
	}
	// The last change is in the kernel.
	var list string
	if backend == "iptables" {
		list, err = n.NS.Exec(context.Background(), "iptables-save", "-t", "nat")
	} else {
		list, err = n.NS.Exec(context.Background(), "nft", "list", "table", "ip", "skein")
	}
	if want := fmt.Sprintf("10.99.%d.%d", *changes/256, *changes%256); err != nil || (!strings.Contains(list, want+" ") && !strings.Contains(list, want+":")) {
		return nil, fmt.Errorf("the last change (%s) is not in the rules (%v)", want, err)
	}
	return out, nil
}

func measureConnect(binDir, backend string, services int) (connect, error) {
	c := connect{services: services}
	n, err := startNode(binDir, backend, services, 10)
	defer n.close()
	if err != nil {
		return c, err
	}
	svc := fmt.Sprintf("10.96.%d.%d:80", (services-1)/256, (services-1)%256)
	via, direct, err := n.FirstPacket(svc, *dials)
	if err != nil {
		return c, err
	}
	c.viaService, c.direct = harness.Percentile(via, 50), harness.Percentile(direct, 50)
	c.viaP99, c.directP99 = harness.Percentile(via, 99), harness.Percentile(direct, 99)
	return c, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(rs []result) {
	fmt.Printf("Machine: %d cores, %s; skeind defaults (minimum sync interval 1s), cluster file in JSON; endpoints spread over a 50-node cluster\n\n", runtime.NumCPU(), runtime.Version())
	fmt.Println("Cold full sync (skeind start to ready, the file already holding every Service):")
	fmt.Println()
	fmt.Println("| backend | services x endpoints | cold sync | ruleset (rules + map elements) | skeind peak RSS |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rs {
		for _, c := range r.colds {
			fmt.Printf("| %s | %d x %d | %.2f s | %s | %.1f MiB |\n", r.backend, c.services, c.eps, c.took.Seconds(), c.rules, float64(c.rssKiB)/1024)
		}
	}
	fmt.Println()
	fmt.Printf("One endpoint changed at %d services (file renamed -> the kernel's event for the change):\n\n", *changeAt)
	fmt.Println("| backend | changes | p50 | p99 | max | skeind's mean partial sync (from its metrics) |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rs {
		if len(r.change) == 0 {
			continue // -changes 0
		}
		fmt.Printf("| %s | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms |\n", r.backend, len(r.change), ms(harness.Percentile(r.change, 50)),
			ms(harness.Percentile(r.change, 99)), ms(harness.Percentile(r.change, 100)), ms(partialMean[r.backend]))
	}
	fmt.Println()
	fmt.Printf("TCP connect from a pod, %d connects per size (median, p99), to a ClusterIP and to its endpoint directly:\n\n", *dials)
	fmt.Println("| backend | services | via ClusterIP | directly | ClusterIP / direct | median vs the first size |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rs {
		for _, c := range r.connects {
			fmt.Printf("| %s | %d | %.1f µs (p99 %.1f) | %.1f µs (p99 %.1f) | %.2f | %.2f |\n", r.backend, c.services,
				us(c.viaService), us(c.viaP99), us(c.direct), us(c.directP99),
				float64(c.viaService)/float64(c.direct), float64(c.viaService)/float64(r.connects[0].viaService))
		}
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
