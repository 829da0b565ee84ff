package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

// newCluster builds a virtual cluster torn down when the test ends.
func newCluster(t *testing.T, o harness.ClusterOptions) *harness.Cluster {
	t.Helper()
	requireRoot(t)
	o.Prefix = uniq("c")
	o.BinDir = pluginDir
	c, err := harness.NewCluster(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("skeind log of %s:\n%s", n.Name, n.Log())
			}
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

type clusterPod struct {
	*harness.Pod
	node string
	name string
}

// podsOn makes n pods on each given node.
func podsOn(t *testing.T, c *harness.Cluster, nodes []*harness.ClusterNode, n int) []clusterPod {
	t.Helper()
	var pods []clusterPod
	for _, nd := range nodes {
		for j := 0; j < n; j++ {
			name := fmt.Sprintf("%s-p%d", nd.Name, j)
			p, err := nd.AddPod(ctx(t), c.Underlay.Name[:len(c.Underlay.Name)-3]+"-"+name, name)
			if err != nil {
				t.Fatalf("ADD %s: %v", name, err)
			}
			pods = append(pods, clusterPod{p, nd.Name, name})
		}
	}
	return pods
}

// pingMatrix pings every address of every pod from every other pod and
// returns the failures.
func pingMatrix(ctx context.Context, pods []clusterPod) []string {
	var mu sync.Mutex
	var fails []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, src := range pods {
		for _, dst := range pods {
			if src.name == dst.name {
				continue
			}
			for _, ip := range dst.IPs {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					if err := src.NS.Ping(ctx, ip, 2); err != nil {
						mu.Lock()
						fails = append(fails, fmt.Sprintf("%s -> %s %s", src.name, dst.name, ip))
						mu.Unlock()
					}
				}()
			}
		}
	}
	wg.Wait()
	return fails
}

func TestOverlayPingMatrix(t *testing.T) {
	for _, dual := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "dual-stack"}[dual], func(t *testing.T) {
			c := newCluster(t, harness.ClusterOptions{Nodes: 3, DualStack: dual})
			pods := podsOn(t, c, c.Nodes, 2)
			if fails := pingMatrix(ctx(t), pods); len(fails) > 0 {
				t.Fatalf("%d pairs failed:\n%s", len(fails), strings.Join(fails, "\n"))
			}
		})
	}
}

func TestOverlayNoNAT(t *testing.T) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 2, DualStack: true})
	pods := podsOn(t, c, c.Nodes, 1)
	a, b := pods[0], pods[1]
	for i := range b.IPs {
		if got := sourceSeen(t, b.Pod, b.IPs[i], a.Pod); got != a.IPs[i] {
			t.Errorf("pod on node2 saw %s from the pod on node1, want its own address %s", got, a.IPs[i])
		}
	}
}

// overlayState lists what node holds on the overlay device.
func overlayState(t *testing.T, n *harness.ClusterNode) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-o", "neigh", "show", "dev", "skein.vxlan", "nud", "permanent"},
		{"bridge", "fdb", "show", "dev", "skein.vxlan"},
		{"ip", "-o", "route", "show", "dev", "skein.vxlan"},
		{"ip", "-o", "-6", "route", "show", "dev", "skein.vxlan"},
	} {
		out, err := n.NS.Exec(ctx(t), args...)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	return b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOverlayNodeJoinsAndLeaves(t *testing.T) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 3, InFile: 2})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	// node3 runs skeind but is not in the cluster yet: it waits, not ready.
	if code, body, _ := n3.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/readyz"); code != 503 || !strings.Contains(body, "not in the cluster") {
		t.Errorf("node3 readyz = %d %q, want 503 saying why", code, body)
	}
	if err := c.WriteFile(c.Nodes, ""); err != nil {
		t.Fatal(err)
	}
	if err := n3.WaitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	pods := podsOn(t, c, c.Nodes, 1)
	waitFor(t, "node1 to reach node3's pod", func() bool { return pods[0].NS.Ping(ctx(t), pods[2].IPs[0], 1) == nil })

	// node2 leaves: every other node drops its route, FDB and neighbour.
	if !strings.Contains(overlayState(t, n1), "10.244.2.0") {
		t.Fatal("node1 has no entries for node2 to begin with")
	}
	if err := c.WriteFile([]*harness.ClusterNode{n1, n3}, ""); err != nil {
		t.Fatal(err)
	}
	mac2 := strings.ToLower(overlayMAC(t, n2))
	for _, n := range []*harness.ClusterNode{n1, n3} {
		waitFor(t, n.Name+" to forget node2", func() bool {
			s := overlayState(t, n)
			return !strings.Contains(s, "10.244.2.0") && !strings.Contains(s, "172.30.0.12") && !strings.Contains(s, mac2)
		})
	}
	if err := pods[0].NS.Ping(ctx(t), pods[2].IPs[0], 1); err != nil {
		t.Errorf("node1 -> node3 after node2 left: %v", err)
	}
}

