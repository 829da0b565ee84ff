// Command dataplanebench measures skein's dataplane side by side with
// what it is built from, in one run: TCP throughput (iperf3) and round
// trip time (ping) pod to pod across nodes through skein's overlay,
// against two namespaces joined by a hand-built kernel VXLAN link over
// the same underlay at the same MTU, and against a plain veth pair; and
// pod to pod on one node through cni0, against a plain veth pair. Then
// across nodes again with a thousand nodes in the cluster, to show what
// the size of the cluster costs each packet. It prints a Markdown report.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

var (
	seconds = flag.Int("seconds", 5, "length of each iperf3 run")
	runs    = flag.Int("runs", 3, "iperf3 runs per path (the median is reported)")
	pings   = flag.Int("pings", 200, "pings per path")
	scale   = flag.Int("cluster-nodes", 1000, "then measure skein across nodes again with this many nodes in the cluster file (the others exist only there); 0 skips it")
	bare    = flag.Bool("no-netfilter", false, "an experiment: stop skeind and take netfilter off the nodes' path (skein's table and chain, br_netfilter hooks) before measuring")
)

const prefix = "skbench-dp"

type path struct {
	name     string
	from, to *harness.NetNS
	dst      string
}

type figure struct {
	gbps  float64
	rttUs float64 // ping's average
	medUs float64 // the median of the same pings: a few slow ones move the average
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dataplanebench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	fmt.Fprintln(os.Stderr, "building skein, skeind, portmap ...")
	binDir, err := harness.BuildTemp(prefix+"-bin-", harness.SkeinPlugin, harness.Skeind, harness.ReferencePlugins[2])
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	c, err := harness.NewCluster(harness.ClusterOptions{Prefix: prefix, Nodes: 2, BinDir: binDir})
	if err != nil {
		return err
	}
	defer c.Close()
	a, err := c.Nodes[0].AddPod(ctx, prefix+"-a", "a")
	if err != nil {
		return err
	}
	a2, err := c.Nodes[0].AddPod(ctx, prefix+"-a2", "a2")
	if err != nil {
		return err
	}
	b, err := c.Nodes[1].AddPod(ctx, prefix+"-b", "b")
	if err != nil {
		return err
	}
	if *bare {
		for _, n := range c.Nodes {
			n.Kill(syscall.SIGTERM)
			if _, err := n.NS.Exec(ctx, "sh", "-c", `nft delete table inet skein; iptables -D FORWARD -j SKEIN-FORWARD; iptables -F SKEIN-FORWARD; iptables -X SKEIN-FORWARD;
for f in /proc/sys/net/bridge/bridge-nf-call-*; do echo 0 > $f; done; true`); err != nil {
				return err
			}
		}
	}
	// (a) A hand-built VXLAN link: two namespaces on the same underlay
	// bridge, MTU 1450 inside like the pods.
	hv := make([]*harness.NetNS, 2)
	for i := range hv {
		if hv[i], err = harness.NewNetNS(fmt.Sprintf("%s-hv%d", prefix, i)); err != nil {
			return err
		}
		defer hv[i].Delete()
		port := fmt.Sprintf("ul-hv%d", i)
		if _, err := c.Underlay.Exec(ctx, "sh", "-c", fmt.Sprintf("ip link add %s type veth peer name eth0 netns %s && ip link set %s master ul0 up", port, hv[i].Name, port)); err != nil {
			return err
		}
	}
	for i, n := range hv {
		me, peer := 201+i, 202-i
		script := fmt.Sprintf(`ip addr add 172.30.0.%d/24 dev eth0 && ip link set eth0 up &&
ip link add vx0 type vxlan id 42 local 172.30.0.%d dstport 4789 nolearning &&
ip link set vx0 address 0e:00:00:00:00:%02x mtu 1450 up &&
ip addr add 10.99.0.%d/24 dev vx0 &&
bridge fdb append 0e:00:00:00:00:%02x dev vx0 dst 172.30.0.%d &&
ip neigh replace 10.99.0.%d lladdr 0e:00:00:00:00:%02x dev vx0 nud permanent`, me, me, me, i+1, peer, peer, 2-i, peer)
		if _, err := n.Exec(ctx, "sh", "-c", script); err != nil {
			return err
		}
	}
	// (b) A plain veth pair, same MTU.
	va, err := harness.NewNetNS(prefix + "-va")
	if err != nil {
		return err
	}
	defer va.Delete()
	vb, err := harness.NewNetNS(prefix + "-vb")
	if err != nil {
		return err
	}
	defer vb.Delete()
	if _, err := va.Exec(ctx, "sh", "-c", fmt.Sprintf(`ip link add eth0 mtu 1450 type veth peer name eth0 netns %s mtu 1450 &&
ip addr add 10.98.0.1/24 dev eth0 && ip link set eth0 up`, vb.Name)); err != nil {
		return err
	}
	if _, err := vb.Exec(ctx, "sh", "-c", "ip addr add 10.98.0.2/24 dev eth0 && ip link set eth0 up"); err != nil {
		return err
	}

	paths := []path{
		{"skein, pod to pod across nodes (VXLAN overlay)", a.NS, b.NS, b.IPs[0]},
		{"hand-built kernel VXLAN, same underlay and MTU", hv[0], hv[1], "10.99.0.2"},
		{"plain veth pair", va, vb, "10.98.0.2"},
		{"skein, pod to pod on one node (cni0)", a.NS, a2.NS, a2.IPs[0]},
	}
	figs := map[string]figure{}
	for _, p := range paths {
		fmt.Fprintf(os.Stderr, "%s ...\n", p.name)
		f, err := measure(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		figs[p.name] = f
	}
	var big figure
	if *scale > 2 && !*bare {
		if err := grow(ctx, c, *scale); err != nil {
			return err
		}
		name := fmt.Sprintf("skein, pod to pod across nodes, %d nodes in the cluster", *scale)
		fmt.Fprintf(os.Stderr, "%s ...\n", name)
		if big, err = measure(ctx, paths[0]); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		paths = append(paths, path{name: name})
		figs[name] = big
	}
	fmt.Printf("Machine: %d cores, %s; MTU 1450 on every path; iperf3 TCP, %d runs of %d s (median); %d pings at 10 ms\n\n",
		runtime.NumCPU(), runtime.Version(), *runs, *seconds, *pings)
	if *bare {
		fmt.Print("Experiment: skeind stopped and netfilter taken off the nodes' path (-no-netfilter).\n\n")
	}
	fmt.Println("| path | TCP throughput | ping RTT (avg) | ping RTT (median) |")
	fmt.Println("|---|---|---|---|")
	for _, p := range paths {
		f := figs[p.name]
		fmt.Printf("| %s | %.2f Gbit/s | %.0f µs | %.0f µs |\n", p.name, f.gbps, f.rttUs, f.medUs)
	}
	cross, vx, veth, same := figs[paths[0].name], figs[paths[1].name], figs[paths[2].name], figs[paths[3].name]
	ratio := func(a, b figure) string {
		return fmt.Sprintf("throughput %.2f, RTT %.2f (median %.2f)", a.gbps/b.gbps, a.rttUs/b.rttUs, a.medUs/b.medUs)
	}
	fmt.Printf("\nskein across nodes / hand-built VXLAN: %s (target: within 5%%)\n", ratio(cross, vx))
	fmt.Printf("skein on one node / plain veth: %s (target: within 5%%)\n", ratio(same, veth))
	fmt.Printf("skein across nodes / plain veth: %s\n", ratio(cross, veth))
	if big.gbps > 0 {
		fmt.Printf("skein across nodes, %d nodes in the cluster / 2 nodes: %s\n", *scale, ratio(big, cross))
	}
	return nil
}

// grow writes the cluster file with n nodes: the cluster's own and
// n-len(c.Nodes) more that exist only in the file, pod CIDRs handed out
// in turn from 10.200.0.0/14, and waits until both real nodes have
// programmed them (a route per peer, the peers' pod CIDRs in the
// masquerade controller's set). Those CIDRs sort before the real nodes'
// (10.244.x), so that a rule per node, walked in order, would be walked
// to the end: the worst case, where a real node meets half of them on
// average.
func grow(ctx context.Context, c *harness.Cluster, n int) error {
	var extra []string
	last := ""
	for i := range n - len(c.Nodes) {
		cidr := fmt.Sprintf("10.%d.%d.0/24", 200+i/256, i%256)
		extra = append(extra, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: far%d}\nspec: {podCIDRs: [%q]}\nstatus: {addresses: [{type: InternalIP, address: 172.29.%d.%d}]}\n", i, cidr, i/250, 1+i%250))
		last = fmt.Sprintf("10.%d.%d.1", 200+i/256, i%256)
	}
	if err := c.WriteFile(c.Nodes, strings.Join(extra, "---\n")); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, node := range c.Nodes {
		for {
			routes, err := node.NS.Exec(ctx, "ip", "route", "show", "dev", "skein.vxlan")
			if err == nil && strings.Count(routes, "\n") >= n-1 {
				if _, err := node.NS.Exec(ctx, "nft", "get", "element", "inet", "skein", "pods4", "{", last, "}"); err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s has not programmed %d nodes after 2 minutes", node.Name, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second) // the iptables half of the masquerade controller's sync
	return nil
}

var (
	rttRE  = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)
	timeRE = regexp.MustCompile(`time=([0-9.]+) ms`)
)

func measure(ctx context.Context, p path) (figure, error) {
	var f figure
	var rates []float64
	for r := 0; r < *runs; r++ {
		srv := exec.Command("ip", "netns", "exec", p.to.Name, "iperf3", "-s", "-1")
		if err := srv.Start(); err != nil {
			return f, err
		}
		time.Sleep(300 * time.Millisecond)
		out, err := p.from.Exec(ctx, "iperf3", "-c", p.dst, "-t", strconv.Itoa(*seconds), "-J")
		_ = srv.Wait()
		if err != nil {
			return f, err
		}
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			return f, fmt.Errorf("iperf3 output: %w", err)
		}
		rates = append(rates, res.End.SumReceived.BitsPerSecond/1e9)
	}
	sort.Float64s(rates)
	f.gbps = rates[len(rates)/2]
	out, err := p.from.Exec(ctx, "ping", "-n", "-i", "0.01", "-c", strconv.Itoa(*pings), p.dst)
	if err != nil {
		return f, err
	}
	m := rttRE.FindStringSubmatch(out)
	if m == nil {
		return f, fmt.Errorf("no RTT summary in ping's output")
	}
	ms, _ := strconv.ParseFloat(m[1], 64)
	f.rttUs = ms * 1000
	var each []float64
	for _, t := range timeRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(t[1], 64)
		each = append(each, v*1000)
	}
	if len(each) == 0 {
		return f, fmt.Errorf("no reply times in ping's output")
	}
	sort.Float64s(each)
	f.medUs = each[len(each)/2]
	return f, nil
}
