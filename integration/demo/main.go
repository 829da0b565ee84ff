// Command demo brings up a virtual cluster of three nodes, each a network
// namespace on a shared underlay running the real skeind, with two pods
// per node made by the real skein plugin through libcni, as containerd
// would. It shows who reaches whom (IPv4 and IPv6, same node and across
// the VXLAN overlay) with the source address each receiver saw, a Service
// reached through its ClusterIP, the cluster's names resolved in a pod
// (answered by skeind on the pod's own node) and a Service reached by
// name, and what each node's overlay holds. It tears everything down at
// the end unless KEEP=1, and exits non-zero if anything fails.
package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/skein-net/skein/integration/harness"
)

const prefix = "skein-demo"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type pod struct {
	name string
	node string
	*harness.Pod
}

func run() error {
	// Interrupted (Ctrl-C), or its output cut short (a pipe to head), the
	// demo still stops its skeind processes and removes its namespaces:
	// the signal cancels ctx and run returns through its defers, and a
	// write to a closed pipe fails instead of killing the process.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	fmt.Println("building skein, skeind and portmap ...")
	binDir, err := harness.BuildTemp(prefix+"-bin-", harness.SkeinPlugin, harness.Skeind, harness.ReferencePlugins[2])
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	fmt.Println("starting 3 nodes (dual-stack), each running skeind ...")
	c, err := harness.NewCluster(harness.ClusterOptions{Prefix: prefix, Nodes: 3, DualStack: true, BinDir: binDir,
		Env: []string{"SKEIN_CLUSTER_DNS_IP=" + clusterDNSIP}})
	if err != nil {
		return err
	}
	keep := os.Getenv("KEEP") == "1"
	if !keep {
		defer c.Close()
	}
	var pods []pod
	for _, n := range c.Nodes {
		for _, name := range []string{"a", "b"} {
			pname := n.Name + "-" + name
			p, err := n.AddPod(ctx, prefix+"-"+pname, pname)
			if err != nil {
				return fmt.Errorf("ADD %s: %w", pname, err)
			}
			pods = append(pods, pod{pname, n.Name, p})
			// What kubelet writes into the pod from the plugin's result.
			if err := harness.WriteResolvConf(p.NS, p.DNS); err != nil {
				return err
			}
			fmt.Printf("  %s on %s: %s\n", pname, n.Name, strings.Join(p.IPs, ", "))
		}
	}
	failures := matrix(ctx, pods)
	// hello's endpoints answer until the demo ends: the names section
	// reaches them by name.
	for _, p := range []pod{pods[2], pods[5]} {
		e, err := harness.NewEcho(p.NS, p.name)
		if err != nil {
			return fmt.Errorf("echo server in %s: %w", p.name, err)
		}
		defer e.Close()
	}
	failures += service(ctx, c, pods)
	failures += names(ctx, pods)
	for _, n := range c.Nodes {
		summary(ctx, n)
	}
	if keep {
		fmt.Printf(`
KEEP=1: left running. Explore with, for example:
  ip netns exec %[1]s-node1-a ping %[2]s
  ip netns exec %[1]s-n1 ip route show dev skein.vxlan
  ip netns exec %[1]s-n1 bridge fdb show dev skein.vxlan
  ip netns exec %[1]s-n1 nft list table ip skein   # the Service rules
  ip netns exec %[1]s-node1-a getent hosts hello.default.svc.cluster.local   # cluster DNS
  cat %[3]s             # the cluster file: edit it and watch the nodes follow
  cat %[4]s/node1.log   # skeind's log on node1
Tear down with: make demo-down
`, prefix, pods[5].IPs[0], c.File, c.Dir)
	} else {
		fmt.Println("\ntorn down.")
	}
	if failures > 0 {
		return fmt.Errorf("%d connections failed", failures)
	}
	fmt.Println("all pairs connected, with no NAT between pods; names resolved on every pod's own node.")
	return nil
}

// The demo's Services: hello (ClusterIP, a named port) and hello-pods
// (headless), both with a pod on node2 and one on node3 as endpoints.
const (
	clusterIP    = "10.96.0.20"
	clusterDNSIP = "10.96.0.10" // kubelet's clusterDNS: answered by skeind on every node
	services     = `apiVersion: v1
kind: Service
metadata: {name: hello, namespace: default}
spec: {clusterIP: %[1]s, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: hello-pods, namespace: default}
spec: {clusterIP: None, ports: [{name: http, port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: hello-1, namespace: default, labels: {kubernetes.io/service-name: hello}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [%[2]s], nodeName: %[3]s, conditions: {ready: true}}
- {addresses: [%[4]s], nodeName: %[5]s, conditions: {ready: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: hello-pods-1, namespace: default, labels: {kubernetes.io/service-name: hello-pods}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [%[2]s], hostname: %[6]s, nodeName: %[3]s, conditions: {ready: true}}
- {addresses: [%[4]s], hostname: %[7]s, nodeName: %[5]s, conditions: {ready: true}}
`
)

