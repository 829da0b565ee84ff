// Command kubebench runs skeind's Service proxy side by side with
// kube-proxy (iptables mode and nftables mode) against one real API
// server build, started afresh for each, each in a network namespace of its own
// playing a node. For each it creates 1,000 Services with 10 endpoints
// each in bulk (five times, deleting them in between) and then 10,000,
// and times until the rules are present, with the proxy's own network
// programming histogram, then
// changes one endpoint 100 times and times each change from the API call
// to the kernel's nftables event for it, then times TCP connects to a
// ClusterIP at 10,000 Services; it reports peak RSS and CPU seconds of
// each proxy. It prints Markdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/integration/harness"
)

var (
	apiUp     = flag.String("api-up", "", "shell command that starts an API server afresh (an empty etcd) and prints its admin kubeconfig's path last; run before each proxy")
	kubeProxy = flag.String("kube-proxy", "", "the kube-proxy binary")
	proxies   = flag.String("proxies", "skeind,kube-proxy-nftables,kube-proxy-iptables", "what to measure, in order")
	sizes     = flag.String("sizes", "1000,10000", "Services (10 endpoints each) after each bulk step")
	repeat    = flag.Int("repeat", 5, "times the first bulk step is made (its Services deleted in between): one run of it is noisy")
	changes   = flag.Int("changes", 100, "single endpoint changes")
	dials     = flag.Int("dials", 5000, "connects timed, to the Service and as many directly")
	coldLimit = flag.Duration("cold-limit", 10*time.Minute, "give up waiting for a bulk step's or a cold start's rules after this long")
	gap       = flag.Duration("gap", 1100*time.Millisecond, "time between changes (longer than every proxy's minimum sync interval)")
	skeindArg = flag.String("skeind-flags", "", "more flags for skeind, space-separated (e.g. --profiling, to take profiles from inside its node)")
	together  = flag.Bool("first-packet-together", false, "only the first packet: run the proxies side by side on one API server, each in a node of its own, load the last size once, and time their connects interleaved")
)

const (
	prefix    = "skbench-kp"
	namespace = "skbench"
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kubebench:", err)
		os.Exit(1)
	}
}

type bulk struct {
	services      int
	vip           string        // the last Service's ClusterIP
	created, took time.Duration // API writes done; rules present (both from the step's start)
	done          bool
	syncs         int           // the proxy's rule syncs during the step, from its metrics
	syncTime      time.Duration // their total duration
}

type result struct {
	proxy string
	bulks []bulk
	// prog is the proxy's own network programming histogram over the
	// bulk steps of each size: from each EndpointSlice's trigger time to
	// its rules.
	prog    map[int]harness.Buckets
	changes []time.Duration
	via     []time.Duration
	direct  []time.Duration
	rssKiB  int
	cpu     float64
	cold    time.Duration // restart with every Service present -> the last one answers
	coldRSS int
}

func run() error {
	if *apiUp == "" || *kubeProxy == "" {
		return errors.New("-api-up and -kube-proxy are required")
	}
	fmt.Fprintln(os.Stderr, "building skeind ...")
	binDir, err := harness.BuildTemp(prefix+"-bin-", harness.Skeind)
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	// Interrupted, it still removes its namespaces and stops its proxy.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *together {
		return firstPacketTogether(ctx, binDir)
	}
	var results []result
	for _, p := range strings.Split(*proxies, ",") {
		fmt.Fprintf(os.Stderr, "== %s: starting the API server afresh\n", p)
		kc, api, err := harness.FreshAPI(ctx, *apiUp, namespace)
		if err != nil {
			return err
		}
		r, err := measure(ctx, api, kc, binDir, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		results = append(results, r)
	}
	report(results)
	return nil
}

// node is a harness.BenchNode running one proxy.
type node struct {
	*harness.BenchNode
	name     string
	relay    *harness.Relay
	args     []string
	cmd      *exec.Cmd
	table    string // the IPv4 nftables table its rules are in
	readyURL string
	// Where the proxy reports its rule syncs: a Prometheus histogram, its
	// _sum and _count lines; and its network programming histogram.
	metricsURL, syncMetric, progMetric string
}

