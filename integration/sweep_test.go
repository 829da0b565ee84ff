package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/skein-net/skein/integration/harness"
)

// TestSweepOrphans: what a real cluster left when its test process died
// (a node's process still running in the node's cgroup, the cgroup, the
// node's and the underlay's namespaces, the directory) is swept by the
// next one; a cluster whose owner lives is left alone.
func TestSweepOrphans(t *testing.T) {
	requireRoot(t)
	// A dead owner: a process that has exited (its PID is free, or
	// another process's now: the start time tells them apart).
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	prefix := uniq("sw")
	dir, err := os.MkdirTemp("", prefix+"-real-")
	if err != nil {
		t.Fatal(err)
	}
	record := fmt.Sprintf("%d 1 cluster %s 1\n", dead.Process.Pid, prefix)
	if err := os.WriteFile(filepath.Join(dir, "skein-owner"), []byte(record), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{prefix + "-n1", prefix + "-ul"} {
		if _, err := harness.NewNetNS(name); err != nil {
			t.Fatal(err)
		}
	}
	cg := filepath.Join("/sys/fs/cgroup/pids", prefix+"-node1")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	left := exec.Command("sleep", "600")
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- left.Wait() }()
	t.Cleanup(func() {
		_ = left.Process.Kill() // by its PID: ours
		for _, name := range []string{prefix + "-n1", prefix + "-ul"} {
			_ = (&harness.NetNS{Name: name}).Delete()
		}
		_ = syscall.Rmdir(cg)
		_ = os.RemoveAll(dir)
	})
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(left.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A live owner: this process.
	live, err := os.MkdirTemp("", uniq("sw")+"-real-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(live) })
	if err := harness.MarkOwner(live, "cluster", prefix+"-live", "1"); err != nil {
		t.Fatal(err)
	}

	if err := harness.SweepOrphans(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the dead cluster's node process still runs")
	}
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Errorf("its cgroup %s stays (%v)", cg, err)
	}
	for _, name := range []string{prefix + "-n1", prefix + "-ul"} {
		if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
			t.Errorf("its namespace %s stays", name)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("its directory %s stays", dir)
	}
	if _, err := os.Stat(filepath.Join(live, "skein-owner")); err != nil {
		t.Errorf("a live cluster's directory was swept: %v", err)
	}
}
