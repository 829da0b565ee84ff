package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

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
