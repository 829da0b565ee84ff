package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/skein-net/skein/integration/images"
)

// RealPorts are the ports of a control plane for real nodes: apart
// from make test's (17443 and on), which the other tests share meanwhile.
type RealPorts struct{ API, Etcd, ControllerManager, Scheduler int }

// DefaultRealPorts are TestRealNodes' ports.
var DefaultRealPorts = RealPorts{API: 17543, Etcd: 17579, ControllerManager: 17557, Scheduler: 17559}

// RealPlane is a control plane for real nodes: scripts/k8s/start.sh with
// REAL_NODES=1 (the controllers and the scheduler they need).
type RealPlane struct {
	Run   string // its run directory: admin.kubeconfig, pki/
	Bin   string // the binaries: kubelet, kubectl, ...
	Ports RealPorts
	// NS, when set, is the network namespace the control plane runs in
	// (RealOptions.ControlPlane attaches it to the nodes' underlay); the
	// API server is relayed to the host's loopback.
	NS    *NetNS
	relay *Relay
	root  string
	env   []string
}

// StartRealPlane builds what is missing of the control plane, the
// kubelet and the scheduler included, and starts it in the run
// directory run.
func StartRealPlane(run string, ports RealPorts, ns *NetNS) (*RealPlane, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	build := exec.Command(filepath.Join(root, "scripts/k8s/build.sh"))
	build.Env = append(os.Environ(), "WHAT=etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the control plane: %v\n%s", err, out)
	}
	home := os.Getenv("SKEIN_K8S_HOME")
	if home == "" {
		home = "/var/tmp/skein-k8s"
	}
	// A control plane a killed test left would hold the ports.
	if err := SweepOrphans(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return nil, err
	}
	if err := MarkOwner(run, "plane"); err != nil {
		return nil, err
	}
	p := &RealPlane{Run: run, Bin: filepath.Join(home, "bin"), Ports: ports, NS: ns, root: root}
	p.env = append(os.Environ(), "SKEIN_K8S_RUN="+run, "REAL_NODES=1", "WIPE=1",
		"APISERVER_PORT="+strconv.Itoa(ports.API), "ETCD_PORT="+strconv.Itoa(ports.Etcd),
		"CONTROLLER_MANAGER_PORT="+strconv.Itoa(ports.ControllerManager), "SCHEDULER_PORT="+strconv.Itoa(ports.Scheduler))
	start := exec.Command(filepath.Join(root, "scripts/k8s/start.sh"))
	if ns != nil {
		start = exec.Command("ip", "netns", "exec", ns.Name, filepath.Join(root, "scripts/k8s/start.sh"))
	}
	start.Env = p.env
	if out, err := start.CombinedOutput(); err != nil {
		return nil, errors.Join(fmt.Errorf("start the control plane: %v\n%s", err, out), p.Stop())
	}
	if ns != nil {
		api := "127.0.0.1:" + strconv.Itoa(ports.API)
		if p.relay, err = NewRelayInto(ns, api, api); err != nil {
			return nil, errors.Join(err, p.Stop())
		}
	}
	return p, nil
}

// Kubeconfig is the admin's kubeconfig.
func (p *RealPlane) Kubeconfig() string { return filepath.Join(p.Run, "admin.kubeconfig") }

// Stop stops what StartRealPlane started and removes the run directory.
func (p *RealPlane) Stop() error {
	stop := exec.Command(filepath.Join(p.root, "scripts/k8s/stop.sh"))
	stop.Env = p.env
	out, err := stop.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("stop the control plane: %v\n%s", err, out)
	}
	if p.relay != nil {
		err = errors.Join(err, p.relay.Close())
	}
	return errors.Join(err, os.RemoveAll(p.Run))
}

