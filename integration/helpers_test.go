package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/integration/harness"
)

var (
	pluginDir string
	// runID makes names unique to this test binary; seq to each use.
	runID = fmt.Sprintf("%04x", os.Getpid()&0xffff)
	seq   atomic.Int32
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "skein-plugins-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := harness.BuildPlugins(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		pluginDir = dir
	}
	code := m.Run()
	if pluginDir != "" {
		os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

// requireRoot skips a test that needs root, or fails it under CI.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces); under CI=true it fails instead of skipping")
	}
	t.Skip("needs root (network namespaces); run as root")
}

// uniq returns a name unique to this run and use, with a role suffix.
func uniq(role string) string { return fmt.Sprintf("skit%s-%d-%s", runID, seq.Add(1), role) }

// scratchNS makes a namespace of this test's own, deleted when it ends.
func scratchNS(t *testing.T, role string) *harness.NetNS {
	t.Helper()
	ns, err := harness.NewNetNS(uniq(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	return ns
}

const netName = "skit"

// env is one test's node: a namespace running libcni with skein, a data
// dir and a bridge name of its own.
type env struct {
	t          *testing.T
	node       *harness.Node
	dataDir    string
	bridge     string
	pluginConf map[string]any
	cniVersion string
}

type envOpts struct {
	cniVersion string
	ranges     []map[string]string
	extra      map[string]any   // more skein plugin fields
	chain      []map[string]any // plugins after skein
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	requireRoot(t)
	if o.cniVersion == "" {
		o.cniVersion = "1.1.0"
	}
	if o.ranges == nil {
		o.ranges = []map[string]string{{"subnet": "10.77.0.0/24"}}
	}
	e := &env{t: t, dataDir: t.TempDir(), bridge: fmt.Sprintf("skbr%s%d", runID, seq.Add(1)), cniVersion: o.cniVersion}
	e.pluginConf = map[string]any{"type": "skein", "bridge": e.bridge, "ranges": o.ranges, "dataDir": e.dataDir}
	for k, v := range o.extra {
		e.pluginConf[k] = v
	}
	plugins := []any{e.pluginConf}
	for _, p := range o.chain {
		plugins = append(plugins, p)
	}
	list, err := json.Marshal(map[string]any{"cniVersion": o.cniVersion, "name": netName, "plugins": plugins})
	if err != nil {
		t.Fatal(err)
	}
	node, err := harness.NewNode(uniq("node"), pluginDir, list)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Error(err)
		}
	})
	e.node = node
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// addPod makes a pod; its namespace is removed when the test ends.
func (e *env) addPod(id string) *harness.Pod {
	e.t.Helper()
	p, err := e.node.AddPod(ctx(e.t), uniq("pod"), id)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", id, err)
	}
	e.t.Cleanup(func() { p.NS.Delete() })
	return p
}

// addPodNS makes a pod namespace without running the plugin.
func (e *env) addPodNS() *harness.NetNS {
	e.t.Helper()
	return scratchNS(e.t, "pod")
}

func harnessRuntimeConf(id, netnsPath string) *libcni.RuntimeConf {
	return harness.RuntimeConf(id, netnsPath, "default")
}

// records lists the addresses reserved on disk.
func (e *env) records() []string {
	e.t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.dataDir, netName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		if net.ParseIP(en.Name()) != nil {
			out = append(out, en.Name())
		}
	}
	sort.Strings(out)
	return out
}

// storeUnlocked reports whether no call holds the store's lock.
func (e *env) storeUnlocked() bool {
	f, err := os.Open(filepath.Join(e.dataDir, netName, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false
	}
	return unix.Flock(int(f.Fd()), unix.LOCK_UN) == nil
}

// hostVeths lists the skein veths in the node's namespace.
func (e *env) hostVeths() []string {
	e.t.Helper()
	var out []string
	err := e.node.NS.Do(func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "skein") {
				out = append(out, l.Attrs().Name)
			}
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// assertNothingLeft fails unless no reservation, index entry, temporary
// file or host veth remains.
func (e *env) assertNothingLeft() {
	e.t.Helper()
	if r := e.records(); len(r) != 0 {
		e.t.Errorf("reservations left: %v", r)
	}
	entries, _ := os.ReadDir(filepath.Join(e.dataDir, netName))
	for _, en := range entries {
		if name := en.Name(); name != "lock" && net.ParseIP(name) == nil {
			e.t.Errorf("data dir holds %s", name)
		}
	}
	if v := e.hostVeths(); len(v) != 0 {
		e.t.Errorf("host veths left: %v", v)
	}
}

// pluginStdin is the single-plugin config the runtime would pass skein.
func (e *env) pluginStdin(extra map[string]any) []byte {
	c := map[string]any{"cniVersion": e.cniVersion, "name": netName}
	for k, v := range e.pluginConf {
		c[k] = v
	}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// pluginCmd prepares the skein binary run as the runtime runs it; start it
// with e.node.NS.Do so it begins inside the node's namespace.
func (e *env) pluginCmd(vars map[string]string, stdin []byte) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pluginDir, "skein"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_PATH=" + pluginDir}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(string(stdin))
	return cmd
}

// runPlugin runs the plugin once and returns its stdout and exit error.
func (e *env) runPlugin(vars map[string]string, stdin []byte) (stdout []byte, stderr string, err error) {
	cmd := e.pluginCmd(vars, stdin)
	var errBuf strings.Builder
	cmd.Stderr = &errBuf
	derr := e.node.NS.Do(func() error {
		stdout, err = cmd.Output()
		return nil
	})
	if derr != nil {
		e.t.Fatal(derr)
	}
	return stdout, errBuf.String(), err
}

// gc runs the plugin's own GC. libcni's GC first DELs every attachment
// in its cache that is not valid, so to test what the plugin collects by
// itself (attachments the runtime forgot, ADDs that died) the plugin is
// called directly, as libcni calls it after those DELs.
func (e *env) gc(valid []types.GCAttachment) {
	e.t.Helper()
	if valid == nil {
		valid = []types.GCAttachment{}
	}
	out, stderr, err := e.runPlugin(map[string]string{"CNI_COMMAND": "GC"}, e.pluginStdin(map[string]any{"cni.dev/valid-attachments": valid}))
	if err != nil {
		e.t.Fatalf("GC: %v: %s %s", err, out, stderr)
	}
}

// cniCode returns the CNI error code inside err (as libcni returns it).
func cniCode(t *testing.T, err error) uint {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("want a CNI error, got %T: %v", err, err)
	}
	return te.Code
}

// sourceSeen returns the source address server saw from client.
func sourceSeen(t *testing.T, server *harness.Pod, serverIP string, client *harness.Pod) string {
	t.Helper()
	src, err := harness.SourceSeen(server.NS, serverIP, client.NS)
	if err != nil {
		t.Fatal(err)
	}
	return src
}