// syncs reads the proxy's count and total duration of rule syncs so far.
func (n *node) syncs(ctx context.Context) (int, time.Duration, error) {
	return harness.HistogramTotals(ctx, n.NS, n.metricsURL, n.syncMetric)
}

func measure(ctx context.Context, api kubernetes.Interface, kc, binDir, proxy string) (result, error) {
	r := result{proxy: proxy}
	n, err := newNode(ctx, api, kc, binDir, proxy)
	defer n.close(api)
	if err != nil {
		return r, err
	}
	events, stop, err := harness.NFTablesEvents(n.NS, unix.AF_INET, n.table)
	if err != nil {
		return r, err
	}
	defer stop()
	have := 0
	r.prog = map[int]harness.Buckets{}
steps:
	for i, s := range strings.Split(*sizes, ",") {
		var want int
		fmt.Sscan(s, &want)
		progBefore, err := harness.HistogramBuckets(ctx, n.NS, n.metricsURL, n.progMetric)
		if err != nil {
			return r, err
		}
		runs := 1
		if i == 0 {
			runs = max(*repeat, 1)
		}
		for k := range runs {
			if k > 0 {
				if err := deleteAll(ctx, api, n, r.bulks[len(r.bulks)-1].vip); err != nil {
					return r, err
				}
				have = 0
			}
			fmt.Fprintf(os.Stderr, "%s: bulk to %d Services (run %d of %d) ...\n", proxy, want, k+1, runs)
			b, err := bulkTo(ctx, api, n, have, want)
			if err != nil {
				return r, err
			}
			r.bulks = append(r.bulks, b)
			have = want
			if !b.done {
				break steps // the rest would take longer still
			}
		}
		progAfter, err := harness.HistogramBuckets(ctx, n.NS, n.metricsURL, n.progMetric)
		if err != nil {
			return r, err
		}
		r.prog[want] = progAfter.Since(progBefore)
	}
	if last := r.bulks[len(r.bulks)-1]; last.done {
		fmt.Fprintf(os.Stderr, "%s: %d endpoint changes ...\n", proxy, *changes)
		if r.changes, err = changeOne(ctx, api, events); err != nil {
			return r, err
		}
		fmt.Fprintf(os.Stderr, "%s: connects ...\n", proxy)
		vip, err := clusterIP(ctx, api, have-1)
		if err != nil {
			return r, err
		}
		if r.via, r.direct, err = n.FirstPacket(vip+":80", *dials); err != nil {
			return r, err
		}
	}
	r.rssKiB, r.cpu = harness.PeakRSS(n.cmd.Process.Pid), harness.CPUSeconds(n.cmd.Process.Pid)
	if last := r.bulks[len(r.bulks)-1]; last.done {
		fmt.Fprintf(os.Stderr, "%s: cold start at %d Services ...\n", proxy, have)
		vip, err := clusterIP(ctx, api, have-1)
		if err != nil {
			return r, err
		}
		if r.cold, r.coldRSS, err = coldStart(ctx, n, vip); err != nil {
			return r, err
		}
	}
	return r, nil
}

