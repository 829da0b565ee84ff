// Command dnsbench runs skeind's cluster DNS side by side with CoreDNS
// (the kubernetes, forward and cache plugins, as kubeadm configures
// them) against one real API server holding the same Services, both in
// one network namespace playing a node, each pinned to one CPU (the
// same one, in turn: only one is under load at a time), the load
// generator on another. It measures the queries per second each answers
// at most, for cluster names and for cached outside names, with the
// latency at that load and of a lone client; a burst of A+AAAA pairs sent
// at once; the time from a Service's creation in the API to its name
// answering; the cold start to the last Service's name; and peak RSS
// (skeind's with DNS on and off). It prints Markdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skein-net/skein/integration/harness"
)

var (
	apiUp     = flag.String("api-up", "", "shell command that starts an API server afresh (an empty etcd) and prints its admin kubeconfig's path last")
	coredns   = flag.String("coredns", "", "the CoreDNS binary")
	services  = flag.Int("services", 10000, "Services; one in ten headless")
	endpoints = flag.Int("endpoints", 5, "ready endpoints per Service")
	duration  = flag.Duration("duration", 5*time.Second, "length of each throughput run")
	workers   = flag.Int("workers", 64, "queries in flight during a throughput run")
	burst     = flag.Int("burst", 1000, "A+AAAA pairs sent at once")
	changes   = flag.Int("changes", 100, "Services created one by one, each timed to its name answering")
	changeGap = flag.Duration("change-gap", 1100*time.Millisecond, "time between two Services' creation (longer than the proxy's minimum sync interval, 1 s)")
	poll      = flag.Duration("poll", 10*time.Millisecond, "how often a new Service's name is asked until it answers")
	serverCPU = flag.Int("server-cpu", 1, "the CPU both servers are pinned to")
)

