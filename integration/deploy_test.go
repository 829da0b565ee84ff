package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/skein-net/skein/integration/harness"
)

// skeinSA is the DaemonSet's ServiceAccount, as the API server names it.
const skeinSA = "system:serviceaccount:kube-system:skein"

// requireKubectl returns the kubectl built with the API server.
func requireKubectl(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("SKEIN_TEST_KUBECTL"); k != "" {
		return k
	}
	if k, err := exec.LookPath("kubectl"); err == nil {
		return k
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs kubectl (scripts/k8s.sh builds it; make test sets SKEIN_TEST_KUBECTL); under CI=true it fails instead of skipping")
	}
	t.Skip("needs kubectl: run through make test, or set SKEIN_TEST_KUBECTL")
	return ""
}

func kubectl(t *testing.T, bin, kc string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx(t), bin, append([]string{"--kubeconfig", kc}, args...)...)
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// manifestSettings returns the SKEIN_* settings of the shipped ConfigMap.
func manifestSettings(t *testing.T) []string {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "conf", "deploy", "skein.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var cm corev1.ConfigMap
		if err := dec.Decode(&cm); err != nil {
			t.Fatalf("no ConfigMap in skein.yaml: %v", err)
		}
		if cm.Kind != "ConfigMap" {
			continue
		}
		var env []string
		for k, v := range cm.Data {
			if strings.HasPrefix(k, "SKEIN_") {
				env = append(env, k+"="+v)
			}
		}
		return env
	}
}

// TestManifests applies conf/deploy as a user would (kubectl apply -k),
// first as a server-side dry run, and checks that the DaemonSet's
// ServiceAccount may read what skeind reads and nothing else.
func TestManifests(t *testing.T) {
	kc := requireAPIServer(t)
	bin := requireKubectl(t)
	applyManifests(t, bin, kc)
	sa := impersonating(t, kc, skeinSA)
	c := ctx(t)
	allowed := map[string]func() error{
		"list nodes":          func() error { _, err := sa.CoreV1().Nodes().List(c, metav1.ListOptions{}); return err },
		"list services":       func() error { _, err := sa.CoreV1().Services("").List(c, metav1.ListOptions{}); return err },
		"list endpointslices": func() error { _, err := sa.DiscoveryV1().EndpointSlices("").List(c, metav1.ListOptions{}); return err },
		"list servicecidrs":   func() error { _, err := sa.NetworkingV1().ServiceCIDRs().List(c, metav1.ListOptions{}); return err },
		"watch nodes": func() error {
			w, err := sa.CoreV1().Nodes().Watch(c, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
	}
	forbidden := map[string]func() error{
		"read secrets": func() error { _, err := sa.CoreV1().Secrets("kube-system").List(c, metav1.ListOptions{}); return err },
		"read configmaps": func() error {
			_, err := sa.CoreV1().ConfigMaps("kube-system").List(c, metav1.ListOptions{})
			return err
		},
		"list pods": func() error { _, err := sa.CoreV1().Pods("").List(c, metav1.ListOptions{}); return err },
		"create a node": func() error {
			_, err := sa.CoreV1().Nodes().Create(c, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: uniq("n")}}, metav1.CreateOptions{})
			return err
		},
		"create a service": func() error {
			_, err := sa.CoreV1().Services("default").Create(c, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: uniq("s")}}, metav1.CreateOptions{})
			return err
		},
		"delete endpointslices": func() error {
			return sa.DiscoveryV1().EndpointSlices("default").DeleteCollection(c, metav1.DeleteOptions{}, metav1.ListOptions{})
		},
	}
	for what, do := range allowed {
		if err := do(); err != nil {
			t.Errorf("as %s, %s: %v", skeinSA, what, err)
		}
	}
	for what, do := range forbidden {
		if err := do(); !apierrors.IsForbidden(err) {
			t.Errorf("as %s, %s: err = %v, want Forbidden", skeinSA, what, err)
		}
	}
}

