// Command cnibench measures the skein plugin against the reference chain
// containerd users run today, bridge + host-local from
// containernetworking/plugins (pinned in go.mod), in one run, with the
// same subnet and the same client (libcni): ADD and DEL latency over
// sequential pods, and ADD+DEL churn throughput at several concurrencies.
// Pod namespaces are made before timing starts; only the CNI calls are
// timed. It prints a Markdown report.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

var (
	pods   = flag.Int("pods", 200, "pods in the latency run")
	cycles = flag.Int("cycles", 320, "ADD+DEL cycles per concurrency level")
	levels = flag.String("concurrency", "1,8,32", "concurrency levels of the churn run")
)

const prefix = "skbench-"

type impl struct {
	name     string
	conflist func(dataDir string) []byte
	node     *harness.Node
	netnss   []*harness.NetNS // pod namespaces of its own
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cnibench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	fmt.Fprintln(os.Stderr, "building skein, bridge, host-local ...")
	pluginDir, err := harness.BuildTemp(prefix+"plugins-", harness.SkeinPlugin, harness.ReferencePlugins[0], harness.ReferencePlugins[1])
	if err != nil {
		return err
	}
	defer os.RemoveAll(pluginDir)
	const subnet = "10.88.0.0/24"
	impls := []*impl{
		{name: "skein", conflist: func(dir string) []byte {
			return list(map[string]any{"type": "skein", "mtu": 1500, "dataDir": dir, "ranges": []map[string]string{{"subnet": subnet}}})
		}},
		{name: "bridge+host-local", conflist: func(dir string) []byte {
			return list(map[string]any{"type": "bridge", "bridge": "cni0", "isGateway": true, "hairpinMode": true, "mtu": 1500,
				"ipam": map[string]any{"type": "host-local", "dataDir": dir, "ranges": [][]map[string]string{{{"subnet": subnet}}}}})
		}},
	}
	for _, im := range impls {
		dataDir, err := os.MkdirTemp("", prefix+"data-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
		if im.node, err = harness.NewNode(prefix+strings.Split(im.name, "+")[0], pluginDir, im.conflist(dataDir)); err != nil {
			return err
		}
		defer im.node.Close()
	}
	nsCount := max(*pods, maxLevel())
	fmt.Fprintf(os.Stderr, "making %d pod namespaces per plugin ...\n", nsCount)
	for k, im := range impls {
		im.netnss = make([]*harness.NetNS, nsCount)
		for i := range im.netnss {
			if im.netnss[i], err = harness.NewNetNS(fmt.Sprintf("%s%d-pod%d", prefix, k, i)); err != nil {
				return err
			}
			defer im.netnss[i].Delete()
		}
	}

	// Warm up each implementation (first exec, bridge creation).
	for _, im := range impls {
		rt := harness.RuntimeConf("warmup", im.netnss[0].Path, "default")
		if _, err := im.node.Add(ctx, rt); err != nil {
			return fmt.Errorf("%s warm-up ADD: %w", im.name, err)
		}
		if err := im.node.Del(ctx, rt); err != nil {
			return fmt.Errorf("%s warm-up DEL: %w", im.name, err)
		}
	}

	// Both are measured interleaved, pod by pod and round by round, so
	// drift in the machine's load falls on both alike.
	fmt.Fprintf(os.Stderr, "%d sequential ADDs then DELs, interleaved ...\n", *pods)
	lat, err := latency(ctx, impls, *pods)
	if err != nil {
		return err
	}
	type churnResult struct {
		rate   float64
		errors int64
	}
	churn := map[string]map[int]churnResult{}
	const rounds = 4
	for _, c := range levelList() {
		elapsed := map[string]time.Duration{}
		errs := map[string]int64{}
		for r := 0; r < rounds; r++ {
			for _, im := range impls {
				fmt.Fprintf(os.Stderr, "%s: churn at concurrency %d, round %d ...\n", im.name, c, r+1)
				d, e := throughput(ctx, im, im.netnss[:c], *cycles/rounds)
				elapsed[im.name] += d
				errs[im.name] += e
			}
		}
		for _, im := range impls {
			if churn[im.name] == nil {
				churn[im.name] = map[int]churnResult{}
			}
			churn[im.name][c] = churnResult{float64(*cycles/rounds*rounds) / elapsed[im.name].Seconds(), errs[im.name]}
		}
	}

	fmt.Printf("Machine: %s, %d cores, kernel %s, %s\n\n", cpuModel(), runtime.NumCPU(), kernel(), runtime.Version())
	fmt.Printf("### ADD and DEL latency, %d pods one after another, interleaved (libcni, subnet %s)\n\n", *pods, subnet)
	fmt.Println("| plugin | ADD p50 | ADD p99 | DEL p50 | DEL p99 |")
	fmt.Println("|---|---|---|---|---|")
	for _, im := range impls {
		l := lat[im.name]
		fmt.Printf("| %s | %s | %s | %s | %s |\n", im.name, ms(harness.Percentile(l[0], 50)), ms(harness.Percentile(l[0], 99)), ms(harness.Percentile(l[1], 50)), ms(harness.Percentile(l[1], 99)))
	}
	s, r := lat["skein"], lat["bridge+host-local"]
	fmt.Printf("\nskein / reference, medians: ADD %.2f, DEL %.2f (target: at most 0.50)\n\n", ratio(harness.Percentile(s[0], 50), harness.Percentile(r[0], 50)), ratio(harness.Percentile(s[1], 50), harness.Percentile(r[1], 50)))
	fmt.Printf("### Churn: ADD+DEL cycles per second, %d cycles per level in 4 alternating rounds\n\n", *cycles)
	fmt.Println("| concurrency | skein pods/s | reference pods/s | skein / reference | errors (skein, reference) |")
	fmt.Println("|---|---|---|---|---|")
	for _, c := range levelList() {
		a, b := churn["skein"][c], churn["bridge+host-local"][c]
		fmt.Printf("| %d | %.1f | %.1f | %.2f | %d, %d |\n", c, a.rate, b.rate, a.rate/b.rate, a.errors, b.errors)
	}
	return nil
}

func list(plugin map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "bench", "plugins": []any{plugin}})
	return b
}

