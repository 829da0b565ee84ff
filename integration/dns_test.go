package integration

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/skein-net/skein/integration/harness"
)

// clusterDNSIP is kubelet's clusterDNS in the DNS tests: the kube-dns
// Service's ClusterIP, which skeind answers on every node.
const clusterDNSIP = "10.96.0.10"

// dnsServices are the DNS tests' Services (the pods dual-stack):
// backend (ClusterIP, a named port, its endpoint on node2), db
// (headless: one endpoint per node in each family, one with a hostname),
// dual (a dual-stack ClusterIP), cart in another namespace, and a
// kube-dns Service with no endpoints (no CoreDNS runs).
func dnsServices(p1, p2 clusterPod) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [%[2]s], nodeName: node2, conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: None, ports: [{name: pg, port: 5432, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: [%[1]s], hostname: db-0, nodeName: node1, conditions: {ready: true}}
- {addresses: [%[2]s], nodeName: node2, conditions: {ready: true}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-2, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv6
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: ["%[4]s"], hostname: db-0, nodeName: node1, conditions: {ready: true}}
- {addresses: ["%[5]s"], nodeName: node2, conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: dual, namespace: default}
spec: {clusterIP: 10.96.0.40, clusterIPs: [10.96.0.40, "fd00:96::40"], ipFamilies: [IPv4, IPv6], ipFamilyPolicy: RequireDualStack, ports: [{name: http, port: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {clusterIP: 10.96.0.30, ports: [{port: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec: {clusterIP: %[3]s, ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]}
`, p1.IPs[0], p2.IPs[0], clusterDNSIP, p1.IPs[1], p2.IPs[1])
}

// resolvConf gives the pod the resolv.conf its CNI result says (gone
// with the pod's namespace).
func resolvConf(t *testing.T, p clusterPod) {
	t.Helper()
	if err := harness.WriteResolvConf(p.NS, p.DNS); err != nil {
		t.Fatal(err)
	}
}

// TestClusterDNS: on a two-node cluster, a pod on each node resolves the
// cluster's names through its own resolver from the server on its own
// node: short and qualified Service names, headless pods, SRV, pod
// records, names outside the cluster through the upstream; the
// conflist names the settings; changes are answered on every node;
// queries to the server are not tracked.
func TestClusterDNS(t *testing.T) {
	// The Service range holds the kube-dns ClusterIP: refusing new
	// connections into it must spare the node's own addresses.
	c := newCluster(t, harness.ClusterOptions{Nodes: 2, DualStack: true,
		Env: []string{"SKEIN_CLUSTER_DNS_IP=" + clusterDNSIP, "SKEIN_SERVICE_CIDR=10.96.0.0/16,fd00:96::/108"}})
	pods := podsOn(t, c, c.Nodes, 1)
	p1, p2 := pods[0], pods[1]
	echoServer(t, p2)
	for _, p := range pods {
		resolvConf(t, p)
	}
	if err := c.WriteFile(c.Nodes, dnsServices(p1, p2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backend's name on both nodes", func() bool {
		for _, p := range pods {
			if addrs, err := harness.Getent(ctx(t), p.NS, "backend"); err != nil || !slices.Equal(addrs, []string{"10.96.0.20"}) {
				return false
			}
		}
		return true
	})

	t.Run("pods get the settings", func(t *testing.T) {
		d := p1.DNS
		if !slices.Equal(d.Nameservers, []string{clusterDNSIP}) || !slices.Contains(d.Options, "ndots:5") ||
			!slices.Equal(d.Search, []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}) {
			t.Errorf("the pod's DNS settings: %+v", d)
		}
	})

	t.Run("service names through glibc", func(t *testing.T) {
		for _, p := range pods {
			for name, want := range map[string][]string{
				"backend": {"10.96.0.20"}, "backend.default": {"10.96.0.20"},
				"backend.default.svc.cluster.local": {"10.96.0.20"}, "cart.shop": {"10.96.0.30"},
				"db": {p1.IPs[0], p2.IPs[0]}, "db-0.db": {p1.IPs[0]},
				"www." + strings.TrimSuffix(harness.OutsideDomain, "."): {harness.OutsideAddr},
			} {
				slices.Sort(want)
				if got, err := harness.Getent(ctx(t), p.NS, name); err != nil || !slices.Equal(got, want) {
					t.Errorf("%s: %s is %v (%v), want %v", p.name, name, got, err, want)
				}
			}
			if got, err := harness.Getent(ctx(t), p.NS, "nothing.default"); err == nil {
				t.Errorf("%s: an unknown name resolved to %v", p.name, got)
			}
		}
	})

	t.Run("a Service reached by name", func(t *testing.T) {
		addrs, err := harness.Getent(ctx(t), p1.NS, "backend")
		if err != nil || len(addrs) != 1 {
			t.Fatalf("backend: %v %v", addrs, err)
		}
		name, _, err := harness.Ask(ctx(t), p1.NS, net.JoinHostPort(addrs[0], "80"))
		if err != nil || name != p2.name {
			t.Errorf("backend by name reached %q (%v), want %s", name, err, p2.name)
		}
	})

	t.Run("records by type", func(t *testing.T) {
		pod2 := strings.ReplaceAll(p2.IPs[0], ".", "-") + ".default.pod.cluster.local."
		for _, tc := range []struct {
			name  string
			qtype uint16
			want  []string
		}{
			{"_http._tcp.backend.default.svc.cluster.local.", miekg.TypeSRV,
				[]string{"_http._tcp.backend.default.svc.cluster.local. SRV 0 100 80 backend.default.svc.cluster.local."}},
			// db-0 is in both families' slices: one target, both
			// addresses; node2's pod has no hostname, so a name per
			// address.
			{"_pg._tcp.db.default.svc.cluster.local.", miekg.TypeSRV, []string{
				"_pg._tcp.db.default.svc.cluster.local. SRV 0 33 5432 " + strings.ReplaceAll(p2.IPs[0], ".", "-") + ".db.default.svc.cluster.local.",
				"_pg._tcp.db.default.svc.cluster.local. SRV 0 33 5432 db-0.db.default.svc.cluster.local.",
				"_pg._tcp.db.default.svc.cluster.local. SRV 0 33 5432 " + strings.ReplaceAll(p2.IPs[1], ":", "-") + ".db.default.svc.cluster.local."}},
			{pod2, miekg.TypeA, []string{pod2 + " A " + p2.IPs[0]}},
			{"backend.default.svc.cluster.local.", miekg.TypeAAAA, nil},
			// Dual-stack: each family its own records.
			{"dual.default.svc.cluster.local.", miekg.TypeA, []string{"dual.default.svc.cluster.local. A 10.96.0.40"}},
			{"dual.default.svc.cluster.local.", miekg.TypeAAAA, []string{"dual.default.svc.cluster.local. AAAA fd00:96::40"}},
			{"db-0.db.default.svc.cluster.local.", miekg.TypeAAAA, []string{"db-0.db.default.svc.cluster.local. AAAA " + p1.IPs[1]}},
			{"0.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.", miekg.TypePTR,
				[]string{"0.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa. PTR dual.default.svc.cluster.local."}},
		} {
			for _, server := range []string{clusterDNSIP, "169.254.20.10"} {
				m, err := harness.Lookup(ctx(t), p1.NS, server, tc.name, tc.qtype)
				if err != nil {
					t.Fatalf("%s %s at %s: %v", tc.name, miekg.TypeToString[tc.qtype], server, err)
				}
				if got := harness.Records(m.Answer); m.Rcode != miekg.RcodeSuccess || !slices.Equal(got, tc.want) {
					t.Errorf("%s %s at %s: %s %v, want %v", tc.name, miekg.TypeToString[tc.qtype], server,
						miekg.RcodeToString[m.Rcode], got, tc.want)
				}
			}
		}
	})

	t.Run("changes answered on every node", func(t *testing.T) {
		added := dnsServices(p1, p2) + `---
apiVersion: v1
kind: Service
metadata: {name: late, namespace: default}
spec: {clusterIP: 10.96.0.21, ports: [{port: 80, protocol: TCP}]}
`
		for _, step := range []struct {
			file  string
			rcode int
		}{{added, miekg.RcodeSuccess}, {dnsServices(p1, p2), miekg.RcodeNameError}} {
			start := time.Now()
			if err := c.WriteFile(c.Nodes, step.file); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for _, p := range pods {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Since(start) < 10*time.Second {
						if m, err := harness.Lookup(ctx(t), p.NS, "169.254.20.10", "late.default.svc.cluster.local.", miekg.TypeA); err == nil && m.Rcode == step.rcode {
							t.Logf("%s: %s answered after %s", p.name, miekg.RcodeToString[step.rcode], time.Since(start).Round(time.Millisecond))
							return
						}
						time.Sleep(20 * time.Millisecond)
					}
					t.Errorf("%s: late is not %s after 10 s", p.name, miekg.RcodeToString[step.rcode])
				}()
			}
			wg.Wait()
		}
	})

	t.Run("2,000 parallel lookups", func(t *testing.T) {
		// What a busy pod's resolver sends: A and AAAA back to back from
		// one socket, 2,000 lookups at once, to the address in its
		// resolv.conf; cluster names and names outside the cluster.
		// Through conntrack, A and AAAA of one socket race for one entry
		// and one is dropped, costing a 5 s retry: none may be lost.
		cluster := []string{"backend.default.svc.cluster.local.", "db.default.svc.cluster.local.",
			"cart.shop.svc.cluster.local.", "db-0.db.default.svc.cluster.local."}
		names := make([]string, 2000)
		for i := range names {
			names[i] = cluster[i%len(cluster)]
			if i%5 == 4 {
				names[i] = fmt.Sprintf("host%d.%s", i%50, harness.OutsideDomain)
			}
		}
		r, err := harness.Burst(p1.NS, clusterDNSIP+":53", names, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d answers, the last after %s, p99 %s", len(r.Latencies), r.Last, harness.Percentile(r.Latencies, 99))
		if r.Lost > 0 {
			t.Errorf("%d of %d questions were not answered within 1 s", r.Lost, 2*len(names))
		}
	})

	t.Run("the kube-dns ClusterIP from the node", func(t *testing.T) {
		for _, n := range c.Nodes {
			if _, err := harness.Lookup(ctx(t), n.NS, clusterDNSIP, "backend.default.svc.cluster.local.", miekg.TypeA); err != nil {
				t.Errorf("%s asking %s: %v", n.Name, clusterDNSIP, err)
			}
		}
	})

	t.Run("not tracked", func(t *testing.T) {
		for _, server := range []string{clusterDNSIP, "169.254.20.10"} {
			if _, err := harness.Lookup(ctx(t), p1.NS, server, "backend.default.svc.cluster.local.", miekg.TypeA); err != nil {
				t.Fatal(err)
			}
			out, err := c.Nodes[0].NS.Exec(ctx(t), "conntrack", "-L", "-d", server)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "dport=53") {
				t.Errorf("a query to %s is in conntrack:\n%s", server, out)
			}
		}
		// The check can fail: a query to a Service the proxy serves is.
		if _, _, err := harness.Ask(ctx(t), p1.NS, "10.96.0.20:80"); err != nil {
			t.Fatal(err)
		}
		if out, _ := c.Nodes[0].NS.Exec(ctx(t), "conntrack", "-L", "-d", "10.96.0.20"); !strings.Contains(out, "dport=80") {
			t.Errorf("conntrack shows no connection to the ClusterIP either:\n%s", out)
		}
	})

	if c.Upstream.Asked.Load() == 0 {
		t.Error("the upstream was never asked")
	}
}