// applyManifests dry-runs then applies conf/deploy, and deletes it when
// the test ends.
func applyManifests(t *testing.T, bin, kc string) {
	t.Helper()
	out, err := kubectl(t, bin, kc, "apply", "-k", "conf/deploy", "--dry-run=server")
	if err != nil {
		t.Fatalf("kubectl apply -k conf/deploy --dry-run=server: %v\n%s", err, out)
	}
	for _, obj := range []string{"serviceaccount/skein", "clusterrole.rbac.authorization.k8s.io/skein",
		"clusterrolebinding.rbac.authorization.k8s.io/skein", "configmap/skein-config", "daemonset.apps/skein"} {
		if !strings.Contains(out, obj+" ") || !strings.Contains(out, "(server dry run)") {
			t.Errorf("the dry run does not show %s:\n%s", obj, out)
		}
	}
	if out, err := kubectl(t, bin, kc, "get", "-n", "kube-system", "daemonset/skein"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("the dry run left a DaemonSet behind (or the get failed otherwise): %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := kubectl(t, bin, kc, "delete", "-k", "conf/deploy", "--ignore-not-found", "--wait=false"); err != nil {
			t.Errorf("kubectl delete -k conf/deploy: %v\n%s", err, out)
		}
	})
	if out, err := kubectl(t, bin, kc, "apply", "-k", "conf/deploy"); err != nil {
		t.Fatalf("kubectl apply -k conf/deploy: %v\n%s", err, out)
	}
}

