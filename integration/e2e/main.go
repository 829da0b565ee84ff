// Command e2e runs the upstream Kubernetes network end-to-end tests
// (e2e.test, built by scripts/k8s/build-e2e.sh) against skein on a
// cluster of real nodes (harness.RealCluster), skein installed by its
// DaemonSet and skeind the only Service proxy. The control plane and
// e2e.test itself run in a network namespace on the nodes' underlay,
// with no route out: the API server reaches the kubelets (logs, exec),
// the tests reach the nodes, and nothing of theirs leaves the machine.
// make e2e runs it (scripts/e2e.sh); it prints e2e.test's summary and
// exits non-zero when a test failed.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/integration/harness"
	"github.com/skein-net/skein/integration/images"
)

var (
	focus = flag.String("focus", "", "e2e.test's --ginkgo.focus")
	skip  = flag.String("skip", "", "e2e.test's --ginkgo.skip")
	nodes = flag.Int("nodes", 2, "real nodes")
	keep  = flag.Bool("keep", false, "leave the cluster up after the tests (the output says how to end it)")
	logTo = flag.String("log", "", "where e2e.test's full output goes (default: the work directory, removed at the end)")
)

// Upstream's names of the images the chosen tests use.
const (
	agnhostRef = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	glibcRef   = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	busyboxRef = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	boomRef    = "registry.k8s.io/e2e-test-images/regression-issue-74839:1.5"
	pauseRef   = "registry.k8s.io/pause:3.10.2"
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "skein-e2e-")
	if err != nil {
		return err
	}
	var cleanups []func() error
	defer func() {
		if *keep {
			fmt.Fprintf(os.Stderr, "e2e: left up in %s\n", work)
			return
		}
		for i := len(cleanups) - 1; i >= 0; i-- {
			err = errors.Join(err, cleanups[i]())
		}
		err = errors.Join(err, os.RemoveAll(work))
	}()
	say("building skein and the images ...")
	plugins := filepath.Join(work, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return err
	}
	if err := harness.BuildPlugins(plugins); err != nil {
		return err
	}
	imgs, err := harness.TestImages(work, plugins, pauseRef)
	if err != nil {
		return err
	}
	prefix := fmt.Sprintf("ske2e%04x", os.Getpid()&0xffff)
	cp, err := harness.NewNetNS(prefix + "-cp")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, cp.Delete)
	say("starting the control plane ...")
	plane, err := harness.StartRealPlane(filepath.Join(work, "k8s"), harness.RealPorts{API: 17643, Etcd: 17679, ControllerManager: 17657, Scheduler: 17659}, cp)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, plane.Stop)
	agnhost, err := agnhostImage(work, filepath.Join(plane.Bin, "agnhost"))
	if err != nil {
		return err
	}
	glibc, err := glibcDNSImage(work)
	if err != nil {
		return err
	}
	busybox, err := busyboxImage(work)
	if err != nil {
		return err
	}
	// The conntrack INVALID test's server: a static Go program, alone.
	boom := filepath.Join(work, "regression-issue-74839.tar")
	err = images.Image{Ref: boomRef, Files: []images.File{{Path: "/regression-issue-74839", From: filepath.Join(plane.Bin, "regression-issue-74839")}},
		Entrypoint: []string{"/regression-issue-74839"}}.Write(boom)
	if err != nil {
		return err
	}
	say("starting %d real nodes ...", *nodes)
	c, err := harness.NewRealCluster(ctx, harness.RealOptions{
		Prefix: prefix, Nodes: *nodes, K8sRun: plane.Run, Kubelet: filepath.Join(plane.Bin, "kubelet"),
		Images: append(imgs, agnhost, glibc, busybox, boom), PauseImage: harness.PauseImage, APIPort: plane.Ports.API, ControlPlane: cp,
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, c.Close)
	say("installing skein ...")
	if err := os.MkdirAll(filepath.Join(work, "deploy"), 0o755); err != nil {
		return err
	}
	if err := plane.InstallSkein(filepath.Join(work, "deploy")); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := n.WaitReady(ctx, 3*time.Minute); err != nil {
			return fmt.Errorf("%w\n%s", err, n.Logs())
		}
		// The API server reaches pods (its proxy to them), as a control
		// plane node of the cluster would: through the pod's node.
		obj, err := c.API().CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cidr := range obj.Spec.PodCIDRs {
			if _, err := cp.Exec(ctx, "ip", "route", "add", cidr, "via", n.IP.String()); err != nil {
				return err
			}
		}
	}
	return e2e(ctx, plane, cp, work)
}

