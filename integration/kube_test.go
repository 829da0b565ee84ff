package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

// requireAPIServer returns the kubeconfig of the API server that make
// test starts (scripts/k8s.sh); without one the test skips, or fails
// under CI.
func requireAPIServer(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	kc := os.Getenv("SKEIN_TEST_KUBECONFIG")
	if kc != "" {
		return kc
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs a kube-apiserver (scripts/k8s.sh up; make test starts one); under CI=true it fails instead of skipping")
	}
	t.Skip("needs a kube-apiserver: run through make test, or set SKEIN_TEST_KUBECONFIG")
	return ""
}

// TestOverlayOnKubernetesAPI runs every node's skeind against a real
// kube-apiserver: the Nodes registered there make the overlay, a Node
// registered later joins it, and a Node deleted leaves every peer.
func TestOverlayOnKubernetesAPI(t *testing.T) {
	kc := requireAPIServer(t)
	c := newCluster(t, harness.ClusterOptions{Nodes: 3, DualStack: true, Kubeconfig: kc, InFile: 2})
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	pods := podsOn(t, c, []*harness.ClusterNode{n1, n2}, 1)
	if fails := pingMatrix(ctx(t), pods); len(fails) > 0 {
		t.Fatalf("pairs failed:\n%s", strings.Join(fails, "\n"))
	}
	if err := c.WriteFile(c.Nodes, ""); err != nil {
		t.Fatal(err)
	}
	if err := n3.WaitReady(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	p3 := podsOn(t, c, []*harness.ClusterNode{n3}, 1)
	waitFor(t, "node1 to reach the new node's pod", func() bool { return pods[0].NS.Ping(ctx(t), p3[0].IPs[0], 1) == nil })
	if err := c.WriteFile([]*harness.ClusterNode{n1, n3}, ""); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*harness.ClusterNode{n1, n3} {
		waitFor(t, n.Name+" to forget the deleted node", func() bool {
			s := overlayState(t, n)
			return !strings.Contains(s, "10.244.2.0") && !strings.Contains(s, n2.IP.String())
		})
	}
	if err := pods[0].NS.Ping(ctx(t), p3[0].IPs[0], 1); err != nil {
		t.Errorf("node1 -> node3 after node2 was deleted: %v", err)
	}
}
