package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

// TestHostileObjects runs a three-node virtual cluster through objects a
// careless or hostile user can create, with each proxy backend: while
// they are present, and after they are gone, every pod reaches every
// other pod across the overlay and the web Service answers from every
// pod; the node given a hostile podCIDR keeps its last good state.
func TestHostileObjects(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { testHostileObjects(t, backend) })
	}
}

func testHostileObjects(t *testing.T, backend string) {
	c := newCluster(t, harness.ClusterOptions{Nodes: 3, Proxy: backend, Env: []string{"SKEIN_SOURCE_STALE_AFTER=1s"}})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	pods := podsOn(t, c, c.Nodes, 1)
	for _, p := range pods {
		echoServer(t, p)
	}
	web := service("web", `{clusterIP: 10.96.0.10, ports: [{port: 80}]}`, "TCP", pods...)
	if err := c.WriteFile(c.Nodes, web); err != nil {
		t.Fatal(err)
	}
	healthy := func(when string) {
		t.Helper()
		for _, a := range pods {
			for _, b := range pods {
				if a.name != b.name {
					if err := a.NS.Ping(ctx(t), b.IPs[0], 1); err != nil {
						t.Errorf("%s: %s cannot reach %s: %v", when, a.name, b.name, err)
					}
				}
			}
			var err error
			for try := 0; try < 3; try++ { // three endpoints: one connect each is enough
				if _, _, err = harness.Ask(ctx(t), a.NS, "10.96.0.10:80"); err == nil {
					break
				}
			}
			if err != nil {
				t.Errorf("%s: %s cannot reach the web Service: %v", when, a.name, err)
			}
		}
	}
	waitFor(t, "the web Service", func() bool { _, _, err := harness.Ask(ctx(t), pods[0].NS, "10.96.0.10:80"); return err == nil })
	healthy("before")

	long := strings.Repeat("l", 250)
	hostile := strings.Join([]string{
		web,
		// Capture node2's VXLAN traffic, through an externalIP and a
		// clusterIP; take the VXLAN port as a NodePort.
		service("hijack", fmt.Sprintf(`{clusterIP: 10.96.0.50, externalIPs: [%s], ports: [{port: 8472, protocol: UDP}]}`, n2.IP), "UDP", pods[0]),
		service("hijack-ip", fmt.Sprintf(`{clusterIP: %s, ports: [{port: 8472, protocol: UDP}]}`, n3.IP), "UDP", pods[0]),
		service("hijack-np", `{type: NodePort, clusterIP: 10.96.0.51, ports: [{port: 53, protocol: UDP, nodePort: 8472}]}`, "UDP", pods[0]),
		// Names no API server would take.
		service("a b", `{clusterIP: 10.96.0.52, ports: [{port: 80}]}`, "TCP", pods[1]),
		service(long, `{clusterIP: 10.96.0.53, ports: [{port: 80}]}`, "TCP", pods[2]),
		// An endpoint on the node's own loopback (its health port).
		harness.ServiceYAML("loop", `{clusterIP: 10.96.0.54, ports: [{port: 80}]}`, "TCP", harness.Backend{IP: "127.0.0.1", Node: n1.Name}),
	}, "---\n")
	if err := c.WriteFile(c.Nodes, hostile); err != nil {
		t.Fatal(err)
	}
	// The hostile Services with good names do work.
	waitFor(t, "the Service named \"a b\"", func() bool { _, _, err := harness.Ask(ctx(t), pods[0].NS, "10.96.0.52:80"); return err == nil })
	waitFor(t, "the Service with a long name", func() bool { _, _, err := harness.Ask(ctx(t), pods[0].NS, "10.96.0.53:80"); return err == nil })
	time.Sleep(500 * time.Millisecond) // a few more syncs with it all in place
	healthy("with the hostile objects")
	if _, _, err := harness.Ask(ctx(t), pods[0].NS, "10.96.0.54:80"); err == nil {
		t.Error("a Service reached the node's loopback through a 127.0.0.1 endpoint")
	}
	for _, n := range c.Nodes {
		if log := n.Log(); strings.Contains(log, "service proxy sync failed") {
			t.Errorf("%s: a proxy sync failed:\n%s", n.Name, log)
		}
	}

	if err := c.WriteFile(c.Nodes, web); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Service named \"a b\" to go", func() bool { _, _, err := harness.Ask(ctx(t), pods[0].NS, "10.96.0.52:80"); return err != nil })
	healthy("after the hostile objects left")

	// node1 claims every address as its pod network. Its peers leave it
	// out of the overlay (as before); node1 itself keeps its last good
	// state rather than taking 0.0.0.0/0 as its pods' subnet.
	greedy := strings.Replace(n1.NodeYAML(), fmt.Sprintf("%q", n1.PodCIDRs[0].String()), `"0.0.0.0/0"`, 1)
	conflistBefore, err := os.ReadFile(n1.Conflist)
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{greedy, n2.NodeYAML(), n3.NodeYAML(), web}
	if err := os.WriteFile(c.File+".tmp", []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(c.File+".tmp", c.File); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node1 to refuse its podCIDR", func() bool {
		code, body, _ := n1.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/readyz")
		return code == 503 && strings.Contains(body, "podCIDR is refused")
	})
	if after, err := os.ReadFile(n1.Conflist); err != nil || string(after) != string(conflistBefore) {
		t.Errorf("node1's conflist changed under a hostile podCIDR (%v):\n%s", err, after)
	}
	if err := pods[1].NS.Ping(ctx(t), pods[2].IPs[0], 1); err != nil {
		t.Errorf("node2 and node3 stopped talking while node1 is hostile: %v", err)
	}
	if err := c.WriteFile(c.Nodes, web); err != nil {
		t.Fatal(err)
	}
	if err := n1.WaitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node2 to reach node1's pod again", func() bool { return pods[1].NS.Ping(ctx(t), pods[0].IPs[0], 1) == nil })
	healthy("after node1 is mended")

	// A FIFO where the cluster file was: the source fails without
	// freezing, /readyz says so after --source-stale-after, the
	// dataplane stays, and the next good file is read.
	if err := os.Remove(c.File); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(c.File, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node1 to say its source is failing", func() bool {
		code, body, _ := n1.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/readyz")
		return code == 503 && strings.Contains(body, "cluster source has failed")
	})
	if _, body, err := n1.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/metrics"); !strings.Contains(body, `skein_source_errors_total{reason="not_regular_file"}`) {
		t.Errorf("no source error in the metrics (%v):\n%s", err, body)
	}
	healthy("while the source fails")
	if err := c.WriteFile(c.Nodes, web); err != nil {
		t.Fatal(err)
	}
	if err := n1.WaitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
