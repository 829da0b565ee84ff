package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
)

func TestGCCollectsExactlyTheRest(t *testing.T) {
	e := newEnv(t, envOpts{})
	pods := []string{"keep-a", "keep-b", "gone-c", "gone-d"}
	var ips []string
	for _, id := range pods {
		p := e.addPod(id)
		ips = append(ips, p.IPs[0])
	}
	valid := []types.GCAttachment{{ContainerID: "keep-a", IfName: "eth0"}, {ContainerID: "keep-b", IfName: "eth0"}}
	e.gc(valid)
	if diff := cmp.Diff(slices.Sorted(slices.Values(ips[:2])), e.records()); diff != "" {
		t.Errorf("reservations after GC (-want +got):\n%s", diff)
	}
	if got := len(e.hostVeths()); got != 2 {
		t.Errorf("%d host veths after GC, want 2", got)
	}
	// The valid pods still work; a third pod can be added and reaches them.
	p := e.addPod("new")
	// Through libcni, as containerd runs it: DEL for what it knows, then GC.
	if err := e.node.GC(ctx(t), append(valid, types.GCAttachment{ContainerID: "new", IfName: "eth0"})); err != nil {
		t.Fatalf("libcni GC: %v", err)
	}
	if err := p.NS.Ping(ctx(t), ips[0], 1); err != nil {
		t.Error(err)
	}
}

// TestGCAndKilledAdd stops an ADD right after it reserved its address:
// GC must leave that attachment alone while the ADD lives, and recover
// all of it once the ADD was killed with SIGKILL.
func TestGCAndKilledAdd(t *testing.T) {
	e := newEnv(t, envOpts{})
	// On a busy machine the ADD may finish before it can be stopped; then
	// there is nothing in flight to protect, and the attempt is repeated.
	for attempt := 1; ; attempt++ {
		if stoppedMidAdd(t, e, attempt) {
			return
		}
		if attempt == 5 {
			t.Fatal("could not stop an ADD before it finished in 5 attempts")
		}
	}
}

// stoppedMidAdd runs one attempt; false means the ADD was already done.
func stoppedMidAdd(t *testing.T, e *env, attempt int) bool {
	podNS := e.addPodNS()
	id := fmt.Sprintf("victim%d", attempt)
	vars := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": id, "CNI_NETNS": podNS.Path, "CNI_IFNAME": "eth0"}
	cmd := e.pluginCmd(vars, e.pluginStdin(nil))
	if err := e.node.NS.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Freeze it once its record exists and it let go of the store lock,
	// that is while it wires the pod.
	deadline := time.Now().Add(10 * time.Second)
	for len(e.records()) == 0 || !e.storeUnlocked() {
		if time.Now().After(deadline) {
			t.Fatal("the ADD reserved nothing")
		}
		time.Sleep(50 * time.Microsecond)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The signal lands asynchronously: wait until the process is stopped
	// (T), or turns out to have exited first (Z).
	state := procState(cmd.Process.Pid)
	for stopBy := time.Now().Add(5 * time.Second); state != "T" && state != "Z" && time.Now().Before(stopBy); {
		time.Sleep(time.Millisecond)
		state = procState(cmd.Process.Pid)
	}
	if state != "T" {
		t.Logf("attempt %d: the ADD had finished (state %s); again", attempt, state)
		_ = cmd.Wait()
		e.gc(nil) // collect the finished attempt
		return false
	}
	held := e.records()
	e.gc(nil)
	if diff := cmp.Diff(held, e.records()); diff != "" {
		t.Fatalf("GC collected an attachment whose ADD still runs (-before +after):\n%s", diff)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	e.gc(nil)
	e.assertNothingLeft()
	if out, _ := podNS.Exec(ctx(t), "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("the pod side survived: %s", out)
	}
	return true
}

// procState returns a process's state letter from /proc (T stopped, Z
// exited but not reaped).
func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "?"
	}
	// The state follows the command name in parentheses.
	if i := strings.LastIndexByte(string(data), ')'); i >= 0 && i+2 < len(data) {
		return string(data[i+2])
	}
	return "?"
}

// TestGCAfterRandomKills kills ADDs at points spread over their run;
// whatever each left behind, one GC recovers it all.
func TestGCAfterRandomKills(t *testing.T) {
	e := newEnv(t, envOpts{})
	start := time.Now()
	e.addPod("timing")
	took := time.Since(start)
	leftovers := 0
	for i := 0; i < 12; i++ {
		podNS := e.addPodNS()
		vars := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "k" + string(rune('a'+i)), "CNI_NETNS": podNS.Path, "CNI_IFNAME": "eth0"}
		cmd := e.pluginCmd(vars, e.pluginStdin(nil))
		if err := e.node.NS.Do(cmd.Start); err != nil {
			t.Fatal(err)
		}
		time.Sleep(took * time.Duration(i) / 10)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		leftovers += len(e.records()) - 1
	}
	t.Logf("killed ADDs left %d reservations and %d veths before GC", leftovers, len(e.hostVeths())-1)
	e.gc([]types.GCAttachment{{ContainerID: "timing", IfName: "eth0"}})
	if got := len(e.records()); got != 1 {
		t.Errorf("%d reservations after GC, want only the valid pod's", got)
	}
	if got := len(e.hostVeths()); got != 1 {
		t.Errorf("%d host veths after GC, want only the valid pod's", got)
	}
}