const (
	prefix    = "skbench-dns"
	namespace = "skbench"
	zone      = "cluster.local."
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func run() error {
	switch {
	case *apiUp == "" || *coredns == "":
		return errors.New("-api-up and -coredns are required")
	case *services < 1 || *endpoints < 1 || *workers < 1 || *changes < 0:
		return errors.New("-services, -endpoints and -workers must be at least 1, -changes at least 0")
	case *burst < 1 || *burst > *services:
		return fmt.Errorf("-burst %d: want 1 to -services (%d), one name per pair", *burst, *services)
	}
	fmt.Fprintln(os.Stderr, "building skeind ...")
	binDir, err := harness.BuildTemp(prefix+"-bin-", harness.Skeind)
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	// Interrupted, it still removes its namespaces and stops its servers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, api, err := harness.FreshAPI(ctx, *apiUp, namespace)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "creating %d Services x %d endpoints ...\n", *services, *endpoints)
	start := time.Now()
	if err := harness.Parallel(*services, func(i int) error { return create(ctx, api, i, true) }); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created in %s\n", time.Since(start).Round(time.Millisecond))
	n, err := newNode(ctx, api, kc, binDir)
	defer n.close(api)
	if err != nil {
		return err
	}
	r, err := measure(ctx, api, n)
	if err != nil {
		return err
	}
	report(r)
	return nil
}

// name is Service i's name; every tenth is headless.
func name(i int) string {
	if i%10 == 0 {
		return fmt.Sprintf("headless%d", i)
	}
	return fmt.Sprintf("svc%d", i)
}

// fqdn is Service i's name in the cluster zone.
func fqdn(i int) string { return name(i) + "." + namespace + ".svc." + zone }

// create makes Service i (a named port; headless every tenth) and, with
// slice, its EndpointSlice of ready endpoints.
func create(ctx context.Context, api kubernetes.Interface, i int, slice bool) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name(i)}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if i%10 == 0 {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	if _, err := api.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil || !slice {
		return err
	}
	eps := make([]discoveryv1.Endpoint, *endpoints)
	for k := range eps {
		j := i*(*endpoints) + k
		eps[k] = discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.65.%d.%d", j/250, 1+j%250)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name(i) + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: name(i)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
	_, err := api.DiscoveryV1().EndpointSlices(namespace).Create(ctx, es, metav1.CreateOptions{})
	return err
}

// result is what measure found, per server.
type result struct {
	servers []string
	cold    map[string]time.Duration
	runs    []loadRun
	bursts  map[string]harness.BurstResult
	changes map[string][]time.Duration
	// skeind's Service proxy syncs while the Services were created
	changeSyncs string
	rss         map[string]int // KiB, peak
	rssCold     map[string]int // KiB, peak after the cold start
}

// measure runs every measurement against both servers in turn.
func measure(ctx context.Context, api kubernetes.Interface, n *node) (result, error) {
	r := result{servers: []string{"skeind", "coredns"}, cold: n.cold, rssCold: map[string]int{},
		bursts: map[string]harness.BurstResult{}, rss: map[string]int{}}
	for _, s := range r.servers {
		r.rssCold[s] = harness.PeakRSS(n.servers[s].pid())
	}
	cluster := make([]string, 0, *services)
	for i := range *services {
		cluster = append(cluster, fqdn(i))
	}
	outside := make([]string, 100)
	for i := range outside {
		outside[i] = fmt.Sprintf("host%d.%s", i, harness.OutsideDomain)
	}
	for _, kind := range []struct {
		what  string
		names []string
	}{{"cluster names", cluster}, {"cached outside names", outside}} {
		runs, err := load(ctx, n, r.servers, kind.what, kind.names)
		if err != nil {
			return r, err
		}
		r.runs = append(r.runs, runs...)
	}
	for _, s := range r.servers {
		fmt.Fprintf(os.Stderr, "%s: burst ...\n", s)
		b, err := harness.Burst(n.Client, n.servers[s].addr, cluster[:*burst], 5*time.Second)
		if err != nil {
			return r, fmt.Errorf("%s: %w", s, err)
		}
		r.bursts[s] = b
	}
	fmt.Fprintf(os.Stderr, "%d new Services, each timed to its name ...\n", *changes)
	var err error
	watch := n.during(ctx, "skeind")
	if r.changes, err = newNames(ctx, api, n); err != nil {
		return r, err
	}
	r.changeSyncs = watch()
	for _, s := range r.servers {
		r.rss[s] = harness.PeakRSS(n.servers[s].pid())
	}
	fmt.Fprintln(os.Stderr, "skeind with --dns=false: cold start ...")
	off, err := n.skeindWithoutDNS(ctx)
	if err != nil {
		return r, err
	}
	r.rssCold["skeind --dns=false"] = off
	return r, nil
}

// load measures each server's most answers per second for names (and
// the latency then), a lone client's latency, and the latency of both at
// half CoreDNS's most, paced.
func load(ctx context.Context, n *node, servers []string, what string, names []string) ([]loadRun, error) {
	var runs []loadRun
	most := map[string]float64{}
	for _, s := range servers {
		addr := n.servers[s].addr
		// Warm: every outside name is in the cache.
		if _, err := throughput(n.Client, addr, names, 1, 0, len(names)); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		for _, w := range []int{*workers, 1} {
			fmt.Fprintf(os.Stderr, "%s: %s, %d in flight ...\n", s, what, w)
			watch := n.during(ctx, s)
			t, err := throughput(n.Client, addr, names, w, *duration, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s, err)
			}
			runs = append(runs, loadRun{server: s, what: what, how: fmt.Sprintf("%d in flight", w), throughputResult: t, syncs: watch()})
			if w == *workers {
				most[s] = t.qps
			}
		}
	}
	rate := most["coredns"] / 2
	for _, s := range servers {
		fmt.Fprintf(os.Stderr, "%s: %s, paced at %.0f/s ...\n", s, what, rate)
		// Warm again: the outside names' TTL (30 s) may have run out.
		if _, err := throughput(n.Client, n.servers[s].addr, names, 1, 0, len(names)); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		watch := n.during(ctx, s)
		t, err := paced(n.Client, n.servers[s].addr, names, rate, *duration)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		runs = append(runs, loadRun{server: s, what: what, how: "paced at half CoreDNS's most", throughputResult: t, syncs: watch()})
	}
	return runs, nil
}

