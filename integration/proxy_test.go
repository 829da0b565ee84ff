package integration

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

// echoServer runs a harness.Echo in the pod until the test ends.
func echoServer(t *testing.T, p clusterPod) {
	t.Helper()
	e, err := harness.NewEcho(p.NS, p.name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
}

// service renders a Service and its EndpointSlice with the pods as
// endpoints.
func service(name, spec, proto string, eps ...clusterPod) string {
	var backends []harness.Backend
	for _, p := range eps {
		backends = append(backends, harness.Backend{IP: p.IPs[0], Node: p.node})
	}
	return harness.ServiceYAML(name, spec, proto, backends...)
}

// TestServiceProxy runs every Service behaviour on a two-node virtual
// cluster, once per backend.
func TestServiceProxy(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) { testServiceProxy(t, backend) })
	}
}

func testServiceProxy(t *testing.T, backend string) {
	o := harness.ClusterOptions{Nodes: 2, Proxy: backend}
	if backend == "nftables" {
		o.Env = []string{"SKEIN_RESYNC=1s"} // for "rules changed behind skeind"
	}
	c := newCluster(t, o)
	pods := podsOn(t, c, c.Nodes, 2)
	client, a, b, b2 := pods[0], pods[1], pods[2], pods[3] // node1-p0, node1-p1, node2-p0, node2-p1
	for _, p := range pods[1:] {
		echoServer(t, p)
	}
	// The underlay namespace (harness.OutsideIP, 172.30.0.1) plays a
	// host outside the cluster, and is the nodes' default gateway (real
	// nodes have one: traffic to a ClusterIP is routed before it is
	// DNATed).
	for _, n := range c.Nodes {
		if _, err := n.NS.Exec(ctx(t), "ip", "route", "add", "default", "via", "172.30.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	outside := c.Underlay
	// Zones for traffic distribution: node1 in z1, node2 in z2.
	c.Nodes[0].Labels = map[string]string{"topology.kubernetes.io/zone": "z1"}
	c.Nodes[1].Labels = map[string]string{"topology.kubernetes.io/zone": "z2"}
	lbReady := true // whether lb's one endpoint, on node1, is ready
	services := func(webEndpoints []clusterPod, udpEndpoint clusterPod) string {
		return strings.Join([]string{
			"apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: kubernetes}\nspec: {cidrs: [10.96.0.0/16]}\n",
			harness.EndpointsYAML("lb", `{clusterIP: 10.96.0.14, type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 32100, ports: [{port: 80, nodePort: 30082}]}`, "TCP",
				fmt.Sprintf("{addresses: [%s], nodeName: %s, conditions: {ready: %t}}", a.IPs[0], a.node, lbReady)),
			service("itl", `{clusterIP: 10.96.0.16, type: NodePort, internalTrafficPolicy: Local, ports: [{port: 80, nodePort: 30083}]}`, "TCP", b),
			harness.EndpointsYAML("zoned", `{clusterIP: 10.96.0.15, trafficDistribution: PreferClose, ports: [{port: 80}]}`, "TCP",
				fmt.Sprintf("{addresses: [%s], nodeName: %s, conditions: {ready: true}, hints: {forZones: [{name: z1}]}}", a.IPs[0], a.node),
				fmt.Sprintf("{addresses: [%s], nodeName: %s, conditions: {ready: true}, hints: {forZones: [{name: z2}]}}", b.IPs[0], b.node)),
			service("web", `{clusterIP: 10.96.0.10, type: NodePort, ports: [{port: 80, nodePort: 30081}]}`, "TCP", webEndpoints...),
			service("sticky", `{clusterIP: 10.96.0.11, sessionAffinity: ClientIP, ports: [{port: 80}]}`, "TCP", a, b, b2),
			service("empty", `{clusterIP: 10.96.0.12, ports: [{port: 80}]}`, "TCP"),
			service("local", `{clusterIP: 10.96.0.13, type: NodePort, externalTrafficPolicy: Local, ports: [{port: 80, nodePort: 30080}]}`, "TCP", a),
			service("dns", `{clusterIP: 10.96.0.53, ports: [{port: 53, protocol: UDP}]}`, "UDP", udpEndpoint),
		}, "---\n")
	}
	if err := c.WriteFile(c.Nodes, services([]clusterPod{a, b}, b)); err != nil {
		t.Fatal(err)
	}
	// The rules are in once the ClusterIP answers.
	waitFor(t, "web's ClusterIP to answer", func() bool {
		_, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.10:80")
		return err == nil
	})

	t.Run("spread and no NAT", func(t *testing.T) {
		count := map[string]int{}
		for i := 0; i < 300; i++ {
			name, seen, err := harness.Ask(ctx(t), client.NS, "10.96.0.10:80")
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if seen != client.IPs[0] {
				t.Fatalf("%s saw the client as %s, want the pod's own %s", name, seen, client.IPs[0])
			}
			count[name]++
		}
		// Each of two endpoints gets 150 ± 8.7 (one standard deviation);
		// under 100 is more than five deviations off.
		for _, p := range []clusterPod{a, b} {
			if count[p.name] < 100 {
				t.Errorf("over 300 connections: %v; %s got fewer than 100", count, p.name)
			}
		}
	})

	t.Run("session affinity pins", func(t *testing.T) {
		first, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.11:80")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			if name, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.11:80"); err != nil || name != first {
				t.Fatalf("connection %d reached %q (%v), want %s every time", i, name, err, first)
			}
		}
	})

	t.Run("no endpoints is refused at once", func(t *testing.T) {
		// Many times in a row: a refusal the kernel rate-limits (ICMP
		// errors, six at once and then one a second) would leave all but
		// the first few to time out and retry.
		for i := range 30 {
			start := time.Now()
			_, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.12:80")
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect %d to a Service without endpoints: %v, want connection refused", i, err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Fatalf("connect %d refused only after %s", i, d)
			}
		}
	})

	t.Run("an address no Service holds is refused at once", func(t *testing.T) {
		// Inside the ServiceCIDR: an address no Service has, and a port
		// web does not have. From a pod (forwarded) and from the node.
		for _, from := range []*harness.NetNS{client.NS, c.Nodes[0].NS} {
			for _, dst := range []string{"10.96.99.99:80", "10.96.0.10:81"} {
				start := time.Now()
				_, _, err := harness.Ask(ctx(t), from, dst)
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("%s from %s: %v, want connection refused", dst, from.Name, err)
				}
				if d := time.Since(start); d > 500*time.Millisecond {
					t.Errorf("%s from %s refused only after %s", dst, from.Name, d)
				}
			}
		}
	})

	t.Run("hairpin", func(t *testing.T) {
		// a is an endpoint of web: about half its connections come back
		// to itself, and every one must be answered.
		self := 0
		for i := 0; i < 20; i++ {
			name, _, err := harness.Ask(ctx(t), a.NS, "10.96.0.10:80")
			if err != nil {
				t.Fatalf("connection %d from an endpoint to its own Service: %v", i, err)
			}
			if name == a.name {
				self++
			}
		}
		if self == 0 {
			t.Errorf("20 connections and none reached the client itself; hairpin untested")
		}
	})

	t.Run("from the node", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if _, _, err := harness.Ask(ctx(t), c.Nodes[0].NS, "10.96.0.10:80"); err != nil {
				t.Fatalf("node1 to the ClusterIP: %v", err)
			}
		}
	})

	t.Run("NodePort", func(t *testing.T) {
		// Cluster policy: any node answers, masqueraded.
		for _, n := range c.Nodes {
			if _, _, err := harness.Ask(ctx(t), outside, n.IP.String()+":30081"); err != nil {
				t.Errorf("NodePort 30081 on %s: %v", n.Name, err)
			}
		}
		// Local policy: the node with the endpoint answers and the
		// endpoint sees the client's own address.
		name, seen, err := harness.Ask(ctx(t), outside, c.Nodes[0].IP.String()+":30080")
		if err != nil {
			t.Fatalf("NodePort 30080 (Local) on node1: %v", err)
		}
		if name != a.name || seen != "172.30.0.1" {
			t.Errorf("answered by %s seeing %s, want %s seeing the client's 172.30.0.1", name, seen, a.name)
		}
		// The node without a local endpoint drops it.
		if _, _, err := harness.Ask(ctx(t), outside, c.Nodes[1].IP.String()+":30080"); err == nil {
			t.Errorf("node2, which has no endpoint of a Local Service, answered its NodePort")
		}
	})

	t.Run("load balancer health checks", func(t *testing.T) {
		// A load balancer outside probes each node as it would
		// kube-proxy's: the proxy health port, and lb's health-check
		// node port, 200 only where lb has a ready endpoint (node1).
		probe := func(n *harness.ClusterNode, port int, path string) (int, string) {
			code, body, err := outside.HTTPGet(ctx(t), fmt.Sprintf("http://%s:%d%s", n.IP, port, path))
			if err != nil {
				t.Fatalf("probe %s:%d%s: %v", n.Name, port, path, err)
			}
			return code, body
		}
		for _, n := range c.Nodes {
			if code, body := probe(n, 10256, "/healthz"); code != 200 || !strings.Contains(body, `"nodeEligible":true`) {
				t.Errorf("%s's proxy health port: %d %s", n.Name, code, body)
			}
		}
		if code, body := probe(c.Nodes[0], 32100, "/"); code != 200 || !strings.Contains(body, `"localEndpoints": 1`) || !strings.Contains(body, `"name": "lb"`) {
			t.Errorf("node1, lb's endpoint on it: %d %s", code, body)
		}
		if code, body := probe(c.Nodes[1], 32100, "/"); code != 503 || !strings.Contains(body, `"localEndpoints": 0`) {
			t.Errorf("node2, no endpoint of lb: %d %s", code, body)
		}
		// The endpoint goes NotReady: node1 fails the check too.
		lbReady = false
		defer func() { lbReady = true }()
		if err := c.WriteFile(c.Nodes, services([]clusterPod{a, b}, b)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "node1's health check to fail", func() bool { code, _ := probe(c.Nodes[0], 32100, "/"); return code == 503 })
		lbReady = true
		if err := c.WriteFile(c.Nodes, services([]clusterPod{a, b}, b)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "node1's health check to pass again", func() bool { code, _ := probe(c.Nodes[0], 32100, "/"); return code == 200 })
	})

	t.Run("internalTrafficPolicy Local narrows the ClusterIP only", func(t *testing.T) {
		// itl's one endpoint is on node2: node1's pods do not reach its
		// ClusterIP, and node1's NodePort (externalTrafficPolicy
		// Cluster) reaches it.
		if name, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.16:80"); err == nil {
			t.Errorf("a node1 pod reached %s through a Local ClusterIP whose endpoint is on node2", name)
		}
		if name, _, err := harness.Ask(ctx(t), outside, c.Nodes[0].IP.String()+":30083"); err != nil || name != b.name {
			t.Errorf("node1's NodePort 30083: %q (%v), want %s on node2", name, err, b.name)
		}
	})

	t.Run("traffic distribution by zone", func(t *testing.T) {
		// zoned's endpoints are hinted for their nodes' zones: each
		// node's pods reach the endpoint in their zone only.
		for _, tc := range []struct{ from, want clusterPod }{{client, a}, {b2, b}} {
			for i := range 20 {
				name, _, err := harness.Ask(ctx(t), tc.from.NS, "10.96.0.15:80")
				if err != nil || name != tc.want.name {
					t.Fatalf("connection %d from %s reached %q (%v), want %s in its zone", i, tc.from.name, name, err, tc.want.name)
				}
			}
		}
	})

	t.Run("UDP endpoint replaced", func(t *testing.T) {
		var conn net.Conn
		if err := client.NS.Do(func() error {
			var err error
			conn, err = net.Dial("udp", "10.96.0.53:53")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// One socket, one source port: the conntrack entry is what would
		// pin it to the old endpoint.
		askUDP := func() string {
			_, _ = conn.Write([]byte("?"))
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if err != nil {
				return ""
			}
			return string(buf[:n])
		}
		waitFor(t, "the UDP Service to answer", func() bool { return askUDP() == b.name })
		if err := c.WriteFile(c.Nodes, services([]clusterPod{a, b}, b2)); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		for {
			if got := askUDP(); got == b2.name {
				break
			}
			if time.Since(changed) > 2*time.Second {
				t.Fatalf("no answer from the new endpoint %s two seconds after the change", b2.name)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("the new endpoint answered %s after the change", time.Since(changed).Round(10*time.Millisecond))
	})

	t.Run("removed endpoint gets no new connections", func(t *testing.T) {
		if err := c.WriteFile(c.Nodes, services([]clusterPod{a}, b2)); err != nil {
			t.Fatal(err)
		}
		// One sync (100 ms minimum interval here) and the file's settle
		// time: a second is ample.
		time.Sleep(time.Second)
		for i := 0; i < 30; i++ {
			name, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.10:80")
			if err != nil || name != a.name {
				t.Fatalf("connection %d reached %q (%v) after %s left the slice", i, name, err, b.name)
			}
		}
	})

	// The iptables backend cannot check its rules cheaply: it rewrites
	// them all every --resync.
	if backend == "nftables" {
		t.Run("rules changed behind skeind", func(t *testing.T) { testRepair(t, c, client) })
	}

	t.Run("switch backend and cleanup", func(t *testing.T) {
		n := c.Nodes[0]
		other := map[string]string{"nftables": "iptables", "iptables": "nftables"}[backend]
		n.Kill(syscall.SIGTERM)
		// The rules stay while skeind is away.
		if _, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.10:80"); err != nil {
			t.Errorf("the Service stopped working while skeind was down: %v", err)
		}
		n.Args = []string{"--proxy", other}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitReady(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		if left := proxyRules(t, n.NS, backend); left != "" {
			t.Errorf("after switching to %s, %s still holds:\n%s", other, backend, left)
		}
		if _, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.10:80"); err != nil {
			t.Errorf("the Service does not work with %s: %v", other, err)
		}
		n.Kill(syscall.SIGTERM)
		if out, err := n.NS.Exec(ctx(t), pluginDir+"/skeind", "cleanup", "--conflist", n.Conflist); err != nil {
			t.Fatalf("skeind cleanup: %v\n%s", err, out)
		}
		for _, be := range []string{"nftables", "iptables"} {
			if left := proxyRules(t, n.NS, be); left != "" {
				t.Errorf("after skeind cleanup, %s still holds:\n%s", be, left)
			}
		}
	})
}

// proxyRules returns what of the proxy's a backend holds in ns.
func proxyRules(t *testing.T, ns *harness.NetNS, backend string) string {
	t.Helper()
	var found []string
	if backend == "nftables" {
		out, err := ns.Exec(ctx(t), "nft", "list", "tables")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if l == "table ip skein" || l == "table ip6 skein" {
				found = append(found, l)
			}
		}
		return strings.Join(found, "\n")
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Exec(ctx(t), save)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "SKEIN-") && !strings.Contains(l, "SKEIN-FORWARD") {
				found = append(found, l)
			}
		}
	}
	return strings.Join(found, "\n")
}

