package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	skeincluster "github.com/skein-net/skein/daemon/cluster"
)

// RealOptions shape a cluster of real nodes.
type RealOptions struct {
	Prefix string // unique to the test: namespaces, cgroups, Node names
	Nodes  int
	// K8sRun is the control plane's run directory (scripts/k8s/start.sh
	// with REAL_NODES=1): its CA signs the nodes' certificates.
	K8sRun string
	// Kubelet is the kubelet binary.
	Kubelet string
	// Images are image archives imported into every node's containerd;
	// PauseImage (one of them) is the sandboxes' image.
	Images     []string
	PauseImage string
	// APIPort is the API server's port on the host's loopback; every node
	// reaches it on the same address of its own loopback.
	APIPort int
	// ControlPlane, when set, is a namespace attached to the underlay at
	// ControlPlaneIP (no default route): a control plane running there
	// reaches the kubelets, and nothing it sends leaves the machine.
	ControlPlane *NetNS
}

// ControlPlaneIP is the underlay address of RealOptions.ControlPlane.
const ControlPlaneIP = underlayPrefix + "3"

// RealCluster is a cluster of real Kubernetes nodes: each a network
// namespace on a shared underlay, with mount and UTS namespaces of its
// own in which containerd and a kubelet run, registered with the test
// control plane. Nothing of a node touches the host: its /etc, /opt,
// /var/lib and /var/log are overlays on the host's with the upper
// layer in the node's directory, its /run a tmpfs, the kernel settings
// a kubelet rewrites are files of its own, and its processes and pods
// live in cgroups named after it.
type RealCluster struct {
	opts     RealOptions
	Underlay *NetNS
	Upstream *Upstream // the nodes' resolver of names outside the cluster
	Nodes    []*RealNode
	Dir      string
	api      kubernetes.Interface
}

// RealNode is one node of a RealCluster.
type RealNode struct {
	Name  string
	NS    *NetNS
	IP    netip.Addr
	Dir   string
	relay *Relay
	init  *exec.Cmd
	c     *RealCluster
}

// ClusterDNSIP is the kube-dns Service's ClusterIP the real nodes'
// kubelets give pods (and skein's ConfigMap, SKEIN_CLUSTER_DNS_IP).
const ClusterDNSIP = "10.96.0.10"

// cgroupHierarchies are the cgroup v1 hierarchies a kubelet with the
// cgroupfs driver uses; cgroup v2 (unified) is added when mounted.
var cgroupHierarchies = []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "systemd"}