func overlayMAC(t *testing.T, n *harness.ClusterNode) string {
	t.Helper()
	out, err := n.NS.Exec(ctx(t), "cat", "/sys/class/net/skein.vxlan/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// TestOverlaySurvivesDaemonRestart pings across nodes every 10 ms while
// both nodes' skeind are killed with SIGKILL and started again: the
// dataplane stays, and the restarted daemons reconcile without a gap.
func TestOverlaySurvivesDaemonRestart(t *testing.T) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 2})
	pods := podsOn(t, c, c.Nodes, 1)
	before := overlayState(t, c.Nodes[0])
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := pods[0].NS.Exec(ctx(t), "ping", "-n", "-q", "-i", "0.01", "-c", "400", "-W", "1", pods[1].IPs[0])
		done <- result{out, err}
	}()
	time.Sleep(500 * time.Millisecond)
	for _, n := range c.Nodes {
		n.Kill(syscall.SIGKILL)
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		if err := n.WaitReady(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.err != nil || !strings.Contains(r.out, " 0% packet loss") {
		t.Fatalf("pings lost across the restart: %v\n%s", r.err, r.out)
	}
	if after := overlayState(t, c.Nodes[0]); after != before {
		t.Errorf("the restart changed node1's overlay state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestOverlayMTU sends the largest packet the pod MTU allows, with DF
// set, across nodes: it must arrive whole; one byte more must not fit.
func TestOverlayMTU(t *testing.T) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 2})
	pods := podsOn(t, c, c.Nodes, 1)
	// Underlay 1500 - 50 of VXLAN over IPv4 = 1450; minus 28 of IPv4+ICMP.
	if _, err := pods[0].NS.Exec(ctx(t), "ping", "-n", "-q", "-M", "do", "-s", "1422", "-c", "3", "-i", "0.1", "-W", "2", pods[1].IPs[0]); err != nil {
		t.Fatalf("a 1450-byte packet with DF did not cross: %v", err)
	}
	if _, err := pods[0].NS.Exec(ctx(t), "ping", "-n", "-q", "-M", "do", "-s", "1423", "-c", "1", "-W", "1", pods[1].IPs[0]); err == nil {
		t.Fatal("a 1451-byte packet with DF got through a 1450-byte path")
	}
	if out, _ := pods[0].NS.Exec(ctx(t), "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1450 ") {
		t.Errorf("pod MTU: %s", out)
	}
}

func TestOverlaySkipsBadNodes(t *testing.T) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 2})
	bad := `apiVersion: v1
kind: Node
metadata: {name: copycat, creationTimestamp: "2026-06-01T00:00:00Z"}
spec: {podCIDRs: [10.244.2.0/25]}
status: {addresses: [{type: InternalIP, address: 172.30.0.99}]}
---
apiVersion: v1
kind: Node
metadata: {name: garbage}
spec: {podCIDRs: [10.244.50.0/24]}
status: {addresses: [{type: InternalIP, address: "not-an-address"}]}
`
	if err := c.WriteFile(c.Nodes, bad); err != nil {
		t.Fatal(err)
	}
	n1 := c.Nodes[0]
	waitFor(t, "node1 to report the bad nodes", func() bool {
		_, body, err := n1.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/metrics")
		return err == nil &&
			strings.Contains(body, `skein_overlay_nodes_skipped{reason="overlapping_podcidr"} 1`) &&
			strings.Contains(body, `skein_overlay_nodes_skipped{reason="no_underlay_address"} 1`)
	})
	if log := n1.Log(); !strings.Contains(log, "node=copycat reason=overlapping_podcidr") {
		t.Errorf("the log does not name the skipped node:\n%s", log)
	}
	if s := overlayState(t, n1); strings.Contains(s, "172.30.0.99") || strings.Contains(s, "10.244.50.0") {
		t.Errorf("a bad node was programmed:\n%s", s)
	}
	pods := podsOn(t, c, c.Nodes, 1)
	if err := pods[0].NS.Ping(ctx(t), pods[1].IPs[0], 1); err != nil {
		t.Errorf("good nodes stopped talking: %v", err)
	}
	if code, _, _ := n1.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/readyz"); code != 200 {
		t.Errorf("readyz = %d with bad peers, want 200", code)
	}
}