// testRepair: rules changed behind skeind are put back at its next check.
func testRepair(t *testing.T, c *harness.Cluster, client clusterPod) {
	// The first hop flushed, as a careless "nft flush table" would:
	// skeind sees it at its next check (every --resync, 1s here) and
	// rewrites everything; the repair is counted.
	n := c.Nodes[0]
	fulls := func() string {
		_, body, err := n.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return grepLines(body, `skein_proxy_sync_duration_seconds_count{mode="full"}`)
	}
	// Checked every second since the start, never found changed: two
	// full syncs (the first, and the one the ServiceCIDR's arrival
	// asked for), no repair.
	if got := fulls(); got != `skein_proxy_sync_duration_seconds_count{mode="full"} 2` {
		t.Errorf("before the flush: %q, want two full syncs", got)
	}
	if _, err := n.NS.Exec(ctx(t), "nft", "flush", "table", "ip", "skein"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web's ClusterIP to answer again", func() bool {
		_, _, err := harness.Ask(ctx(t), client.NS, "10.96.0.10:80")
		return err == nil
	})
	_, body, err := n.NS.HTTPGet(ctx(t), "http://127.0.0.1:9897/metrics")
	if !strings.Contains(body, "skein_proxy_repairs_total 1\n") {
		t.Errorf("the repair is not counted once (%v):\n%s", err, grepLines(body, "skein_proxy_"))
	}
	if !strings.Contains(n.Log(), "the service rules were changed behind skeind's back") {
		t.Error("the repair is not logged")
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
