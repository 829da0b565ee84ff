// Command overlaybench measures how fast skeind programs the overlay at
// scale: a node namespace whose cluster file lists N nodes (the kernel
// then holds N-1 peers), the real skeind, and the kernel's own route
// events as the clock. It reports the cold reconcile time (process start
// to ready) at each size, the latency from a node added to the file to
// its entries present (p50/p99 over the adds), and skeind's peak RSS. It
// prints a Markdown report.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/skein-net/skein/integration/harness"
)

var (
	sizes = flag.String("sizes", "1000,5000", "cluster sizes (nodes)")
	adds  = flag.Int("adds", 50, "nodes added one by one at the first size")
	gap   = flag.Duration("gap", 1100*time.Millisecond, "time between adds (longer than skeind's minimum sync interval)")
)

const prefix = "skbench-ov"

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "overlaybench:", err)
		os.Exit(1)
	}
}

// nodeDoc is node i: pod CIDR 10.(64+i/256).(i%256).0/24, underlay
// 172.31.(i/256).(i%256). Node 1 is the one under test.
func nodeDoc(i int) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": fmt.Sprintf("node%d", i), "creationTimestamp": "2026-01-01T00:00:00Z"},
		"spec":     map[string]any{"podCIDRs": []string{fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)}},
		"status":   map[string]any{"addresses": []map[string]string{{"type": "InternalIP", "address": fmt.Sprintf("172.31.%d.%d", i/256, i%256)}}},
	}
}

func writeCluster(path string, n int) error {
	if err := stageCluster(path, n); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// stageCluster writes the file of n nodes beside path; renaming it over
// path publishes it.
func stageCluster(path string, n int) error {
	items := make([]any, 0, n)
	for i := 1; i <= n; i++ {
		items = append(items, nodeDoc(i))
	}
	data, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		return err
	}
	return os.WriteFile(path+".tmp", data, 0o600)
}

type result struct {
	nodes      int
	cold       time.Duration
	rssKiB     int
	addLatency []time.Duration
}

func run() error {
	fmt.Fprintln(os.Stderr, "building skeind ...")
	binDir, err := harness.BuildTemp(prefix+"-bin-", harness.Skeind)
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	var results []result
	for i, s := range strings.Split(*sizes, ",") {
		var n int
		fmt.Sscan(s, &n)
		nAdds := 0
		if i == 0 {
			nAdds = *adds
		}
		fmt.Fprintf(os.Stderr, "%d nodes ...\n", n)
		r, err := measure(binDir, n, nAdds)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	report(results)
	return nil
}

func measure(binDir string, n, nAdds int) (result, error) {
	r := result{nodes: n}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", prefix+"-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	node, err := harness.NewNetNS(fmt.Sprintf("%s-%d", prefix, n))
	if err != nil {
		return r, err
	}
	defer node.Delete()
	if _, err := node.Exec(ctx, "sh", "-c", "ip link add ul0 type veth peer name ul1 && ip addr add 172.31.0.1/16 dev ul0 && ip link set ul1 up && ip link set ul0 up"); err != nil {
		return r, err
	}
	file := filepath.Join(dir, "cluster.json")
	if err := writeCluster(file, n); err != nil {
		return r, err
	}
	cmd := exec.Command("ip", "netns", "exec", node.Name, filepath.Join(binDir, "skeind"),
		"--node-name", "node1", "--cluster-file", file, "--conflist", filepath.Join(dir, "10-skein.conflist"), "--masquerade=false")
	logf, err := os.Create(filepath.Join(dir, "skeind.log"))
	if err != nil {
		return r, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	for {
		code, _, _ := node.HTTPGet(ctx, "http://127.0.0.1:9897/readyz")
		if code == 200 {
			break
		}
		if time.Since(start) > 2*time.Minute {
			log, _ := os.ReadFile(logf.Name())
			return r, fmt.Errorf("skeind not ready at %d nodes:\n%s", n, log)
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.cold = time.Since(start)
	if got, err := countRoutes(node); err != nil || got != n-1 {
		return r, fmt.Errorf("%d routes after the cold sync (err %v), want %d", got, err, n-1)
	}
	r.rssKiB = harness.PeakRSS(cmd.Process.Pid)

	if nAdds > 0 {
		if r.addLatency, err = addOneByOne(node, file, n, nAdds); err != nil {
			return r, err
		}
	}
	return r, nil
}

// addOneByOne adds nodes n+1 .. n+k to the file one at a time and times
// each from the file's rename to the kernel's event for its route, which
// skeind adds after the neighbour and FDB entries.
func addOneByOne(node *harness.NetNS, file string, n, k int) ([]time.Duration, error) {
	h, err := netns.GetFromPath(node.Path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	updates := make(chan netlink.RouteUpdate, 1024)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.RouteSubscribeWithOptions(updates, done, netlink.RouteSubscribeOptions{Namespace: &h}); err != nil {
		return nil, err
	}
	var out []time.Duration
	for j := 1; j <= k; j++ {
		want := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 64+(n+j)/256, (n+j)%256))
		if err := stageCluster(file, n+j); err != nil {
			return nil, err
		}
		time.Sleep(*gap)
		t0 := time.Now()
		if err := os.Rename(file+".tmp", file); err != nil {
			return nil, err
		}
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case u := <-updates:
				if u.Type == 24 /* RTM_NEWROUTE */ && u.Dst != nil && u.Dst.String() == want.String() {
					out = append(out, time.Since(t0))
					break wait
				}
			case <-deadline:
				return nil, fmt.Errorf("node %d's route never came", n+j)
			}
		}
	}
	// The last added node has its neighbour and FDB entries too.
	last := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 64+(n+k)/256, (n+k)%256))
	neigh, _ := node.Exec(context.Background(), "ip", "neigh", "show", last.Addr().String(), "dev", "skein.vxlan")
	if !strings.Contains(neigh, "PERMANENT") {
		return nil, fmt.Errorf("no neighbour entry for %s: %q", last.Addr(), neigh)
	}
	return out, nil
}

func countRoutes(node *harness.NetNS) (int, error) {
	out, err := node.Exec(context.Background(), "ip", "-o", "route", "show", "dev", "skein.vxlan", "proto", "171")
	if err != nil {
		return 0, err
	}
	return strings.Count(out, "\n"), nil
}

func report(rs []result) {
	fmt.Printf("Machine: %d cores, %s; skeind defaults (minimum sync interval 1s), cluster file in JSON\n\n", runtime.NumCPU(), runtime.Version())
	fmt.Println("| nodes in the file | peers programmed | cold reconcile (start to ready) | skeind peak RSS |")
	fmt.Println("|---|---|---|---|")
	for _, r := range rs {
		fmt.Printf("| %d | %d | %.2f s | %.1f MiB |\n", r.nodes, r.nodes-1, r.cold.Seconds(), float64(r.rssKiB)/1024)
	}
	for _, r := range rs {
		if len(r.addLatency) == 0 {
			continue
		}
		fmt.Printf("\nOne node added to a file of %d (file renamed -> its route in the kernel), %d adds: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
			r.nodes, len(r.addLatency), ms(harness.Percentile(r.addLatency, 50)), ms(harness.Percentile(r.addLatency, 99)), ms(harness.Percentile(r.addLatency, 100)))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