// TestOverlayMasquerade: a pod reaching a host outside the cluster shows
// up there with its node's address; reaching another node, with its own.
// Pod traffic is forwarded even with the FORWARD policy set to DROP.
func TestOverlayMasquerade(t *testing.T) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 2})
	// The underlay namespace (harness.OutsideIP, 172.30.0.1) plays a
	// host outside the cluster.
	for _, n := range c.Nodes {
		if _, err := n.NS.Exec(ctx(t), "iptables", "-P", "FORWARD", "DROP"); err != nil {
			t.Fatal(err)
		}
	}
	pods := podsOn(t, c, c.Nodes, 1)
	outside := &harness.Pod{NS: c.Underlay}
	if got := sourceSeen(t, outside, "172.30.0.1", pods[0].Pod); got != "172.30.0.11" {
		t.Errorf("the outside host saw %s, want node1's address 172.30.0.11", got)
	}
	node2 := &harness.Pod{NS: c.Nodes[1].NS}
	if got := sourceSeen(t, node2, "172.30.0.12", pods[0].Pod); got != pods[0].IPs[0] {
		t.Errorf("node2 saw %s from a pod on node1, want the pod's own %s", got, pods[0].IPs[0])
	}
	if got := sourceSeen(t, pods[1].Pod, pods[1].IPs[0], pods[0].Pod); got != pods[0].IPs[0] {
		t.Errorf("with FORWARD policy DROP the pod on node2 saw %s, want %s", got, pods[0].IPs[0])
	}
	// skeind cleanup removes the table, the chain and its jump.
	c.Nodes[0].Kill(syscall.SIGTERM)
	if out, err := c.Nodes[0].NS.Exec(ctx(t), pluginDir+"/skeind", "cleanup", "--conflist", c.Nodes[0].Conflist); err != nil {
		t.Fatalf("cleanup: %v %s", err, out)
	}
	out, _ := c.Nodes[0].NS.Exec(ctx(t), "sh", "-c", "nft list tables; iptables -S; ip -o link")
	for _, leftover := range []string{"inet skein", "SKEIN-FORWARD", "skein.vxlan"} {
		if strings.Contains(out, leftover) {
			t.Errorf("after cleanup node1 still has %s:\n%s", leftover, out)
		}
	}
}

// TestOverlayRecreatesIncompatibleDevice: a skein.vxlan left with another
// VNI and port (an older install, a hand edit) is replaced, not trusted.
func TestOverlayRecreatesIncompatibleDevice(t *testing.T) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 2})
	n1 := c.Nodes[0]
	n1.Kill(syscall.SIGTERM)
	if _, err := n1.NS.Exec(ctx(t), "sh", "-c",
		"ip link del skein.vxlan && ip link add skein.vxlan type vxlan id 99 dstport 4789 local 172.30.0.11 && ip link set skein.vxlan up"); err != nil {
		t.Fatal(err)
	}
	if err := n1.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n1.WaitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := n1.NS.Exec(ctx(t), "ip", "-d", "link", "show", "skein.vxlan")
	if err != nil || !strings.Contains(out, "vxlan id 1 ") || !strings.Contains(out, "dstport 8472") {
		t.Fatalf("device not recreated: %v\n%s", err, out)
	}
	if !strings.Contains(n1.Log(), "recreating the VXLAN device") {
		t.Errorf("the log does not say why the device was recreated:\n%s", n1.Log())
	}
	pods := podsOn(t, c, c.Nodes, 1)
	if err := pods[0].NS.Ping(ctx(t), pods[1].IPs[0], 1); err != nil {
		t.Error(err)
	}
}