// newNames creates Services (ClusterIP, one API write each: a ClusterIP
// Service's name needs no endpoints) one every -change-gap, and times
// each from its API call to the moment each server answers its name, each server
// asked every -poll from then on, as a client retrying would. The
// creations overlap one another's waits: a server whose cache holds an
// early NXDOMAIN answers late, and this way the run still ends.
func newNames(ctx context.Context, api kubernetes.Interface, n *node) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for k := range *changes {
		i := *services + 1 + 10*k // never headless: every tenth from 0 is
		time.Sleep(*changeGap)
		t0 := time.Now()
		if err := create(ctx, api, i, false); err != nil {
			return nil, err
		}
		for s, srv := range n.servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := untilAnswered(ctx, n.Client, srv.addr, fqdn(i), t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", s, err))
				}
				out[s] = append(out[s], d)
			}()
		}
	}
	wg.Wait()
	return out, joinErr(errs)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(r result) {
	fmt.Printf("Machine: %d cores, %s; one API server (etcd, kube-apiserver on loopback); %d Services (one in ten headless) x %d ready endpoints; both servers in one node namespace, pinned to CPU %d, the load generator (raw UDP, queries packed once) on the others\n\n",
		cores(), runtime.Version(), *services, *endpoints, *serverCPU)
	fmt.Println("Throughput and latency (A questions over UDP, names taken in turn; each run", *duration, "long):")
	fmt.Println()
	fmt.Println("| server | names | load | questions/s | p50 | p99 | unanswered | during the run: skeind's proxy syncs; GC cycles |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, x := range r.runs {
		fmt.Printf("| %s | %s | %s | %.0f | %.3f ms | %.3f ms | %d | %s |\n", x.server, x.what, x.how, x.qps,
			ms(harness.Percentile(x.lat, 50)), ms(harness.Percentile(x.lat, 99)), x.lost, x.syncs)
	}
	fmt.Println()
	fmt.Printf("Burst: %d pairs of A and AAAA questions for cluster names, each pair from a socket of its own, sent at once:\n\n", *burst)
	fmt.Println("| server | answered | unanswered after 5 s | last answer after | p50 | p99 |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, s := range r.servers {
		b := r.bursts[s]
		fmt.Printf("| %s | %d | %d | %.1f ms | %.2f ms | %.2f ms |\n", s, len(b.Latencies), b.Lost, ms(b.Last),
			ms(harness.Percentile(b.Latencies, 50)), ms(harness.Percentile(b.Latencies, 99)))
	}
	fmt.Println()
	fmt.Printf("A new ClusterIP Service, from its creation in the API to its name answering (%d Services, one write each, one every %s, each name asked every %s from its creation on; each server's TTL and cache as shipped):\n\n", *changes, *changeGap, *poll)
	fmt.Println("| server | p50 | p99 | max | over 1 s |")
	fmt.Println("|---|---|---|---|---|")
	for _, s := range r.servers {
		d := r.changes[s]
		over := 0
		for _, x := range d {
			if x > time.Second {
				over++
			}
		}
		fmt.Printf("| %s | %.1f ms | %.1f ms | %.1f ms | %d |\n", s, ms(harness.Percentile(d, 50)), ms(harness.Percentile(d, 99)), ms(harness.Percentile(d, 100)), over)
	}
	fmt.Printf("\nskeind meanwhile: Service proxy syncs (count, total time); GC cycles: %s\n\n", r.changeSyncs)
	fmt.Println("Cold start and memory:")
	fmt.Println()
	fmt.Println("| server | start to the last Service's name answering | peak RSS after it | peak RSS at the end |")
	fmt.Println("|---|---|---|---|")
	for _, s := range r.servers {
		fmt.Printf("| %s | %.2f s | %.1f MiB | %.1f MiB |\n", s, r.cold[s].Seconds(), float64(r.rssCold[s])/1024, float64(r.rss[s])/1024)
	}
	fmt.Printf("| skeind --dns=false | | %.1f MiB | |\n", float64(r.rssCold["skeind --dns=false"])/1024)
	fmt.Println()
	fmt.Println("skeind runs with its Service proxy (nftables) on, as by default: its figures include programming the same Services.")
}

// cores counts the machine's CPUs (runtime.NumCPU counts those this
// process may use, and it is pinned).
func cores() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return n
}

// joinErr is errors.Join of the non-nil errors, or a summary of many.
func joinErr(errs []error) error {
	if len(errs) > 3 {
		return fmt.Errorf("%d errors, the first: %w", len(errs), errs[0])
	}
	return errors.Join(errs...)
}
