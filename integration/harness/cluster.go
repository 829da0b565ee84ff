package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	skeincluster "github.com/skein-net/skein/daemon/cluster"
)

// Underlay addressing of the virtual cluster: node i is 172.30.0.(10+i)
// on a bridge in a namespace of its own; its pod CIDRs are 10.244.i.0/24
// and, dual-stack, fd00:10:244:i::/64.
const underlayPrefix = "172.30.0."

// ClusterOptions shape a virtual cluster.
type ClusterOptions struct {
	Prefix    string // unique prefix of every namespace it makes
	Nodes     int
	DualStack bool
	BinDir    string // holds skein, skeind and portmap
	// InFile is how many nodes the cluster file lists at the start
	// (default all); the rest exist but join when the test writes them.
	InFile int
	// Kubeconfig, when set, makes the cluster's source a real API
	// server: Nodes are created there and skeind runs with --kubeconfig
	// (through a relay into each node namespace).
	Kubeconfig string
	// Proxy is skeind's --proxy (default: skeind's own default).
	Proxy string
	// With an API server: Impersonate runs skeind as this user (e.g. the
	// DaemonSet's ServiceAccount, to prove its RBAC is enough), and
	// PodCIDRsFromAPI registers the Nodes without podCIDRs and waits for
	// kube-controller-manager to assign them.
	Impersonate     string
	PodCIDRsFromAPI bool
	// Env is added to skeind's environment (SKEIN_* settings, as the
	// DaemonSet's ConfigMap gives them).
	Env []string
	// Caps, when set, are the only capabilities skeind (and what it
	// runs) may hold, as in a container that drops all others.
	Caps []string
}

// Cluster is N nodes, each a namespace on a shared underlay running a
// real skeind from one cluster file, with pods made by the real plugin.
type Cluster struct {
	opts     ClusterOptions
	Underlay *NetNS
	Upstream *Upstream // the resolver of names outside the cluster
	Nodes    []*ClusterNode
	Dir      string
	File     string
	api      kubernetes.Interface
	created  map[string]bool
}

// ClusterNode is one node of the virtual cluster.
type ClusterNode struct {
	Name     string
	NS       *NetNS
	IP       netip.Addr
	PodCIDRs []netip.Prefix
	Conflist string
	// Args are extra skeind arguments for the next Start (they override
	// the cluster's, flags being last-wins).
	Args []string
	// Labels are the Node object's labels in the cluster file.
	Labels  map[string]string
	relay   *Relay
	cni     *Node
	daemon  *exec.Cmd
	logFile *os.File
	c       *Cluster
}