func TestStatus(t *testing.T) {
	// One usable address: .0 network, .1 gateway, .2 pod, .3 broadcast.
	e := newEnv(t, envOpts{ranges: []map[string]string{{"subnet": "10.77.0.0/30"}}})
	if err := e.node.Status(ctx(t)); err != nil {
		t.Fatalf("STATUS on an empty pool: %v", err)
	}
	p := e.addPod("only")
	err := e.node.Status(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("STATUS on a full pool = %v, want it to say the pool is full", err)
	}
	if code := cniCode(t, err); code != 50 {
		t.Errorf("code %d, want 50", code)
	}
	if err := e.node.Del(ctx(t), p.RT); err != nil {
		t.Fatal(err)
	}
	if err := e.node.Status(ctx(t)); err != nil {
		t.Fatalf("STATUS after the release: %v", err)
	}
}

func TestStatusUnwritableStore(t *testing.T) {
	e := newEnv(t, envOpts{})
	// A file where the store's directory should be.
	if err := os.WriteFile(filepath.Join(e.dataDir, netName), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := e.runPlugin(map[string]string{"CNI_COMMAND": "STATUS"}, e.pluginStdin(nil))
	var res types.Error
	if err == nil || json.Unmarshal(out, &res) != nil || res.Code != 50 || !strings.Contains(res.Msg, "data dir") {
		t.Fatalf("STATUS = %s (err %v), want code 50 naming the data dir", out, err)
	}
}

// TestGCWithoutValidAttachments: a GC request that does not list the
// live attachments collects nothing (it would otherwise take every live
// pod's address and veth) and says why.
func TestGCWithoutValidAttachments(t *testing.T) {
	e := newEnv(t, envOpts{})
	a, b := e.addPod("live-a"), e.addPod("live-b")
	before := e.records()
	out, _, err := e.runPlugin(map[string]string{"CNI_COMMAND": "GC"}, e.pluginStdin(nil))
	var res types.Error
	if err == nil || json.Unmarshal(out, &res) != nil || res.Code != uint(types.ErrInvalidNetworkConfig) || !strings.Contains(res.Msg, "valid-attachments") {
		t.Fatalf("GC without the list = %s (err %v), want error 7 naming cni.dev/valid-attachments", out, err)
	}
	if diff := cmp.Diff(before, e.records()); diff != "" {
		t.Errorf("reservations changed (-before +after):\n%s", diff)
	}
	if got := len(e.hostVeths()); got != 2 {
		t.Errorf("%d host veths after the refused GC, want 2", got)
	}
	if err := a.NS.Ping(ctx(t), b.IPs[0], 1); err != nil {
		t.Errorf("the live pods stopped talking: %v", err)
	}
	// An empty list is a runtime with no live pod: everything goes.
	e.gc([]types.GCAttachment{})
	if got := e.records(); len(got) != 0 {
		t.Errorf("reservations after GC with an empty list: %v", got)
	}
}

// TestGCSkipsNamesThatAreNotRecords: a directory and a FIFO named like
// addresses in the data dir neither fail nor block GC.
func TestGCSkipsNamesThatAreNotRecords(t *testing.T) {
	e := newEnv(t, envOpts{})
	keep := e.addPod("keep")
	e.addPod("gone")
	dir := filepath.Join(e.dataDir, netName)
	if err := os.Mkdir(filepath.Join(dir, "10.250.250.250"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "10.250.250.251"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := e.pluginCmd(map[string]string{"CNI_COMMAND": "GC"},
		e.pluginStdin(map[string]any{"cni.dev/valid-attachments": []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}}}))
	var stdout, errBuf strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &errBuf
	if err := e.node.NS.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("GC: %v: %s %s", err, stdout.String(), errBuf.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("GC blocked on a FIFO in the data dir")
	}
	stderr := errBuf.String()
	for _, name := range []string{"10.250.250.250", "10.250.250.251"} {
		if !strings.Contains(stderr, name) {
			t.Errorf("GC did not report %s: %s", name, stderr)
		}
	}
	want := slices.Sorted(slices.Values([]string{keep.IPs[0], "10.250.250.250", "10.250.250.251"}))
	if diff := cmp.Diff(want, e.records()); diff != "" {
		t.Errorf("data dir after GC: the kept pod's record and the two odd names, untouched (-want +got):\n%s", diff)
	}
}
