// Command demo brings up a node (a network namespace) running the skein
// plugin through libcni, as containerd would, makes two dual-stack pods on
// it and shows who reaches whom, with the source address each receiver
// saw. It tears everything down at the end unless KEEP=1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

const prefix = "skein-demo-"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	ns   *harness.NetNS
	ips  []string
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	keep := os.Getenv("KEEP") == "1"

	pluginDir, err := os.MkdirTemp("", prefix+"plugins-")
	if err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp("", prefix+"data-")
	if err != nil {
		return err
	}
	fmt.Println("building the skein plugin ...")
	if err := harness.BuildPlugins(pluginDir, harness.SkeinPlugin); err != nil {
		return err
	}
	conflist, _ := json.MarshalIndent(map[string]any{
		"cniVersion": "1.1.0", "name": "demo",
		"plugins": []any{map[string]any{
			"type": "skein", "mtu": 1450, "dataDir": dataDir, "clusterDomain": "cluster.local",
			"ranges": []map[string]string{{"subnet": "10.244.1.0/24"}, {"subnet": "fd00:10:244:1::/64"}},
		}},
	}, "", "  ")
	node, err := harness.NewNode(prefix+"node1", pluginDir, conflist)
	if err != nil {
		return err
	}
	var pods []*harness.Pod
	teardown := func() {
		for _, p := range pods {
			node.Del(ctx, p.RT)
			p.NS.Delete()
		}
		node.Close()
		os.RemoveAll(pluginDir)
		os.RemoveAll(dataDir)
	}
	fmt.Printf("node %s: conflist\n%s\n\n", node.NS.Name, conflist)
	for _, name := range []string{"pod-a", "pod-b"} {
		p, err := node.AddPod(ctx, prefix+name, name)
		if err != nil {
			teardown()
			return fmt.Errorf("ADD %s: %w", name, err)
		}
		pods = append(pods, p)
		fmt.Printf("ADD %s -> %s\n", name, strings.Join(p.IPs, ", "))
	}
	targets := []target{
		{"pod-a", pods[0].NS, pods[0].IPs},
		{"pod-b", pods[1].NS, pods[1].IPs},
		{"node1 (gateway)", node.NS, []string{"10.244.1.1", "fd00:10:244:1::1"}},
	}
	failures := matrix(ctx, targets)
	summary(ctx, node)

	if keep {
		fmt.Printf(`
KEEP=1: left running. Explore with, for example:
  ip netns exec %[1]spod-a ping %[2]s
  ip netns exec %[1]snode1 ip -br addr
  ip netns exec %[1]snode1 bridge link
  ls %[3]s/demo
Tear down with: make demo-down
`, prefix, pods[1].IPs[0], dataDir)
	} else {
		teardown()
		fmt.Println("\ntorn down.")
	}
	if failures > 0 {
		return fmt.Errorf("%d connections failed", failures)
	}
	fmt.Println("all pairs connected.")
	return nil
}

// matrix pings every address of every target from every other target and
// checks over TCP which source address the receiver saw.
func matrix(ctx context.Context, targets []target) int {
	failures := 0
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nfrom\tto\taddress\tping\tsource seen by receiver (TCP)")
	for _, src := range targets {
		for _, dst := range targets {
			if src.name == dst.name {
				continue
			}
			for _, ip := range dst.ips {
				ping := "ok"
				if err := src.ns.Ping(ctx, ip, 2); err != nil {
					ping, failures = "FAIL", failures+1
				}
				seen, err := harness.SourceSeen(dst.ns, ip, src.ns)
				if err != nil {
					seen, failures = "FAIL: "+err.Error(), failures+1
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", src.name, dst.name, ip, ping, seen)
			}
		}
	}
	w.Flush()
	return failures
}

func summary(ctx context.Context, node *harness.Node) {
	fmt.Println("\nnode1 state:")
	for _, args := range [][]string{
		{"ip", "-br", "addr", "show", "cni0"},
		{"ip", "-br", "link", "show", "master", "cni0"},
		{"ip", "route", "show", "dev", "cni0"},
	} {
		out, err := node.NS.Exec(ctx, args...)
		if err != nil {
			out = err.Error()
		}
		fmt.Printf("  $ %s\n", strings.Join(args, " "))
		for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			fmt.Println("    " + l)
		}
	}
}