// NewRealCluster starts the nodes and waits for each to register. Close
// tears it all down.
func NewRealCluster(ctx context.Context, o RealOptions) (*RealCluster, error) {
	if err := SweepOrphans(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", o.Prefix+"-real-")
	if err != nil {
		return nil, err
	}
	c := &RealCluster{opts: o, Dir: dir}
	if err := MarkOwner(dir, "cluster", o.Prefix, strconv.Itoa(o.Nodes)); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	if c.api, err = skeincluster.NewClient(filepath.Join(o.K8sRun, "admin.kubeconfig")); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	if err := c.build(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func (c *RealCluster) build(ctx context.Context) error {
	ul, up, err := newUnderlay(ctx, c.opts.Prefix)
	c.Underlay, c.Upstream = ul, up
	if err != nil {
		return err
	}
	if cp := c.opts.ControlPlane; cp != nil {
		if err := attach(ctx, ul, cp, "ul-cp", ControlPlaneIP); err != nil {
			return err
		}
	}
	ca, err := LoadCA(c.opts.K8sRun)
	if err != nil {
		return err
	}
	for i := 1; i <= c.opts.Nodes; i++ {
		n := &RealNode{
			Name: fmt.Sprintf("%s-node%d", c.opts.Prefix, i),
			IP:   netip.MustParseAddr(fmt.Sprintf("%s%d", underlayPrefix, 10+i)),
			Dir:  filepath.Join(c.Dir, fmt.Sprintf("node%d", i)),
			c:    c,
		}
		c.Nodes = append(c.Nodes, n)
		if n.NS, err = NewNetNS(fmt.Sprintf("%s-n%d", c.opts.Prefix, i)); err != nil {
			return err
		}
		if err := attach(ctx, ul, n.NS, fmt.Sprintf("ul-n%d", i), n.IP.String()); err != nil {
			return err
		}
		if _, err := n.NS.Exec(ctx, "sh", "-c", "ip link set lo up && ip route add default via "+OutsideIP); err != nil {
			return err
		}
		apiAddr := fmt.Sprintf("127.0.0.1:%d", c.opts.APIPort)
		if n.relay, err = NewRelayAt(n.NS, apiAddr, apiAddr); err != nil {
			return err
		}
		if err := n.prepare(ca); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
		if err := n.start(); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	for _, n := range c.Nodes {
		if err := n.waitRegistered(ctx, 2*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// API is a client of the control plane, as its admin.
func (c *RealCluster) API() kubernetes.Interface { return c.api }

// cgroup is the node's cgroup, in every hierarchy: the kubelet's
// cgroupRoot, and the parent of its daemons' own.
func (n *RealNode) cgroup() string { return "/" + n.Name }

// prepare writes the node's certificates, kubeconfig, containerd and
// kubelet configurations and start script, and makes its cgroups.
func (n *RealNode) prepare(ca *CA) error {
	for _, d := range []string{"pki", "sysctl", "containerd"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	pki := filepath.Join(n.Dir, "pki")
	if err := ca.Issue(filepath.Join(pki, "client.crt"), filepath.Join(pki, "client.key"),
		"system:node:"+n.Name, []string{"system:nodes"}, nil); err != nil {
		return err
	}
	if err := ca.Issue(filepath.Join(pki, "serving.crt"), filepath.Join(pki, "serving.key"),
		n.Name, nil, []net.IP{n.IP.AsSlice()}); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pki, "ca.crt"), ca.PEM, 0o644); err != nil {
		return err
	}
	// The values a kubelet wants: it reads them and changes nothing.
	for name, v := range map[string]string{"overcommit_memory": "1", "panic_on_oom": "0", "panic": "10", "panic_on_oops": "1"} {
		if err := os.WriteFile(filepath.Join(n.Dir, "sysctl", name), []byte(v+"\n"), 0o644); err != nil {
			return err
		}
	}
	// The node's resolver: skeind's upstream (its DaemonSet's dnsPolicy
	// is Default), the one outside the cluster.
	if err := os.WriteFile(filepath.Join(n.Dir, "resolv.conf"), []byte("nameserver "+UpstreamIP+"\n"), 0o644); err != nil {
		return err
	}
	data := map[string]any{"N": n, "API": n.relay.Addr, "Pause": n.c.opts.PauseImage, "Kubelet": n.c.opts.Kubelet,
		"Images": n.c.opts.Images, "Cgroup": n.cgroup(), "Hierarchies": n.hierarchies(), "DNS": ClusterDNSIP}
	for name, tmpl := range map[string]string{"kubeconfig": kubeconfigTmpl, "containerd.toml": containerdTmpl,
		"kubelet.yaml": kubeletTmpl, "node.sh": nodeScriptTmpl} {
		t := template.Must(template.New(name).Parse(tmpl))
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(n.Dir, name), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return n.makeCgroups()
}

// hierarchies are the mounted cgroup hierarchies among those a kubelet
// uses, as directories.
func (n *RealNode) hierarchies() []string {
	var out []string
	for _, h := range append(cgroupHierarchies, "unified") {
		d := filepath.Join("/sys/fs/cgroup", h)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// makeCgroups makes the node's cgroup and its daemons' in every
// hierarchy (cpuset's given every CPU and memory node of the root's).
func (n *RealNode) makeCgroups() error {
	for _, h := range n.hierarchies() {
		for _, d := range []string{n.cgroup(), n.cgroup() + "/daemons"} {
			p := filepath.Join(h, d)
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if filepath.Base(h) == "cpuset" {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(h, f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(p, f), v, 0o644); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// start runs the node's script in its network namespace, in new mount
// and UTS namespaces.
func (n *RealNode) start() error {
	log, err := os.Create(filepath.Join(n.Dir, "node.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command("nsenter", "--net=/run/netns/"+n.NS.Name, "--",
		"unshare", "--mount", "--uts", "--propagation", "slave", "--", "sh", filepath.Join(n.Dir, "node.sh"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	n.init = cmd
	go func() { _ = cmd.Wait() }()
	return nil
}

// waitRegistered waits for the node's kubelet to register its Node.
func (n *RealNode) waitRegistered(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := n.c.api.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s did not register in %s:\n%s", n.Name, timeout, n.Logs())
}

// WaitReady waits for the Node to be Ready.
func (n *RealNode) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if obj, err := n.c.api.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); err == nil {
			for _, cond := range obj.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not Ready in %s", n.Name, timeout)
}

// Logs are the ends of the node's logs: its script's, containerd's and
// the kubelet's.
func (n *RealNode) Logs() string {
	var b strings.Builder
	for _, f := range []string{"node.log", "containerd.log", "kubelet.log"} {
		data, _ := os.ReadFile(filepath.Join(n.Dir, f))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s of %s\n%s\n", f, n.Name, data)
	}
	return b.String()
}

// HostPath is where, on the host, the node keeps a path of its own view
// of the file system: what it wrote under /etc, /opt, /var/lib or
// /var/log is in that overlay's upper layer.
func (n *RealNode) HostPath(p string) string {
	for _, d := range []string{"/etc", "/opt", "/var/lib", "/var/log"} {
		if rest, ok := strings.CutPrefix(p, d+"/"); ok {
			return filepath.Join(n.Dir, "overlay"+strings.ReplaceAll(d, "/", "-"), "upper", rest)
		}
	}
	return p
}

// Stop ends the node as a machine that goes away would: its kubelet,
// containerd and pods, at once.
func (n *RealNode) Stop() error { return n.stop() }

// stop ends every process of the node, pods' included (all are in its
// cgroup), and removes its cgroups.
func (n *RealNode) stop() error {
	pids := filepath.Join("/sys/fs/cgroup/pids", n.cgroup())
	for range 100 {
		procs := cgroupProcs(pids)
		if len(procs) == 0 {
			break
		}
		for _, pid := range procs {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var errs []error
	for _, h := range n.hierarchies() {
		errs = append(errs, removeCgroupTree(filepath.Join(h, n.cgroup())))
	}
	return errors.Join(errs...)
}

// cgroupProcs are the processes of a cgroup and its descendants.
func cgroupProcs(dir string) []int {
	var out []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(data)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				out = append(out, pid)
			}
		}
		return nil
	})
	return out
}

// removeCgroupTree removes a cgroup and its descendants, deepest first.
func removeCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

// Close stops every node, deletes their Nodes, namespaces, cgroups and
// the directory.
func (c *RealCluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.stop())
		if n.relay != nil {
			errs = append(errs, n.relay.Close())
		}
		if c.api != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.api.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
			cancel()
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		if n.NS != nil {
			errs = append(errs, n.NS.Delete())
		}
	}
	errs = append(errs, closeUnderlay(c.Underlay, c.Upstream))
	errs = append(errs, os.RemoveAll(c.Dir))
	return errors.Join(errs...)
}

const kubeconfigTmpl = `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://{{.API}}", certificate-authority: {{.N.Dir}}/pki/ca.crt}
users:
- name: {{.N.Name}}
  user: {client-certificate: {{.N.Dir}}/pki/client.crt, client-key: {{.N.Dir}}/pki/client.key}
contexts:
- name: test
  context: {cluster: test, user: {{.N.Name}}}
current-context: test
`

const containerdTmpl = `version = 2
root = "{{.N.Dir}}/containerd/root"
state = "{{.N.Dir}}/containerd/state"
[grpc]
  address = "{{.N.Dir}}/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{{.N.Dir}}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.Pause}}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{{.N.Dir}}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`

const kubeletTmpl = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {{.Cgroup}}
containerRuntimeEndpoint: unix://{{.N.Dir}}/containerd/containerd.sock
imageServiceEndpoint: unix://{{.N.Dir}}/containerd/containerd.sock
makeIPTablesUtilChains: false
oomScoreAdj: 0
protectKernelDefaults: false
failSwapOn: false
resolvConf: {{.N.Dir}}/resolv.conf
clusterDomain: cluster.local
clusterDNS: [{{.DNS}}]
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
address: {{.N.IP}}
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
tlsCertFile: {{.N.Dir}}/pki/serving.crt
tlsPrivateKeyFile: {{.N.Dir}}/pki/serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: {{.N.Dir}}/pki/ca.crt}
authorization: {mode: Webhook}
`

// nodeScriptTmpl runs as the first process of the node's mount and UTS
// namespaces: it joins the node's cgroup, makes the node's own view of
// the file system, starts containerd, imports the images, then runs the
// kubelet.
const nodeScriptTmpl = `set -eu
for h in {{range .Hierarchies}}{{.}} {{end}}; do echo $$ > "$h{{.Cgroup}}/daemons/cgroup.procs"; done
mount -t tmpfs tmpfs /run
for d in /etc /opt /var/lib /var/log; do
  o={{.N.Dir}}/overlay$(echo $d | tr / -)
  mkdir -p $o/upper $o/work
  mount -t overlay overlay -o lowerdir=$d,upperdir=$o/upper,workdir=$o/work $d
done
for s in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops; do
  mount --bind {{.N.Dir}}/sysctl/$(basename $s) /proc/sys/$s
done
hostname {{.N.Name}}
mkdir -p /etc/cni/net.d /opt/cni/bin /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni
touch /run/xtables.lock
containerd --config {{.N.Dir}}/containerd.toml > {{.N.Dir}}/containerd.log 2>&1 &
sock={{.N.Dir}}/containerd/containerd.sock
for i in $(seq 100); do [ -S $sock ] && break; sleep 0.1; done
for img in {{range .Images}}{{.}} {{end}}; do
  ctr --address $sock -n k8s.io images import --no-unpack=false $img
done
exec {{.Kubelet}} --config={{.N.Dir}}/kubelet.yaml --kubeconfig={{.N.Dir}}/kubeconfig \
  --hostname-override={{.N.Name}} --node-ip={{.N.IP}} --v=2 > {{.N.Dir}}/kubelet.log 2>&1
`