func newNode(ctx context.Context, api kubernetes.Interface, adminKC, binDir, proxy string) (*node, error) {
	n := &node{name: prefix + "-" + proxy}
	var err error
	if n.BenchNode, err = harness.NewBenchNode(n.name); err != nil {
		return n, err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}, Spec: corev1.NodeSpec{PodCIDR: "10.64.1.0/24", PodCIDRs: []string{"10.64.1.0/24"}}}
	if _, err := api.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return n, err
	}
	status := []byte(`{"status":{"addresses":[{"type":"InternalIP","address":"172.31.0.1"}]}}`)
	if _, err := api.CoreV1().Nodes().Patch(ctx, n.name, types.MergePatchType, status, metav1.PatchOptions{}, "status"); err != nil {
		return n, err
	}
	kc, err := n.kubeconfig(adminKC)
	if err != nil {
		return n, err
	}
	var args []string
	switch proxy {
	case "skeind":
		n.table, n.readyURL = "skein", "http://127.0.0.1:9897/readyz"
		n.metricsURL, n.syncMetric = "http://127.0.0.1:9897/metrics", "skein_proxy_sync_duration_seconds"
		n.progMetric = "skein_proxy_network_programming_duration_seconds"
		args = []string{filepath.Join(binDir, "skeind"), "--node-name", n.name, "--kubeconfig", kc,
			"--conflist", filepath.Join(n.Dir, "10-skein.conflist"), "--masquerade=false", "--resync", "1h"}
		args = append(args, strings.Fields(*skeindArg)...)
	case "kube-proxy-iptables", "kube-proxy-nftables":
		mode := strings.TrimPrefix(proxy, "kube-proxy-")
		n.table, n.readyURL = "nat", "http://127.0.0.1:10256/healthz"
		n.metricsURL, n.syncMetric = "http://127.0.0.1:10249/metrics", "kubeproxy_sync_proxy_rules_duration_seconds"
		n.progMetric = "kubeproxy_network_programming_duration_seconds"
		if mode == "nftables" {
			n.table = "kube-proxy"
		}
		// Same cadence as skeind's: at most one sync a second, no
		// periodic full resync while timing; no conntrack sysctls.
		args = []string{*kubeProxy, "--kubeconfig", kc, "--proxy-mode", mode, "--hostname-override", n.name,
			"--bind-address", harness.BenchUnderlayIP, "--cluster-cidr", "10.64.0.0/16",
			"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256",
			"--iptables-min-sync-period", "1s", "--iptables-sync-period", "1h",
			"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0"}
	default:
		return n, fmt.Errorf("unknown proxy %q", proxy)
	}
	n.args = args
	if err := n.start(); err != nil {
		return n, err
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := n.NS.HTTPGet(ctx, n.readyURL); code == 200 {
			return n, nil
		}
		if time.Since(start) > time.Minute {
			return n, fmt.Errorf("not ready after a minute:\n%s", n.log())
		}
	}
}

// start runs the proxy in the node.
func (n *node) start() error {
	var err error
	n.cmd, err = harness.StartIn(n.NS, filepath.Join(n.Dir, "proxy.log"), n.args...)
	return err
}

// stop kills the proxy.
func (n *node) stop() { harness.Stop(n.cmd) }