// impersonating returns a client acting as user.
func impersonating(t *testing.T, kc, user string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate.UserName = user
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOnKubernetes runs the virtual cluster as a Kubernetes cluster: the
// shipped manifests applied, every skeind on the API server as the
// DaemonSet's ServiceAccount, with the ConfigMap's settings and only the
// capabilities the DaemonSet grants; podCIDRs from kube-controller-
// manager, pods made by the real plugin and reported by the harness as a
// kubelet would, EndpointSlices from kube-controller-manager. Then it
// stops the API server for 30 s.
func TestOnKubernetes(t *testing.T) {
	kc := requireAPIServer(t)
	bin := requireKubectl(t)
	run := os.Getenv("SKEIN_TEST_K8S_RUN")
	if run == "" {
		t.Fatal("SKEIN_TEST_K8S_RUN (the API server's run directory, set by make test) is needed to stop and restart it")
	}
	applyManifests(t, bin, kc)
	c := newCluster(t, harness.ClusterOptions{
		Nodes: 3, Kubeconfig: kc, PodCIDRsFromAPI: true,
		Impersonate: skeinSA, Env: manifestSettings(t), Caps: []string{"net_admin", "net_raw", "net_bind_service"},
	})
	api := c.API()
	ns := uniq("ns")
	if _, err := api.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = api.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	waitFor(t, "the namespace's default ServiceAccount", func() bool {
		_, err := api.CoreV1().ServiceAccounts(ns).Get(ctx(t), "default", metav1.GetOptions{})
		return err == nil
	})

	var pods []clusterPod
	for _, n := range c.Nodes {
		for j := range 2 {
			name := fmt.Sprintf("%s-p%d", n.Name, j)
			p, err := c.RunPod(ctx(t), n, ns, name, map[string]string{"app": "echo"})
			if err != nil {
				t.Fatal(err)
			}
			cp := clusterPod{p, n.Name, name}
			echoServer(t, cp)
			pods = append(pods, cp)
		}
	}
	if fails := pingMatrix(ctx(t), pods); len(fails) > 0 {
		t.Fatalf("pairs failed:\n%s", strings.Join(fails, "\n"))
	}

	svc, err := api.CoreV1().Services(ns).Create(ctx(t), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.Spec.ClusterIP + ":80"
	waitFor(t, "kube-controller-manager's EndpointSlice with every pod ready", func() bool {
		return readyEndpoints(t, api, ns, "echo") == len(pods)
	})
	t.Run("ClusterIP from every pod", func(t *testing.T) {
		seen := map[string]bool{}
		for _, p := range pods {
			waitFor(t, p.name+" to reach "+vip, func() bool {
				name, from, err := harness.Ask(ctx(t), p.NS, vip)
				if err != nil {
					return false
				}
				if from != p.IPs[0] && name != p.name { // hairpin is masqueraded
					t.Errorf("%s reached %s through %s seen as %s: NATed", p.name, name, vip, from)
				}
				seen[name] = true
				return true
			})
		}
		for range 60 {
			if name, _, err := harness.Ask(ctx(t), pods[0].NS, vip); err == nil {
				seen[name] = true
			}
		}
		if len(seen) < len(pods)/2 {
			t.Errorf("only %d of %d endpoints answered: %v", len(seen), len(pods), seen)
		}
	})
	t.Run("a pod going NotReady gets no new connections", func(t *testing.T) {
		gone := pods[3]
		if err := c.SetPodReady(ctx(t), ns, gone.name, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the endpoint to turn not ready", func() bool { return readyEndpoints(t, api, ns, "echo") == len(pods)-1 })
		waitFor(t, "60 connections in a row to miss "+gone.name, func() bool {
			for range 60 {
				name, _, err := harness.Ask(ctx(t), pods[0].NS, vip)
				if err != nil || name == gone.name {
					return false
				}
			}
			return true
		})
	})

	t.Run("names follow the API", func(t *testing.T) {
		// The headless Service's names: every ready pod, so not the one
		// the subtest before made NotReady; asked of every node's skeind.
		headless, err := api.CoreV1().Services(ns).Create(ctx(t), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo-pods"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "echo"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ready []string
		for _, p := range pods {
			if p.name != pods[3].name {
				ready = append(ready, p.IPs[0])
			}
		}
		slices.Sort(ready)
		zone := ns + ".svc.cluster.local."
		want := map[string][]string{"echo." + zone: {svc.Spec.ClusterIP}, "echo-pods." + zone: ready}
		for _, p := range pods {
			for name, addrs := range want {
				waitFor(t, p.name+" to resolve "+name, func() bool {
					m, err := harness.Lookup(ctx(t), p.NS, "169.254.20.10", name, miekg.TypeA)
					if err != nil {
						return false
					}
					var got []string
					for _, rr := range m.Answer {
						got = append(got, rr.(*miekg.A).A.String())
					}
					slices.Sort(got)
					return slices.Equal(got, addrs)
				})
			}
			m, err := harness.Lookup(ctx(t), p.NS, "169.254.20.10", "_http._tcp.echo-pods."+zone, miekg.TypeSRV)
			if err != nil || len(m.Answer) != len(ready) {
				t.Errorf("%s: SRV of echo-pods: %v (%v), want one per ready pod", p.name, m, err)
			}
		}
		if err := api.CoreV1().Services(ns).Delete(ctx(t), headless.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			waitFor(t, p.name+" to get NXDOMAIN for the deleted Service", func() bool {
				m, err := harness.Lookup(ctx(t), p.NS, "169.254.20.10", "echo-pods."+zone, miekg.TypeA)
				return err == nil && m.Rcode == miekg.RcodeNameError
			})
		}
	})

	t.Run("the API server stopped for 30 s", func(t *testing.T) {
		api := &apiServer{run: run}
		t.Cleanup(func() {
			if err := api.ensureRunning(); err != nil {
				t.Errorf("restart the API server: %v", err)
			}
		})
		stopped := time.Now()
		if err := api.stop(); err != nil {
			t.Fatal(err)
		}
		n2, n3 := pods[2], pods[4]
		for time.Since(stopped) < 30*time.Second {
			if err := pods[0].NS.Ping(ctx(t), n3.IPs[0], 1); err != nil {
				t.Errorf("during the outage, %s -> %s: %v", pods[0].name, n3.name, err)
			}
			if name, _, err := harness.Ask(ctx(t), n2.NS, vip); err != nil {
				t.Errorf("during the outage, %s -> %s: %v", n2.name, vip, err)
			} else if name == pods[3].name {
				t.Errorf("during the outage, the NotReady pod was picked")
			}
			time.Sleep(time.Second)
		}
		back, err := api.start()
		if err != nil {
			t.Fatal(err)
		}
		// Changes skeind sees first hand (no controller in between): a
		// new Service with its own slice, and the third Node deleted.
		direct := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "direct"}, Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "direct-1", Labels: map[string]string{discoveryv1.LabelServiceName: "direct"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{pods[1].IPs[0]}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}
		made, err := c.API().CoreV1().Services(ns).Create(ctx(t), direct, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		newVIP := made.Spec.ClusterIP
		if _, err := c.API().DiscoveryV1().EndpointSlices(ns).Create(ctx(t), slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteFile(c.Nodes[:2], ""); err != nil {
			t.Fatal(err)
		}
		gone := c.Nodes[2].PodCIDRs[0].String()
		waitFor(t, "the new Service and the Node's removal to be programmed", func() bool {
			name, _, err := harness.Ask(ctx(t), pods[0].NS, newVIP+":80")
			return err == nil && name == pods[1].name &&
				!strings.Contains(overlayState(t, c.Nodes[0]), gone) && !strings.Contains(overlayState(t, c.Nodes[1]), gone)
		})
		if took := time.Since(back); took > 2*time.Second {
			t.Errorf("changes made after the API server returned took %s to be programmed, want within 2 s", took.Round(time.Millisecond))
		} else {
			t.Logf("changes programmed %s after the API server returned", took.Round(time.Millisecond))
		}
	})
}

// readyEndpoints counts the ready endpoints of a Service's slices.
func readyEndpoints(t *testing.T, api kubernetes.Interface, ns, svc string) int {
	t.Helper()
	list, err := api.DiscoveryV1().EndpointSlices(ns).List(ctx(t), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return -1
	}
	n := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

// apiServer stops and restarts the kube-apiserver that scripts/k8s.sh
// started for the tests, by the PID it recorded, with the same command
// line; the new PID goes back to the record, so scripts/k8s.sh down
// still stops it.
type apiServer struct {
	run  string
	argv []string
}

func (a *apiServer) pidFile() string { return filepath.Join(a.run, "kube-apiserver.pid") }

func (a *apiServer) pid() (int, error) {
	data, err := os.ReadFile(a.pidFile())
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscan(string(data), &pid); err != nil {
		return 0, fmt.Errorf("%s: %w", a.pidFile(), err)
	}
	return pid, nil
}

// stop ends the API server and waits for it to be gone.
func (a *apiServer) stop() error {
	pid, err := a.pid()
	if err != nil {
		return err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("kube-apiserver (pid %d) is not running: %w", pid, err)
	}
	a.argv = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if !strings.Contains(a.argv[0], "kube-apiserver") || !strings.Contains(string(cmdline), a.run+"/") {
		return fmt.Errorf("pid %d is not the kube-apiserver of %s", pid, a.run)
	}
	// SIGTERM closes its port at once; its drain can hang, so SIGKILL
	// follows after 5 s, as stop.sh does after 10.
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := syscall.Kill(pid, sig); err != nil {
			return err
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if !alive(pid) {
				return nil
			}
		}
	}
	return fmt.Errorf("kube-apiserver (pid %d) still running after SIGKILL", pid)
}

// alive tells whether pid runs (a zombie does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// start runs the API server again and returns when it is ready.
func (a *apiServer) start() (time.Time, error) {
	if a.argv == nil {
		return time.Time{}, errors.New("start before stop")
	}
	logf, err := os.OpenFile(filepath.Join(a.run, "log", "kube-apiserver.log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return time.Time{}, err
	}
	defer logf.Close()
	cmd := exec.Command(a.argv[0], a.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return time.Time{}, err
	}
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(a.pidFile(), []byte(fmt.Sprintln(cmd.Process.Pid)), 0o644); err != nil {
		return time.Time{}, err
	}
	kc := filepath.Join(a.run, "admin.kubeconfig")
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return time.Time{}, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return time.Time{}, err
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		if err == nil && string(body) == "ok" {
			return time.Now(), nil
		}
	}
	return time.Time{}, errors.New("kube-apiserver not ready 60 s after its restart")
}

// ensureRunning restarts the API server if a failed test left it stopped.
func (a *apiServer) ensureRunning() error {
	if pid, err := a.pid(); err == nil && alive(pid) {
		return nil
	}
	if a.argv == nil {
		return nil
	}
	_, err := a.start()
	return err
}