// Kubectl runs kubectl against the control plane as its admin.
func (p *RealPlane) Kubectl(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(p.Bin, "kubectl"), append([]string{"--kubeconfig", p.Kubeconfig()}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// The test images' references.
const (
	PauseImage     = "localhost/skein-test/pause:1.0"
	NetexecImage   = "localhost/skein-test/netexec:1.0"
	SkeinImage     = "localhost/skein-test/skein:1.0"
	SkeinNextImage = "localhost/skein-test/skein:1.1" // the same image: an upgrade's new tag
)

// TestImages builds the pause, netexec and skein images into dir, as
// archives for ctr images import; skein's from the binaries in
// pluginDir (BuildPlugins). pauseAlso are more names for the pause image.
func TestImages(dir, pluginDir string, pauseAlso ...string) ([]string, error) {
	var out []string
	for _, name := range []string{"pause", "netexec"} {
		bin, err := images.GoBinary("github.com/skein-net/skein/integration/images/"+name, dir)
		if err != nil {
			return nil, err
		}
		im := images.Image{Ref: PauseImage, Also: pauseAlso, Files: []images.File{{Path: "/" + name, From: bin}},
			Entrypoint: []string{"/" + name}}
		if name == "netexec" {
			im = images.Image{Ref: NetexecImage, Files: im.Files, Entrypoint: []string{"/netexec", "serve"}}
		}
		file := filepath.Join(dir, name+".tar")
		if err := im.Write(file); err != nil {
			return nil, err
		}
		out = append(out, file)
	}
	skein, err := skeinImage(dir, pluginDir)
	if err != nil {
		return nil, err
	}
	return append(out, skein), nil
}

// skeinImage builds skein's image as conf/deploy/Dockerfile describes
// it, from this machine's files: skeind and the plugins (static) under
// /opt/skein/bin, and the nftables and iptables (iptables-nft) userspace
// with the libraries and extensions they load.
func skeinImage(dir, pluginDir string) (string, error) {
	progs := map[string]string{"/usr/sbin/nft": "/usr/sbin/nft", "/usr/sbin/xtables-nft-multi": "/usr/sbin/xtables-nft-multi"}
	const ext = "/usr/lib/x86_64-linux-gnu/xtables"
	mods, err := filepath.Glob(ext + "/*.so")
	if err != nil || len(mods) == 0 {
		return "", fmt.Errorf("no iptables extensions in %s (%v)", ext, err)
	}
	for _, m := range mods {
		progs[m] = m
	}
	files, err := images.WithLibraries(progs)
	if err != nil {
		return "", err
	}
	for _, name := range []string{"skeind", "skein", "portmap", "loopback"} {
		files = append(files, images.File{Path: "/opt/skein/bin/" + name, From: filepath.Join(pluginDir, name)})
	}
	for _, tool := range []string{"iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"} {
		files = append(files, images.File{Path: "/usr/sbin/" + tool, Link: "xtables-nft-multi"})
	}
	for _, f := range []string{"/etc/protocols", "/etc/services", "/etc/ethertypes"} {
		if _, err := os.Stat(f); err == nil {
			files = append(files, images.File{Path: f, From: f})
		}
	}
	out := filepath.Join(dir, "skein.tar")
	im := images.Image{Ref: SkeinImage, Also: []string{SkeinNextImage}, Files: files,
		Entrypoint: []string{"/opt/skein/bin/skeind"}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}
	return out, im.Write(out)
}

// InstallSkein applies conf/deploy as a user does (kubectl apply -k),
// through a kustomization in dir that only replaces the image and tells
// skeind where the API server is.
func (p *RealPlane) InstallSkein(dir string) error {
	base, err := filepath.Rel(dir, filepath.Join(p.root, "conf/deploy"))
	if err != nil {
		return err
	}
	name, tag, _ := strings.Cut(SkeinImage, ":")
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [%s]
images:
- {name: ghcr.io/skein-net/skein, newName: %s, newTag: %q}
patches:
- target: {kind: ConfigMap, name: skein-config}
  patch: |-
    - {op: add, path: /data/api-server-host, value: "127.0.0.1"}
    - {op: add, path: /data/api-server-port, value: "%d"}
`, base, name, tag, p.Ports.API)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return err
	}
	_, err = p.Kubectl("apply", "-k", dir)
	return err
}