// coldStart stops the proxy, empties the node's rules, starts the proxy
// again with every Service already in the API server and times until
// the last Service answers from the client pod; it returns that and the
// proxy's peak RSS by then.
func coldStart(ctx context.Context, n *node, vip string) (time.Duration, int, error) {
	n.stop()
	if _, err := n.NS.Exec(ctx, "nft", "flush", "ruleset"); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := n.start(); err != nil {
		return 0, 0, err
	}
	for time.Since(start) < *coldLimit {
		if answers(ctx, n, vip+":80") {
			return time.Since(start), harness.PeakRSS(n.cmd.Process.Pid), nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	return *coldLimit, harness.PeakRSS(n.cmd.Process.Pid), nil
}

// kubeconfig points the admin kubeconfig at a relay into the node.
func (n *node) kubeconfig(admin string) (string, error) {
	path := filepath.Join(n.Dir, "kubeconfig")
	var err error
	n.relay, err = harness.RelayedKubeconfig(n.NS, n.relay, admin, path, "")
	return path, err
}

func (n *node) log() string {
	data, _ := os.ReadFile(filepath.Join(n.Dir, "proxy.log"))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

func (n *node) close(api kubernetes.Interface) {
	n.stop()
	if n.relay != nil {
		n.relay.Close()
	}
	if n.BenchNode != nil {
		n.Close() // the BenchNode's
	}
	_ = api.CoreV1().Nodes().Delete(context.Background(), n.name, metav1.DeleteOptions{})
}

// bulkTo creates Services have..want-1, each with an EndpointSlice of 10
// endpoints (the last Service's one endpoint is the server pod), and
// times until the last one answers from the client pod: each proxy
// writes the whole state it knows in each sync, so the last Service's
// rules mean all of them.
func bulkTo(ctx context.Context, api kubernetes.Interface, n *node, have, want int) (bulk, error) {
	b := bulk{services: want}
	syncs0, time0, err := n.syncs(ctx)
	if err != nil {
		return b, err
	}
	start := time.Now()
	answered := make(chan time.Time, 1)
	probeCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	vipCh := make(chan string, 1)
	go func() {
		vip := <-vipCh
		for probeCtx.Err() == nil {
			if answers(ctx, n, vip+":80") {
				answered <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	create := func(i int) error {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d", i)}, Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
		made, err := api.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		var eps []discoveryv1.Endpoint
		if i == want-1 {
			eps = append(eps, endpoint(harness.BenchServerIP))
		} else {
			for j := range 10 {
				eps = append(eps, endpoint(fmt.Sprintf("10.%d.%d.%d", 100+j, i/256, i%256)))
			}
		}
		es := slice(i, eps)
		// As the EndpointSlice controller marks its writes: both proxies
		// time their network programming from it.
		es.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Format(time.RFC3339Nano)}
		if _, err := api.DiscoveryV1().EndpointSlices(namespace).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			return err
		}
		if i == want-1 {
			b.vip = made.Spec.ClusterIP
			vipCh <- made.Spec.ClusterIP
		}
		return nil
	}
	// The last Service goes in once all others are written.
	if err := harness.Parallel(want-1-have, func(k int) error { return create(have + k) }); err != nil {
		return b, err
	}
	if err := create(want - 1); err != nil {
		return b, err
	}
	b.created = time.Since(start)
	select {
	case at := <-answered:
		b.took, b.done = at.Sub(start), true
		syncs, total, err := n.syncs(ctx)
		if err != nil {
			return b, err
		}
		b.syncs, b.syncTime = syncs-syncs0, total-time0
	case <-time.After(*coldLimit - b.created):
		b.took = *coldLimit
	case <-ctx.Done():
		return b, ctx.Err()
	}
	return b, nil
}

// deleteAll deletes every Service and EndpointSlice of the benchmark and
// waits until the last step's Service no longer answers and the proxy
// has had a quiet second: the next step starts from an empty node.
func deleteAll(ctx context.Context, api kubernetes.Interface, n *node, vip string) error {
	svcs, err := api.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if err := harness.Parallel(len(svcs.Items), func(i int) error {
		return api.CoreV1().Services(namespace).Delete(ctx, svcs.Items[i].Name, metav1.DeleteOptions{})
	}); err != nil {
		return fmt.Errorf("delete the Services: %w", err)
	}
	if err := api.DiscoveryV1().EndpointSlices(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("delete the EndpointSlices: %w", err)
	}
	for start := time.Now(); answers(ctx, n, vip+":80"); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > *coldLimit {
			return fmt.Errorf("%s still answers %s after its Service was deleted", vip, *coldLimit)
		}
	}
	// Quiet: no sync for a second.
	last, _, err := n.syncs(ctx)
	for err == nil {
		time.Sleep(time.Second)
		var now int
		if now, _, err = n.syncs(ctx); now == last {
			break
		}
		last = now
	}
	return err
}

// answers tells whether a TCP connect from the client pod to addr
// succeeds within 50 ms. A short try, repeated, rather than one long one:
// a SYN sent before the rules exist is dropped, and its retransmission
// would come a whole second later, hiding when the rules arrived.
func answers(ctx context.Context, n *node, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	c, err := n.Client.Dial(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func endpoint(ip string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
}

func slice(i int, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d-1", i),
			Labels: map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("svc%d", i)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

// changeOne moves one endpoint of svc0 to a new address, again and
// again, and times each from the API call to the first nftables event in
// the proxy's table after it.
func changeOne(ctx context.Context, api kubernetes.Interface, events <-chan time.Time) ([]time.Duration, error) {
	var out []time.Duration
	for k := 1; k <= *changes; k++ {
		s, err := api.DiscoveryV1().EndpointSlices(namespace).Get(ctx, "svc0-1", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.99.%d.%d", k/256, k%256)}
		time.Sleep(*gap)
		harness.Quiet(events, 200*time.Millisecond) // nothing before the change counts
		t0 := time.Now()
		if _, err := api.DiscoveryV1().EndpointSlices(namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
		select {
		case at, ok := <-events:
			if !ok {
				return nil, errors.New("the netlink socket closed")
			}
			out = append(out, at.Sub(t0))
		case <-time.After(60 * time.Second):
			return nil, fmt.Errorf("change %d never reached the kernel", k)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func clusterIP(ctx context.Context, api kubernetes.Interface, i int) (string, error) {
	s, err := api.CoreV1().Services(namespace).Get(ctx, fmt.Sprintf("svc%d", i), metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return s.Spec.ClusterIP, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(rs []result) {
	fmt.Printf("Machine: %d cores, %s; one API server build (etcd, kube-apiserver on loopback), started afresh for each proxy, each proxy alone in a node namespace; Services selector-less with one EndpointSlice each\n\n", runtime.NumCPU(), runtime.Version())
	fmt.Println("Bulk creation (Services and slices written by 16 clients; rules present = the last Service answers):")
	fmt.Println()
	fmt.Println("| proxy | Services x 10 endpoints | API writes done | rules present | after the last write | its rule syncs during the step: count, mean |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rs {
		for _, b := range r.bulks {
			took := fmt.Sprintf("%.2f s", b.took.Seconds())
			after := fmt.Sprintf("%.2f s", (b.took - b.created).Seconds())
			syncs := "-"
			if b.syncs > 0 {
				syncs = fmt.Sprintf("%d, %.0f ms", b.syncs, ms(b.syncTime/time.Duration(b.syncs)))
			}
			if !b.done {
				took, after = fmt.Sprintf("not within %s", *coldLimit), "-"
			}
			fmt.Printf("| %s | %d | %.2f s | %s | %s | %s |\n", r.proxy, b.services, b.created.Seconds(), took, after, syncs)
		}
	}
	fmt.Println()
	fmt.Printf("After the last write, per step size (the first size made %d times): median and range; and each proxy's own network programming histogram over the steps of that size (EndpointSlice trigger time to its rules, estimated from its buckets):\n\n", *repeat)
	fmt.Println("| proxy | Services | runs | after the last write: median | min - max | network programming p50 | p99 | slices timed |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		bySize := map[int][]time.Duration{}
		var order []int
		for _, b := range r.bulks {
			if !b.done {
				continue
			}
			if bySize[b.services] == nil {
				order = append(order, b.services)
			}
			bySize[b.services] = append(bySize[b.services], b.took-b.created)
		}
		for _, size := range order {
			d, prog := bySize[size], r.prog[size]
			p50, p99, n := fmt.Sprintf("%.0f ms", 1000*prog.Quantile(0.5)), fmt.Sprintf("%.0f ms", 1000*prog.Quantile(0.99)), fmt.Sprint(prog.Count())
			fmt.Printf("| %s | %d | %d | %.2f s | %.2f - %.2f s | %s | %s | %s |\n", r.proxy, size, len(d),
				harness.Percentile(d, 50).Seconds(), slices.Min(d).Seconds(), slices.Max(d).Seconds(), p50, p99, n)
		}
	}
	fmt.Println()
	fmt.Println("Cold start: the proxy restarted on an emptied node with every Service of the last size in the API server, until the last Service answers:")
	fmt.Println()
	fmt.Println("| proxy | Services x 10 endpoints | cold start | peak RSS by then |")
	fmt.Println("|---|---|---|---|")
	for _, r := range rs {
		if r.cold == 0 {
			continue
		}
		took := fmt.Sprintf("%.2f s", r.cold.Seconds())
		if r.cold >= *coldLimit {
			took = fmt.Sprintf("not within %s", *coldLimit)
		}
		fmt.Printf("| %s | %d | %s | %.1f MiB |\n", r.proxy, r.bulks[len(r.bulks)-1].services, took, float64(r.coldRSS)/1024)
	}
	fmt.Println()
	fmt.Println("One endpoint changed (API call -> the kernel's nftables event for the change), at the last size; peak RSS and CPU time from the start to before the cold start:")
	fmt.Println()
	fmt.Println("| proxy | changes | p50 | p99 | peak RSS | CPU seconds |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rs {
		if len(r.changes) == 0 {
			fmt.Printf("| %s | - | - | - | %.1f MiB | %.1f |\n", r.proxy, float64(r.rssKiB)/1024, r.cpu)
			continue
		}
		fmt.Printf("| %s | %d | %.1f ms | %.1f ms | %.1f MiB | %.1f |\n", r.proxy, len(r.changes),
			ms(harness.Percentile(r.changes, 50)), ms(harness.Percentile(r.changes, 99)), float64(r.rssKiB)/1024, r.cpu)
	}
	fmt.Println()
	fmt.Printf("TCP connect from a pod to a ClusterIP at the last size, %d connects (median, p99), against the endpoint directly:\n\n", *dials)
	fmt.Println("| proxy | via ClusterIP | directly | ClusterIP / direct |")
	fmt.Println("|---|---|---|---|")
	for _, r := range rs {
		if len(r.via) == 0 {
			continue
		}
		v, d := harness.Percentile(r.via, 50), harness.Percentile(r.direct, 50)
		fmt.Printf("| %s | %.1f µs (p99 %.1f) | %.1f µs (p99 %.1f) | %.2f |\n", r.proxy,
			float64(v.Nanoseconds())/1000, float64(harness.Percentile(r.via, 99).Nanoseconds())/1000,
			float64(d.Nanoseconds())/1000, float64(harness.Percentile(r.direct, 99).Nanoseconds())/1000, float64(v)/float64(d))
	}
}

// firstPacketTogether runs every proxy at once, each in its node, on one
// API server loaded once to the last size, and times the connects through
// each proxy's rules in rounds of 100 (and as many directly), the proxies
// taking turns and the order of the turns rotating every round: the
// machine's drift falls on all alike, which one proxy after the other
// cannot promise.
func firstPacketTogether(ctx context.Context, binDir string) error {
	fmt.Fprintln(os.Stderr, "== starting the API server afresh")
	kc, api, err := harness.FreshAPI(ctx, *apiUp, namespace)
	if err != nil {
		return err
	}
	names := strings.Split(*proxies, ",")
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.close(api)
		}
	}()
	for _, p := range names {
		n, err := newNode(ctx, api, kc, binDir, p)
		nodes = append(nodes, n)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	size := 0
	for _, s := range strings.Split(*sizes, ",") {
		fmt.Sscan(s, &size)
	}
	fmt.Fprintf(os.Stderr, "bulk to %d Services ...\n", size)
	if b, err := bulkTo(ctx, api, nodes[0], 0, size); err != nil || !b.done {
		return fmt.Errorf("bulk load through %s: done %v, %v", names[0], b.done, err)
	}
	vip, err := clusterIP(ctx, api, size-1)
	if err != nil {
		return err
	}
	for i, n := range nodes {
		for start := time.Now(); !answers(ctx, n, vip+":80"); time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > *coldLimit {
				return fmt.Errorf("%s: the last Service does not answer", names[i])
			}
		}
	}
	fmt.Fprintf(os.Stderr, "connects ...\n")
	via, direct := make([][]time.Duration, len(nodes)), make([][]time.Duration, len(nodes))
	const round = 100
	for r := 0; r*round < *dials; r++ {
		for k := range nodes {
			i := (r + k) % len(nodes)
			v, d, err := nodes[i].FirstPacket(vip+":80", round)
			if err != nil {
				return fmt.Errorf("%s: %w", names[i], err)
			}
			via[i], direct[i] = append(via[i], v...), append(direct[i], d...)
		}
	}
	fmt.Printf("Machine: %d cores, %s; one API server, %d Services x 10 endpoints; the proxies running side by side, each in its node namespace\n\n", runtime.NumCPU(), runtime.Version(), size)
	fmt.Printf("TCP connect from a pod to a ClusterIP, %d connects per proxy (median, p99) in rounds of %d taking turns, against the endpoint directly:\n\n", len(via[0]), round)
	fmt.Println("| proxy | via ClusterIP | directly | ClusterIP / direct |")
	fmt.Println("|---|---|---|---|")
	for i, name := range names {
		v, d := harness.Percentile(via[i], 50), harness.Percentile(direct[i], 50)
		fmt.Printf("| %s | %.1f µs (p99 %.1f) | %.1f µs (p99 %.1f) | %.2f |\n", name,
			float64(v.Nanoseconds())/1000, float64(harness.Percentile(via[i], 99).Nanoseconds())/1000,
			float64(d.Nanoseconds())/1000, float64(harness.Percentile(direct[i], 99).Nanoseconds())/1000, float64(v)/float64(d))
	}
	return nil
}
