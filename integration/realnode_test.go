package integration

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skein-net/skein/integration/harness"
)

// realPlane starts a control plane of its own for real nodes, and
// stops it when the test ends.
func realPlane(t *testing.T) *harness.RealPlane {
	t.Helper()
	requireRoot(t)
	p, err := harness.StartRealPlane(filepath.Join(os.TempDir(), uniq("k8s")), harness.DefaultRealPorts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// TestRealNodes: nodes that are real Kubernetes nodes (containerd and a
// kubelet each, in namespaces of their own) register with the control
// plane, with the test images in their containerd.
func TestRealNodes(t *testing.T) {
	plane := realPlane(t)
	imgs, err := harness.TestImages(t.TempDir(), pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := harness.NewRealCluster(ctx(t), harness.RealOptions{
		Prefix: uniq("r"), Nodes: 2, K8sRun: plane.Run, Kubelet: filepath.Join(plane.Bin, "kubelet"),
		Images: imgs, PauseImage: harness.PauseImage, APIPort: plane.Ports.API,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Log(n.Logs())
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, n := range c.Nodes {
		obj, err := c.API().CoreV1().Nodes().Get(ctx(t), n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var addrs []string
		for _, a := range obj.Status.Addresses {
			addrs = append(addrs, string(a.Type)+"="+a.Address)
		}
		if !strings.Contains(strings.Join(addrs, " "), "InternalIP="+n.IP.String()) {
			t.Errorf("Node %s has addresses %v, want InternalIP %s", n.Name, addrs, n.IP)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			obj, err = c.API().CoreV1().Nodes().Get(ctx(t), n.Name, metav1.GetOptions{})
			if err == nil && len(obj.Status.Images) >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Node %s reports images %v, want the pause, netexec and skein images", n.Name, obj.Status.Images)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// skein installed as users install it: the nodes become Ready once
	// its DaemonSet's pod has placed the plugin and written the conflist.
	if err := plane.InstallSkein(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if err := n.WaitReady(ctx(t), 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("pods and Services", func(t *testing.T) { testRealTraffic(t, c) })
	t.Run("hostPort", func(t *testing.T) { testRealHostPort(t, c) })
	t.Run("readiness", func(t *testing.T) { testRealReadiness(t, c) })
	t.Run("load balancer health checks", func(t *testing.T) { testRealHealthChecks(t, c) })
	t.Run("upgrade without an outage", func(t *testing.T) { testRealUpgrade(t, c) })
	t.Run("deleted pods release their addresses", func(t *testing.T) { testRealRelease(t, c) })
	// Last: the node goes.
	t.Run("a deleted node leaves every route", func(t *testing.T) { testRealNodeGone(t, c) })
}

// waitUntil polls cond every 250 ms until it holds, failing the test
// after timeout: real nodes take seconds where the virtual ones take
// milliseconds.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checks numbers the check pods of a test run.
var checks atomic.Int32

func checkName(what string) string { return fmt.Sprintf("%s-%d", what, checks.Add(1)) }

// testRealHostPort: a pod's hostPort answers on its node's address, from
// another node.
func testRealHostPort(t *testing.T, c *harness.RealCluster) {
	api := c.API()
	n1, n2 := c.Nodes[0], c.Nodes[1]
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hostport"},
		Spec: corev1.PodSpec{
			NodeName: n1.Name, TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{Name: "web", Image: netexecImage, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 18080, Protocol: corev1.ProtocolTCP}}}},
		},
	}
	if _, err := api.CoreV1().Pods("default").Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.CoreV1().Pods("default").Delete(ctx(t), "hostport", metav1.DeleteOptions{}) }()
	url := "http://" + net.JoinHostPort(n1.IP.String(), "18080") + "/hostname"
	waitUntil(t, time.Minute, "the hostPort to answer from "+n2.Name, func() bool {
		code, body, err := n2.NS.HTTPGet(ctx(t), url)
		return err == nil && code == 200 && body == "hostport"
	})
}

// webPods are the web Deployment's pods, by name.
func webPods(t *testing.T, api kubernetes.Interface) []corev1.Pod {
	t.Helper()
	pods, err := api.CoreV1().Pods("default").List(ctx(t), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// endpointReady tells whether ip is a ready endpoint of web's slices.
func endpointReady(t *testing.T, api kubernetes.Interface, ip string) bool {
	slices, err := api.DiscoveryV1().EndpointSlices("default").List(ctx(t), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
	if err != nil {
		return false
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if len(e.Addresses) > 0 && e.Addresses[0] == ip {
				return e.Conditions.Ready == nil || *e.Conditions.Ready
			}
		}
	}
	return false
}

// serviceAnswers asks the web Service n times from a pod on node and
// returns the pods that answered, with how often.
func serviceAnswers(t *testing.T, api kubernetes.Interface, node string, n int) map[string]int {
	t.Helper()
	args := []string{"get"}
	for range n {
		args = append(args, "http://web/hostname")
	}
	out, err := runOn(t, api, node, checkName("spread"), args...)
	if err != nil {
		t.Fatalf("the Service from %s: %v", node, err)
	}
	seen := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			seen[f[1]]++
		}
	}
	return seen
}

// testRealReadiness: a pod whose readiness probe fails leaves the
// Service's endpoints (through the real EndpointSlice controller) and
// gets no new connections; it comes back when the probe passes again.
func testRealReadiness(t *testing.T, c *harness.RealCluster) {
	api := c.API()
	target := webPods(t, api)[0]
	client := c.Nodes[len(c.Nodes)-1].Name
	set := func(ready string) {
		t.Helper()
		url := "http://" + net.JoinHostPort(target.Status.PodIP, "8080") + "/ready?ready=" + ready
		if out, err := runOn(t, api, client, checkName("ready"), "get", url); err != nil {
			t.Fatalf("set %s's readiness: %v\n%s", target.Name, err, out)
		}
	}
	set("false")
	waitUntil(t, time.Minute, target.Name+" to leave the ready endpoints", func() bool { return !endpointReady(t, api, target.Status.PodIP) })
	// The proxy syncs at most once a second: give it that second.
	time.Sleep(1500 * time.Millisecond)
	if seen := serviceAnswers(t, api, client, 40); seen[target.Name] > 0 || len(seen) == 0 {
		t.Errorf("40 connections with %s not ready reached %v", target.Name, seen)
	}
	set("true")
	waitUntil(t, time.Minute, target.Name+" to be ready again", func() bool { return endpointReady(t, api, target.Status.PodIP) })
	time.Sleep(1500 * time.Millisecond)
	// Four endpoints: the chance that 60 connections miss one is 3e-8.
	if seen := serviceAnswers(t, api, client, 60); seen[target.Name] == 0 {
		t.Errorf("60 connections with %s ready again reached %v", target.Name, seen)
	}
}

// setReady turns a netexec pod's readiness probe to pass or fail, from a
// pod on node.
func setReady(t *testing.T, api kubernetes.Interface, node string, pod corev1.Pod, ready bool) {
	t.Helper()
	url := fmt.Sprintf("http://%s/ready?ready=%t", net.JoinHostPort(pod.Status.PodIP, "8080"), ready)
	if out, err := runOn(t, api, node, checkName("ready"), "get", url); err != nil {
		t.Fatalf("set %s's readiness: %v\n%s", pod.Name, err, out)
	}
}

// testRealHealthChecks: a LoadBalancer Service with externalTrafficPolicy
// Local gets its healthCheckNodePort from the API server; a load
// balancer probing it hears 200 from the node with a ready endpoint and
// 503 from the other, and 503 once that endpoint goes NotReady. Every
// node's proxy health port answers 200.
func testRealHealthChecks(t *testing.T, c *harness.RealCluster) {
	api := c.API()
	n1, n2 := c.Nodes[0], c.Nodes[1]
	var target corev1.Pod
	for _, p := range webPods(t, api) {
		if p.Spec.NodeName == n1.Name {
			target = p
		}
	}
	if target.Name == "" {
		t.Fatalf("no web pod on %s", n1.Name)
	}
	patch := []byte(`{"metadata":{"labels":{"lb":"yes"}}}`)
	if _, err := api.CoreV1().Pods("default").Patch(ctx(t), target.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := api.CoreV1().Services("default").Create(ctx(t), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "lb"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector: map[string]string{"app": "web", "lb": "yes"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.CoreV1().Services("default").Delete(ctx(t), "lb", metav1.DeleteOptions{}) }()
	if svc.Spec.HealthCheckNodePort == 0 {
		t.Fatalf("the API server gave lb no healthCheckNodePort")
	}
	probe := func(from, to *harness.RealNode, port int32, path string) (int, string) {
		code, body, err := from.NS.HTTPGet(ctx(t), fmt.Sprintf("http://%s%s", net.JoinHostPort(to.IP.String(), fmt.Sprint(port)), path))
		if err != nil {
			return 0, err.Error()
		}
		return code, body
	}
	hc := svc.Spec.HealthCheckNodePort
	waitUntil(t, time.Minute, fmt.Sprintf("%s's health check on %d to pass", n1.Name, hc), func() bool { c, _ := probe(n2, n1, hc, "/"); return c == 200 })
	if code, body := probe(n1, n2, hc, "/"); code != 503 || !strings.Contains(body, `"localEndpoints": 0`) {
		t.Errorf("%s, without an endpoint of lb: %d %s", n2.Name, code, body)
	}
	for _, n := range c.Nodes {
		if code, body := probe(n1, n, 10256, "/healthz"); code != 200 {
			t.Errorf("%s's proxy health port: %d %s", n.Name, code, body)
		}
	}
	setReady(t, api, n2.Name, target, false)
	waitUntil(t, time.Minute, n1.Name+"'s health check to fail with its endpoint NotReady", func() bool { c, _ := probe(n2, n1, hc, "/"); return c == 503 })
	setReady(t, api, n2.Name, target, true)
	waitUntil(t, time.Minute, n1.Name+"'s health check to pass again", func() bool { c, _ := probe(n2, n1, hc, "/"); return c == 200 })
}

// storeAddrs are the addresses a node's IPAM store holds.
func storeAddrs(n *harness.RealNode) map[string]bool {
	out := map[string]bool{}
	_ = filepath.WalkDir(n.HostPath("/var/lib/cni"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if a, perr := netip.ParseAddr(d.Name()); perr == nil {
				out[a.String()] = true
			}
		}
		return nil
	})
	return out
}

// podAddrs are the addresses of a node's pods on the pod network.
func podAddrs(t *testing.T, api kubernetes.Interface, node string) map[string]bool {
	pods, err := api.CoreV1().Pods("").List(ctx(t), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, p := range pods.Items {
		if !p.Spec.HostNetwork {
			if p.Status.PodIP == "" {
				out["(pending "+p.Name+")"] = true
			} else {
				out[p.Status.PodIP] = true
			}
		}
	}
	return out
}

// testRealRelease: pods deleted (the Deployment scaled down) give their
// addresses back: each node's IPAM store then holds exactly the
// addresses of its pods.
func testRealRelease(t *testing.T, c *harness.RealCluster) {
	api := c.API()
	scale, err := api.AppsV1().Deployments("default").GetScale(ctx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = int32(len(c.Nodes))
	if _, err := api.AppsV1().Deployments("default").UpdateScale(ctx(t), "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the Deployment to scale down", func() bool { return len(webPods(t, api)) == len(c.Nodes) })
	var store, pods map[string]bool
	same := func() bool {
		for _, n := range c.Nodes {
			if store, pods = storeAddrs(n), podAddrs(t, api, n.Name); !maps.Equal(store, pods) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !same() && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	if !same() {
		t.Errorf("an IPAM store holds %v, its node's pods have %v", slices.Sorted(maps.Keys(store)), slices.Sorted(maps.Keys(pods)))
	}
	total := 0
	for _, n := range c.Nodes {
		total += len(storeAddrs(n))
	}
	if total != len(c.Nodes) {
		t.Errorf("the IPAM stores hold %d addresses in all, the %d web pods' expected", total, len(c.Nodes))
	}
}

// testRealNodeGone: a node that goes away and is deleted from the API
// leaves no route on the other nodes.
func testRealNodeGone(t *testing.T, c *harness.RealCluster) {
	api := c.API()
	gone, stay := c.Nodes[len(c.Nodes)-1], c.Nodes[0]
	obj, err := api.CoreV1().Nodes().Get(ctx(t), gone.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cidr := obj.Spec.PodCIDR
	routes := func() string {
		out, err := stay.NS.Exec(ctx(t), "ip", "route", "show", cidr)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	if routes() == "" {
		t.Fatalf("%s has no route to %s's pods (%s) to begin with", stay.Name, gone.Name, cidr)
	}
	if err := gone.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := api.CoreV1().Nodes().Delete(ctx(t), gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, stay.Name+" to drop its route to "+gone.Name, func() bool { return routes() == "" })
}

// testRealTraffic: kubelet's pods get their addresses from skein, in
// their node's podCIDR; every pod reaches every other by address, and
// the Service by ClusterIP and by name from every node; the NodePort
// answers on every node's address from the other nodes.
func testRealTraffic(t *testing.T, c *harness.RealCluster) {
	api := c.API()
	webApp(t, api, int32(2*len(c.Nodes)))
	pods, err := api.CoreV1().Pods("default").List(ctx(t), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	perNode := map[string]int{}
	for _, p := range pods.Items {
		node, err := api.CoreV1().Nodes().Get(ctx(t), p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cidr, err := netip.ParsePrefix(node.Spec.PodCIDR)
		ip, perr := netip.ParseAddr(p.Status.PodIP)
		if err != nil || perr != nil || !cidr.Contains(ip) {
			t.Errorf("pod %s on %s has address %q, outside its node's podCIDR %q", p.Name, p.Spec.NodeName, p.Status.PodIP, node.Spec.PodCIDR)
		}
		perNode[p.Spec.NodeName]++
		urls = append(urls, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/hostname")
	}
	if len(perNode) != len(c.Nodes) {
		t.Errorf("web pods per node: %v, want some on each of %d nodes", perNode, len(c.Nodes))
	}
	svc, err := api.CoreV1().Services("default").Get(ctx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range c.Nodes {
		out, err := runOn(t, api, n.Name, fmt.Sprintf("pods-from-%d", i+1), append([]string{"get"}, urls...)...)
		if err != nil {
			t.Errorf("pod to pod, from %s: %v", n.Name, err)
		}
		for _, p := range pods.Items {
			if !strings.Contains(out, p.Name) {
				t.Errorf("from %s, pod %s did not answer:\n%s", n.Name, p.Name, out)
			}
		}
		svcURLs := []string{"http://" + svc.Spec.ClusterIP + "/hostname", "http://web/hostname", "http://web.default.svc.cluster.local/hostname"}
		if out, err := runOn(t, api, n.Name, fmt.Sprintf("service-from-%d", i+1), append([]string{"get"}, svcURLs...)...); err != nil {
			t.Errorf("the Service from %s: %v\n%s", n.Name, err, out)
		}
		other := c.Nodes[(i+1)%len(c.Nodes)]
		code, body, err := n.NS.HTTPGet(ctx(t), "http://"+net.JoinHostPort(other.IP.String(), "30080")+"/hostname")
		if err != nil || code != 200 || !strings.HasPrefix(body, "web-") {
			t.Errorf("NodePort of %s from %s: %d %q %v", other.Name, n.Name, code, body, err)
		}
	}
}

const netexecImage = harness.NetexecImage

// webApp deploys the test image, replicas pods spread over the nodes,
// ready when its /healthz answers, behind the ClusterIP and NodePort
// Service "web" (HTTP on port 80, NodePort 30080, to the pods' 8080).
func webApp(t *testing.T, api kubernetes.Interface, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
					}},
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name: "web", Image: netexecImage, ImagePullPolicy: corev1.PullNever,
						Args:  []string{"--port", "8080"},
						Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	if _, err := api.AppsV1().Deployments("default").Create(ctx(t), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}},
		},
	}
	if _, err := api.CoreV1().Services("default").Create(ctx(t), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the web Deployment to be ready", func() bool {
		d, err := api.AppsV1().Deployments("default").Get(ctx(t), "web", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == replicas && d.Status.UpdatedReplicas == replicas
	})
}

// runOn runs the test image once on a node with args (netexec get ...)
// and returns what it printed, or an error with it when it failed.
func runOn(t *testing.T, api kubernetes.Interface, node, name string, args ...string) (string, error) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName: node, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "check", Image: netexecImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/netexec"}, Args: args}},
		},
	}
	if _, err := api.CoreV1().Pods("default").Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.CoreV1().Pods("default").Delete(ctx(t), name, metav1.DeleteOptions{}) }()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		p, err := api.CoreV1().Pods("default").Get(ctx(t), name, metav1.GetOptions{})
		if err == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
			msg := ""
			if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Terminated != nil {
				msg = cs[0].State.Terminated.Message
			}
			if p.Status.Phase == corev1.PodFailed {
				return msg, fmt.Errorf("%s on %s failed: %s", name, node, msg)
			}
			return msg, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return "", fmt.Errorf("%s on %s did not finish in 90 s", name, node)
}

// nodeState is what a skeind restart must leave as it is on a node: the
// overlay device and the bridge (by interface index: not made again),
// and the conflist (by inode: not rewritten).
func nodeState(t *testing.T, n *harness.RealNode) string {
	t.Helper()
	out, err := n.NS.Exec(ctx(t), "cat", "/sys/class/net/skein.vxlan/ifindex", "/sys/class/net/cni0/ifindex")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(n.HostPath("/etc/cni/net.d/10-skein.conflist"), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("ifindex %s, conflist inode %d", strings.Join(strings.Fields(out), " "), st.Ino)
}

// podsState is what a skeind restart must leave as it is of the web
// pods: the same pods, addresses and containers.
func podsState(t *testing.T, api kubernetes.Interface) string {
	t.Helper()
	var out []string
	for _, p := range webPods(t, api) {
		restarts := int32(0)
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		out = append(out, fmt.Sprintf("%s %s %s restarts %d", p.Name, p.UID, p.Status.PodIP, restarts))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// skeinRolledOut tells whether every node runs a ready skein pod of the
// DaemonSet's current generation with image.
func skeinRolledOut(t *testing.T, api kubernetes.Interface, nodes int, image string) bool {
	ds, err := api.AppsV1().DaemonSets("kube-system").Get(ctx(t), "skein", metav1.GetOptions{})
	if err != nil || ds.Status.ObservedGeneration < ds.Generation {
		return false
	}
	st := ds.Status
	if int(st.UpdatedNumberScheduled) != nodes || int(st.NumberReady) != nodes || int(st.NumberAvailable) != nodes {
		return false
	}
	pods, err := api.CoreV1().Pods("kube-system").List(ctx(t), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=skein"})
	if err != nil || len(pods.Items) != nodes {
		return false
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Spec.Containers[0].Image != image {
			return false
		}
	}
	return true
}

// testRealUpgrade: a rolling update of the skein DaemonSet to a new
// tag while a pod on each node keeps connecting to the Service (by
// ClusterIP) and to a pod on another node (by address), five times a
// second each: no connection fails twice in a row. Then a deleted skeind
// pod comes back, and neither brings anything to be made again: the
// same devices, conflist and pods.
func testRealUpgrade(t *testing.T, c *harness.RealCluster) {
	api := c.API()
	svc, err := api.CoreV1().Services("default").Get(ctx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := webPods(t, api)
	before := map[string]string{}
	for _, n := range c.Nodes {
		before[n.Name] = nodeState(t, n)
	}
	podsBefore := podsState(t, api)
	var loops []string
	for i, n := range c.Nodes {
		var remote string
		for _, p := range pods {
			if p.Spec.NodeName != n.Name {
				remote = "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/hostname"
			}
		}
		name := fmt.Sprintf("loop-%d", i+1)
		loops = append(loops, name)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				NodeName: n.Name, RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "loop", Image: netexecImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"/netexec"},
					Args:    []string{"loop", "--for", "45s", "--every", "200ms", "http://" + svc.Spec.ClusterIP + "/hostname", remote}}},
			},
		}
		if _, err := api.CoreV1().Pods("default").Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// And by name: every request asks the node's skeind (the
		// kubelet's clusterDNS), which the update restarts. A query in
		// the restart's gap is held (dropped, not refused) and asked
		// again after the resolver's timeout (Go's, as glibc's: 5 s):
		// the request may take that long, and must not fail.
		name = fmt.Sprintf("names-%d", i+1)
		loops = append(loops, name)
		pod = pod.DeepCopy()
		pod.Name = name
		pod.Spec.Containers[0].Args = []string{"loop", "--for", "45s", "--every", "200ms", "--timeout", "7s",
			"http://web.default.svc.cluster.local/hostname"}
		if _, err := api.CoreV1().Pods("default").Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, name := range loops {
			_ = api.CoreV1().Pods("default").Delete(ctx(t), name, metav1.DeleteOptions{})
		}
	}()
	waitUntil(t, time.Minute, "the loop pods to run", func() bool {
		for _, name := range loops {
			p, err := api.CoreV1().Pods("default").Get(ctx(t), name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning {
				return false
			}
		}
		return true
	})
	ds, err := api.AppsV1().DaemonSets("kube-system").Get(ctx(t), "skein", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ds.Spec.Template.Spec.InitContainers {
		ds.Spec.Template.Spec.InitContainers[i].Image = harness.SkeinNextImage
	}
	for i := range ds.Spec.Template.Spec.Containers {
		ds.Spec.Template.Spec.Containers[i].Image = harness.SkeinNextImage
	}
	start := time.Now()
	if _, err := api.AppsV1().DaemonSets("kube-system").Update(ctx(t), ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Minute, "the DaemonSet to roll out "+harness.SkeinNextImage, func() bool {
		return skeinRolledOut(t, api, len(c.Nodes), harness.SkeinNextImage)
	})
	t.Logf("rolled out on %d nodes in %s", len(c.Nodes), time.Since(start).Round(100*time.Millisecond))
	for _, name := range loops {
		var p *corev1.Pod
		waitUntil(t, time.Minute, name+" to finish", func() bool {
			p, err = api.CoreV1().Pods("default").Get(ctx(t), name, metav1.GetOptions{})
			return err == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed)
		})
		msg := ""
		if cs := p.Status.ContainerStatuses; len(cs) == 1 && cs[0].State.Terminated != nil {
			msg = cs[0].State.Terminated.Message
		}
		t.Logf("%s on %s: %s", name, p.Spec.NodeName, msg)
		if p.Status.Phase != corev1.PodSucceeded || !strings.Contains(msg, " failed=0") || strings.Contains(msg, "ok=0 ") {
			t.Errorf("%s: connections failed across the upgrade: %s", name, msg)
		}
	}
	// A deleted skeind pod comes back.
	victims, err := api.CoreV1().Pods("kube-system").List(ctx(t), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=skein"})
	if err != nil || len(victims.Items) == 0 {
		t.Fatalf("no skein pods: %v", err)
	}
	if err := api.CoreV1().Pods("kube-system").Delete(ctx(t), victims.Items[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Minute, "a new skein pod on "+victims.Items[0].Spec.NodeName, func() bool {
		_, err := api.CoreV1().Pods("kube-system").Get(ctx(t), victims.Items[0].Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) && skeinRolledOut(t, api, len(c.Nodes), harness.SkeinNextImage)
	})
	for _, n := range c.Nodes {
		if after := nodeState(t, n); after != before[n.Name] {
			t.Errorf("%s: %s before skeind's restarts, %s after", n.Name, before[n.Name], after)
		}
	}
	if after := podsState(t, api); after != podsBefore {
		t.Errorf("the web pods before skeind's restarts:\n%s\nafter:\n%s", podsBefore, after)
	}
}