// NewCluster builds the namespaces and the underlay and starts skeind on
// every node. Close tears it all down.
func NewCluster(o ClusterOptions) (*Cluster, error) {
	if o.InFile == 0 {
		o.InFile = o.Nodes
	}
	dir, err := os.MkdirTemp("", o.Prefix+"-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: o, Dir: dir, File: filepath.Join(dir, "cluster.yaml")}
	if err := c.build(); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func (c *Cluster) build() error {
	ctx := context.Background()
	ul, up, err := newUnderlay(ctx, c.opts.Prefix)
	c.Underlay, c.Upstream = ul, up
	if err != nil {
		return err
	}
	if c.opts.Kubeconfig != "" {
		if c.api, err = skeincluster.NewClient(c.opts.Kubeconfig); err != nil {
			return err
		}
		c.created = map[string]bool{}
	}
	for i := 1; i <= c.opts.Nodes; i++ {
		name := fmt.Sprintf("node%d", i)
		if c.api != nil {
			name = fmt.Sprintf("%s-node%d", c.opts.Prefix, i) // the API server is shared
		}
		n := &ClusterNode{
			Name:     name,
			IP:       netip.MustParseAddr(fmt.Sprintf("%s%d", underlayPrefix, 10+i)),
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))},
			Conflist: filepath.Join(c.Dir, fmt.Sprintf("node%d", i), "net.d", "10-skein.conflist"),
			c:        c,
		}
		if c.opts.DualStack {
			n.PodCIDRs = append(n.PodCIDRs, netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%d::/64", i)))
		}
		if n.NS, err = NewNetNS(fmt.Sprintf("%s-n%d", c.opts.Prefix, i)); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, n)
		if err := attach(ctx, ul, n.NS, fmt.Sprintf("ul-n%d", i), n.IP.String()); err != nil {
			return err
		}
	}
	if err := c.WriteFile(c.Nodes[:c.opts.InFile], ""); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes[:c.opts.InFile] {
		if err := n.WaitReady(30 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// NodeYAML is the Node object of n, as the cluster file holds it.
func (n *ClusterNode) NodeYAML() string {
	var cidrs []string
	for _, p := range n.PodCIDRs {
		cidrs = append(cidrs, fmt.Sprintf("%q", p))
	}
	var labels []string
	for k, v := range n.Labels {
		labels = append(labels, fmt.Sprintf("%q: %q", k, v))
	}
	slices.Sort(labels)
	return fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: %s, creationTimestamp: "2026-01-01T00:00:00Z", labels: {%s}}
spec: {podCIDRs: [%s]}
status: {addresses: [{type: InternalIP, address: %s}]}
`, n.Name, strings.Join(labels, ", "), strings.Join(cidrs, ", "), n.IP)
}

// WriteFile replaces the cluster file (atomically, by rename) with the
// given nodes plus any extra YAML documents; with an API server, it makes
// the Node objects there match the given nodes instead.
func (c *Cluster) WriteFile(nodes []*ClusterNode, extra string) error {
	if c.api != nil {
		if extra != "" {
			return fmt.Errorf("extra documents need the file source")
		}
		return c.setNodes(nodes)
	}
	var docs []string
	for _, n := range nodes {
		docs = append(docs, n.NodeYAML())
	}
	if extra != "" {
		docs = append(docs, extra)
	}
	tmp := c.File + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.File)
}

// Start runs skeind in the node's namespace.
func (n *ClusterNode) Start() error {
	if err := os.MkdirAll(filepath.Dir(n.Conflist), 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(n.c.Dir, n.Name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	source := []string{"--cluster-file", n.c.File}
	if n.c.api != nil {
		kc, err := n.kubeconfig()
		if err != nil {
			return err
		}
		source = []string{"--kubeconfig", kc}
	}
	cmd := exec.Command("ip", "netns", "exec", n.NS.Name)
	// A process group of its own: a terminal's Ctrl-C reaches the test
	// or the demo, which stops skeind itself, not skeind first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if caps := n.c.opts.Caps; len(caps) > 0 {
		set := "-all,+" + strings.Join(caps, ",+")
		cmd.Args = append(cmd.Args, "setpriv", "--bounding-set", set, "--inh-caps", "-all")
	}
	cmd.Args = append(cmd.Args, filepath.Join(n.c.opts.BinDir, "skeind"), "--node-name", n.Name)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SKEIN_TEST_") { // the tests' own settings, not skeind's
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, n.c.opts.Env...)
	cmd.Args = append(cmd.Args, source...)
	cmd.Args = append(cmd.Args, "--conflist", n.Conflist,
		"--cni-data-dir", filepath.Join(n.c.Dir, n.Name, "cni"), "--min-sync-interval", "100ms",
		"--cni-version", "1.1.0", "--dns-upstream", UpstreamIP)
	if n.c.opts.Proxy != "" {
		cmd.Args = append(cmd.Args, "--proxy", n.c.opts.Proxy)
	}
	cmd.Args = append(cmd.Args, n.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start skeind on %s: %w", n.Name, err)
	}
	n.daemon, n.logFile = cmd, f
	// What a KEEP=1 demo leaves running is ended by PID from this file.
	return os.WriteFile(filepath.Join(n.c.Dir, n.Name+".pid"), []byte(fmt.Sprintln(cmd.Process.Pid)), 0o644)
}

// Kill ends skeind with sig and waits for it.
func (n *ClusterNode) Kill(sig syscall.Signal) {
	if n.daemon == nil {
		return
	}
	_ = n.daemon.Process.Signal(sig)
	_ = n.daemon.Wait()
	n.logFile.Close()
	n.daemon = nil
}

// Log returns what skeind logged.
func (n *ClusterNode) Log() string {
	data, _ := os.ReadFile(filepath.Join(n.c.Dir, n.Name+".log"))
	return string(data)
}

// WaitReady waits for /readyz and the conflist, then makes the node's CNI
// client from that conflist.
func (n *ClusterNode) WaitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		code, body, err := n.NS.HTTPGet(ctx, "http://127.0.0.1:9897/readyz")
		if err == nil && code == 200 {
			break
		}
		last = fmt.Sprint(code, " ", strings.TrimSpace(body), " ", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (%s); log:\n%s", n.Name, timeout, last, n.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n.cni != nil {
		return nil
	}
	list, err := os.ReadFile(n.Conflist)
	if err != nil {
		return fmt.Errorf("%s ready but no conflist: %w", n.Name, err)
	}
	n.cni, err = NewNodeIn(n.NS, n.c.opts.BinDir, list)
	return err
}

// AddPod makes a pod on the node through its CNI client.
func (n *ClusterNode) AddPod(ctx context.Context, nsName, id string) (*Pod, error) {
	if n.cni == nil {
		return nil, fmt.Errorf("%s has no conflist yet", n.Name)
	}
	return n.cni.AddPod(ctx, nsName, id)
}

// Close stops every skeind and deletes every namespace (pods' included,
// when their names start with the prefix) and the directory.
func (c *Cluster) Close() error {
	var errs []error
	if c.api != nil {
		errs = append(errs, c.setNodes(nil))
	}
	for _, n := range c.Nodes {
		n.Kill(syscall.SIGTERM)
		if n.relay != nil {
			errs = append(errs, n.relay.Close())
		}
		if n.cni != nil {
			os.RemoveAll(n.cni.cacheDir)
		}
		if n.NS != nil {
			errs = append(errs, n.NS.Delete())
		}
	}
	errs = append(errs, closeUnderlay(c.Underlay, c.Upstream))
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(name, c.opts.Prefix+"-") {
			errs = append(errs, (&NetNS{Name: name}).Delete())
		}
	}
	errs = append(errs, os.RemoveAll(c.Dir))
	return errors.Join(errs...)
}

// setNodes makes the API server hold exactly these of the cluster's
// Nodes: it creates the missing ones (spec, then status, which a create
// ignores) and deletes the others it created.
func (c *Cluster) setNodes(nodes []*ClusterNode) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[string]bool{}
	var errs []error
	for _, n := range nodes {
		want[n.Name] = true
		if c.created[n.Name] {
			continue
		}
		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}
		if !c.opts.PodCIDRsFromAPI {
			for _, p := range n.PodCIDRs {
				obj.Spec.PodCIDRs = append(obj.Spec.PodCIDRs, p.String())
			}
			obj.Spec.PodCIDR = obj.Spec.PodCIDRs[0]
		}
		if _, err := c.api.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("create Node %s: %w", n.Name, err))
			continue
		}
		c.created[n.Name] = true
		// A patch, not an update: kube-controller-manager may already
		// have changed the Node (its podCIDRs).
		status := fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q}]}}`, n.IP)
		if _, err := c.api.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status"); err != nil {
			errs = append(errs, fmt.Errorf("set the status of Node %s: %w", n.Name, err))
		}
		if c.opts.PodCIDRsFromAPI {
			errs = append(errs, c.assignedPodCIDRs(ctx, n))
		}
	}
	for name := range c.created {
		if want[name] {
			continue
		}
		err := c.api.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete Node %s: %w", name, err))
			continue
		}
		delete(c.created, name)
	}
	return errors.Join(errs...)
}

// assignedPodCIDRs waits for kube-controller-manager to give n's Node its
// podCIDRs and records them.
func (c *Cluster) assignedPodCIDRs(ctx context.Context, n *ClusterNode) error {
	for {
		obj, err := c.api.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err == nil && len(obj.Spec.PodCIDRs) > 0 {
			n.PodCIDRs = nil
			for _, s := range obj.Spec.PodCIDRs {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("Node %s: podCIDR %q: %w", n.Name, s, err)
				}
				n.PodCIDRs = append(n.PodCIDRs, p)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Node %s got no podCIDR from kube-controller-manager (is it running with --allocate-node-cidrs?): %w", n.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// API is the cluster's API client (nil with the file source).
func (c *Cluster) API() kubernetes.Interface { return c.api }

// kubeconfig writes the node's kubeconfig: the test's, pointed at a relay
// into the node's namespace.
func (n *ClusterNode) kubeconfig() (string, error) {
	path := filepath.Join(n.c.Dir, n.Name+".kubeconfig")
	var err error
	n.relay, err = RelayedKubeconfig(n.NS, n.relay, n.c.opts.Kubeconfig, path, n.c.opts.Impersonate)
	return path, err
}