// latency times ADD for every pod, then DEL, alternating the
// implementations pod by pod.
func latency(ctx context.Context, impls []*impl, pods int) (map[string][2][]time.Duration, error) {
	adds := map[string][]time.Duration{}
	dels := map[string][]time.Duration{}
	for i := 0; i < pods; i++ {
		for _, im := range impls {
			rt := harness.RuntimeConf(fmt.Sprintf("lat%d", i), im.netnss[i].Path, "default")
			t0 := time.Now()
			if _, err := im.node.Add(ctx, rt); err != nil {
				return nil, fmt.Errorf("%s ADD %d: %w", im.name, i, err)
			}
			adds[im.name] = append(adds[im.name], time.Since(t0))
		}
	}
	for i := 0; i < pods; i++ {
		for _, im := range impls {
			rt := harness.RuntimeConf(fmt.Sprintf("lat%d", i), im.netnss[i].Path, "default")
			t0 := time.Now()
			if err := im.node.Del(ctx, rt); err != nil {
				return nil, fmt.Errorf("%s DEL %d: %w", im.name, i, err)
			}
			dels[im.name] = append(dels[im.name], time.Since(t0))
		}
	}
	out := map[string][2][]time.Duration{}
	for _, im := range impls {
		out[im.name] = [2][]time.Duration{adds[im.name], dels[im.name]}
	}
	return out, nil
}

// throughput runs len(netnss) workers, each adding and deleting pods in
// its own namespace, until total cycles are done, and returns how long
// that took.
func throughput(ctx context.Context, im *impl, netnss []*harness.NetNS, total int) (time.Duration, int64) {
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for w, n := range netnss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				rt := harness.RuntimeConf(fmt.Sprintf("churn%d-%d-%d", w, i, time.Now().UnixNano()), n.Path, "default")
				if _, err := im.node.Add(ctx, rt); err != nil {
					fmt.Fprintf(os.Stderr, "%s ADD: %v\n", im.name, err)
					errs.Add(1)
				}
				if err := im.node.Del(ctx, rt); err != nil {
					fmt.Fprintf(os.Stderr, "%s DEL: %v\n", im.name, err)
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(t0), errs.Load()
}

func levelList() []int {
	var out []int
	for _, s := range strings.Split(*levels, ",") {
		var n int
		fmt.Sscan(s, &n)
		if n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func maxLevel() int {
	m := 0
	for _, l := range levelList() {
		m = max(m, l)
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return "unknown CPU"
}

func kernel() string {
	out, _ := exec.Command("uname", "-r").Output()
	return strings.TrimSpace(string(out))
}