// service adds the Services, and connects to hello's ClusterIP from a
// pod on node1: skeind's Service proxy spreads the connections over the
// echo servers in pods[2] and pods[5], and the endpoints see the client
// pod's own address.
func service(ctx context.Context, c *harness.Cluster, pods []pod) int {
	ends := []pod{pods[2], pods[5]}
	svc := fmt.Sprintf(services, clusterIP, ends[0].IPs[0], ends[0].node, ends[1].IPs[0], ends[1].node, ends[0].name, ends[1].name)
	if err := c.WriteFile(c.Nodes, svc); err != nil {
		fmt.Println("\nService: FAIL:", err)
		return 1
	}
	client := pods[0]
	fmt.Printf("\nService hello, ClusterIP %s:80, endpoints %s (%s) and %s (%s); 20 connections from %s:\n",
		clusterIP, ends[0].name, ends[0].node, ends[1].name, ends[1].node, client.name)
	answered, seen := map[string]int{}, map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 20; {
		name, src, err := harness.Ask(ctx, client.NS, clusterIP+":80")
		if err != nil {
			if time.Now().After(deadline) { // the rules take one sync to appear
				fmt.Println("  FAIL:", err)
				return 1
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		answered[name]++
		seen[src] = true
		n++
	}
	for _, p := range ends {
		fmt.Printf("  answered by %s: %d\n", p.name, answered[p.name])
	}
	fmt.Printf("  client address the endpoints saw: %v (the client pod is %s)\n", slices.Sorted(maps.Keys(seen)), client.IPs[0])
	if len(seen) != 1 || !seen[client.IPs[0]] || answered[ends[0].name] == 0 || answered[ends[1].name] == 0 {
		fmt.Println("  FAIL: want both endpoints to answer, each seeing the client pod's own address")
		return 1
	}
	return 0
}

// names resolves the cluster's names from a pod on node1, through its
// own resolv.conf (glibc, the search path kubelet writes), answered by
// skeind on node1 itself; then reaches hello by name.
func names(ctx context.Context, pods []pod) int {
	client := pods[0]
	rc, _ := os.ReadFile(filepath.Join(harness.ResolvConfDir(client.NS), "resolv.conf"))
	fmt.Printf("\nNames, from %s, whose resolv.conf is:\n  %s\n", client.name, strings.ReplaceAll(strings.TrimSpace(string(rc)), "\n", "\n  "))
	failures := 0
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  name\tresolves to (getent ahostsv4)\t")
	for _, name := range []string{"hello", "hello.default", "hello.default.svc.cluster.local",
		"hello-pods", pods[2].name + ".hello-pods", "www.example.test"} {
		addrs, err := harness.Getent(ctx, client.NS, name)
		got := strings.Join(addrs, " ")
		if err != nil || len(addrs) == 0 {
			got, failures = "FAIL: "+fmt.Sprint(err), failures+1
		}
		fmt.Fprintf(w, "  %s\t%s\t\n", name, got)
	}
	w.Flush()
	srv := "_http._tcp.hello.default.svc.cluster.local."
	fmt.Printf("  SRV %s (asked of %s):\n", srv, clusterDNSIP)
	m, err := harness.Lookup(ctx, client.NS, clusterDNSIP, srv, miekg.TypeSRV)
	if err != nil || len(m.Answer) == 0 {
		fmt.Println("    FAIL:", err)
		failures++
	} else {
		for _, r := range harness.Records(m.Answer) {
			fmt.Println("    " + r)
		}
	}
	addrs, err := harness.Getent(ctx, client.NS, "hello")
	if err != nil || len(addrs) != 1 {
		fmt.Println("  hello by name: FAIL:", err)
		return failures + 1
	}
	name, _, err := harness.Ask(ctx, client.NS, net.JoinHostPort(addrs[0], "80"))
	if err != nil {
		fmt.Println("  hello by name: FAIL:", err)
		return failures + 1
	}
	fmt.Printf("  connected to hello by name: answered by %s\n", name)
	return failures
}

// matrix connects every pod to every address of every other pod: ping,
// then TCP, reporting the source address the receiver saw.
func matrix(ctx context.Context, pods []pod) int {
	failures := 0
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nfrom\tto\taddress\tpath\tping\tsource seen by receiver")
	for _, src := range pods {
		for _, dst := range pods {
			if src.name == dst.name {
				continue
			}
			path := "same node"
			if src.node != dst.node {
				path = "overlay"
			}
			for i, ip := range dst.IPs {
				ping := "ok"
				if err := src.NS.Ping(ctx, ip, 1); err != nil {
					ping, failures = "FAIL", failures+1
				}
				seen, err := harness.SourceSeen(dst.NS, ip, src.NS)
				switch {
				case err != nil:
					seen, failures = "FAIL: "+err.Error(), failures+1
				case seen != src.IPs[i]:
					seen, failures = seen+" (NAT!)", failures+1
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", src.name, dst.name, ip, path, ping, seen)
			}
		}
	}
	w.Flush()
	return failures
}

func summary(ctx context.Context, n *harness.ClusterNode) {
	fmt.Printf("\n%s (underlay %s, pod CIDRs %v):\n", n.Name, n.IP, n.PodCIDRs)
	for _, args := range [][]string{
		{"ip", "route", "show", "dev", "skein.vxlan"},
		{"ip", "-6", "route", "show", "dev", "skein.vxlan"},
		{"bridge", "fdb", "show", "dev", "skein.vxlan"},
	} {
		out, err := n.NS.Exec(ctx, args...)
		if err != nil {
			out = err.Error()
		}
		fmt.Printf("  $ %s\n", strings.Join(args, " "))
		for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
			fmt.Println("    " + l)
		}
	}
}
