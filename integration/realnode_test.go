package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/integration/harness"
	"github.com/skein-net/skein/integration/images"
)

// Ports of the real-node tests' control plane: apart from make test's
// (17443 and on), which the other tests share meanwhile.
const (
	realAPIPort   = 17543
	realEtcdPort  = 17579
	realKCMPort   = 17557
	realSchedPort = 17559
)

// realControlPlane starts a control plane of its own for real nodes
// (scripts/k8s/start.sh with REAL_NODES=1: the controllers and the
// scheduler they need), building the kubelet and the scheduler first
// where missing, and stops it when the test ends. It returns the run
// directory and the binaries' directory.
func realControlPlane(t *testing.T) (run, bin string) {
	t.Helper()
	requireRoot(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(filepath.Join(root, "scripts/k8s/build.sh"))
	build.Env = append(os.Environ(), "WHAT=kubelet kube-scheduler kube-apiserver kube-controller-manager etcd kubectl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the control plane: %v\n%s", err, out)
	}
	home := os.Getenv("SKEIN_K8S_HOME")
	if home == "" {
		home = "/var/tmp/skein-k8s"
	}
	run = filepath.Join(os.TempDir(), uniq("k8s"))
	env := append(os.Environ(), "SKEIN_K8S_RUN="+run, "REAL_NODES=1", "WIPE=1",
		"APISERVER_PORT="+itoa(realAPIPort), "ETCD_PORT="+itoa(realEtcdPort),
		"CONTROLLER_MANAGER_PORT="+itoa(realKCMPort), "SCHEDULER_PORT="+itoa(realSchedPort))
	t.Cleanup(func() {
		stop := exec.Command(filepath.Join(root, "scripts/k8s/stop.sh"))
		stop.Env = append(env, "WIPE=1")
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("stop the control plane: %v\n%s", err, out)
		}
		os.RemoveAll(run)
	})
	start := exec.Command(filepath.Join(root, "scripts/k8s/start.sh"))
	start.Env = env
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("start the control plane: %v\n%s", err, out)
	}
	return run, filepath.Join(home, "bin")
}

func itoa(i int) string { return strconv.Itoa(i) }

// testImages builds the pause and netexec images into dir.
func testImages(t *testing.T, dir string) (pause, netexec string) {
	t.Helper()
	var files []string
	for _, name := range []string{"pause", "netexec"} {
		bin, err := images.GoBinary("github.com/skein-net/skein/integration/images/"+name, dir)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name+".tar")
		im := images.Image{Ref: "localhost/skein-test/" + name + ":1.0", Files: []images.File{{Path: "/" + name, From: bin}},
			Entrypoint: []string{"/" + name}}
		if name == "netexec" {
			im.Entrypoint = append(im.Entrypoint, "serve")
		}
		if err := im.Write(out); err != nil {
			t.Fatal(err)
		}
		files = append(files, out)
	}
	return files[0], files[1]
}

// TestRealNodes: nodes that are real Kubernetes nodes (containerd and a
// kubelet each, in namespaces of their own) register with the control
// plane, with the test images in their containerd.
func TestRealNodes(t *testing.T) {
	run, bin := realControlPlane(t)
	pause, netexec := testImages(t, t.TempDir())
	c, err := harness.NewRealCluster(ctx(t), harness.RealOptions{
		Prefix: uniq("r"), Nodes: 2, K8sRun: run, Kubelet: filepath.Join(bin, "kubelet"),
		Images: []string{pause, netexec}, PauseImage: "localhost/skein-test/pause:1.0", APIPort: realAPIPort,
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
			if err == nil && len(obj.Status.Images) >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Node %s reports images %v, want the pause and netexec images", n.Name, obj.Status.Images)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}