// e2e runs e2e.test in the control plane's namespace and prints its
// summary.
func e2e(ctx context.Context, plane *harness.RealPlane, cp *harness.NetNS, work string) error {
	args := []string{"netns", "exec", cp.Name, filepath.Join(plane.Bin, "e2e.test"),
		"--kubeconfig=" + plane.Kubeconfig(), "--provider=local", "--report-dir=" + filepath.Join(work, "report"),
		"--ginkgo.no-color", "--ginkgo.v", "--ginkgo.poll-progress-after=120s", "--ginkgo.timeout=2h", "--non-blocking-taints=node-role.kubernetes.io/control-plane",
		"--ginkgo.focus=" + *focus}
	if *skip != "" {
		args = append(args, "--ginkgo.skip="+*skip)
	}
	say("e2e.test --ginkgo.focus=%q --ginkgo.skip=%q", *focus, *skip)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+plane.Kubeconfig())
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	logPath := *logTo
	if logPath == "" {
		logPath = filepath.Join(work, "e2e.log")
	}
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	if err := cmd.Start(); err != nil {
		return err
	}
	var summary []string
	sc := bufio.NewScanner(io.TeeReader(out, log))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "Ran "), strings.Contains(l, " Passed |"), strings.HasPrefix(l, "  [FAIL]"),
			strings.HasPrefix(l, "[FAIL]"), strings.HasPrefix(l, "• [FAILED]"):
			summary = append(summary, l)
		}
		if strings.HasPrefix(l, "[sig-") || strings.HasPrefix(l, "•") || strings.Contains(l, "[FAIL]") {
			fmt.Println(l) // each spec's name, and how it ended
		}
	}
	err = cmd.Wait()
	fmt.Println(strings.Join(summary, "\n"))
	if err != nil {
		return fmt.Errorf("e2e.test: %w (its output: %s)", err, logPath)
	}
	return nil
}

// agnhostImage is the upstream test image under its upstream name:
// agnhost, with dash as /bin/sh, curl, GNU wget, dig, getent, OpenBSD's nc and
// busybox's small tools, as the tests run them.
func agnhostImage(dir, agnhost string) (string, error) {
	files, err := images.WithLibraries(map[string]string{
		"/bin/dash": "/bin/dash", "/usr/bin/curl": "/usr/bin/curl", "/usr/bin/nc": "/bin/nc.openbsd",
		// GNU wget: busybox-static's segfaults on this kind of machine.
		"/usr/bin/wget":   "/usr/bin/wget",
		"/usr/bin/dig":    "/usr/bin/dig", // the DNS tests' probe, with getent
		"/usr/bin/getent": "/usr/bin/getent",
	})
	if err != nil {
		return "", err
	}
	nss, err := nsswitch(dir)
	if err != nil {
		return "", err
	}
	files = append(files, nss,
		images.File{Path: "/agnhost", From: agnhost},
		images.File{Path: "/bin/sh", Link: "dash"},
		images.File{Path: "/bin/busybox", From: "/bin/busybox"})
	for _, tool := range []string{"cat", "sleep", "ls", "grep", "hostname", "timeout", "test", "true", "false",
		"head", "tail", "sed", "awk", "cut", "tr", "wc", "mkdir", "rm", "cp", "mv", "touch", "date", "ps", "kill",
		"env", "ip", "nslookup", "ping", "sort", "uniq", "xargs", "seq", "dd", "printf", "id", "stat"} {
		files = append(files, images.File{Path: "/bin/" + tool, Link: "busybox"})
	}
	out := filepath.Join(dir, "agnhost.tar")
	im := images.Image{Ref: agnhostRef, Files: files, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}
	return out, im.Write(out)
}

// glibcDNSImage is the DNS tests' second querier under its upstream
// name: glibc's resolver (getent) and dig, with dash and busybox's small
// tools for the probe's loop.
func glibcDNSImage(dir string) (string, error) {
	files, err := images.WithLibraries(map[string]string{
		"/bin/dash": "/bin/dash", "/usr/bin/dig": "/usr/bin/dig", "/usr/bin/getent": "/usr/bin/getent",
	})
	if err != nil {
		return "", err
	}
	nss, err := nsswitch(dir)
	if err != nil {
		return "", err
	}
	files = append(files, images.File{Path: "/bin/sh", Link: "dash"}, images.File{Path: "/bin/busybox", From: "/bin/busybox"}, nss)
	for _, tool := range []string{"seq", "sleep", "test", "cat", "echo", "ls", "mkdir"} {
		files = append(files, images.File{Path: "/bin/" + tool, Link: "busybox"})
	}
	out := filepath.Join(dir, "glibc-dns-testing.tar")
	im := images.Image{Ref: glibcRef, Files: files, Entrypoint: []string{"/bin/sh"},
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}
	return out, im.Write(out)
}

// busyboxImage is the upstream busybox test image under its name:
// busybox-static and every applet it has, as links.
func busyboxImage(dir string) (string, error) {
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	files := []images.File{{Path: "/bin/busybox", From: "/bin/busybox"}}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			files = append(files, images.File{Path: "/bin/" + applet, Link: "busybox"})
		}
	}
	out := filepath.Join(dir, "busybox.tar")
	im := images.Image{Ref: busyboxRef, Files: files, Cmd: []string{"sh"}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}
	return out, im.Write(out)
}

// nsswitch is the images' /etc/nsswitch.conf: glibc's getent reads
// names from /etc/hosts, then DNS.
func nsswitch(dir string) (images.File, error) {
	p := filepath.Join(dir, "nsswitch.conf")
	return images.File{Path: "/etc/nsswitch.conf", From: p}, os.WriteFile(p, []byte("hosts: files dns\n"), 0o644)
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e [%s]: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}
