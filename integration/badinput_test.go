package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// TestBadInput runs the plugin binary as the runtime would with input that
// is wrong in one way each. Every case must answer a CNI error on stdout
// with the right code and a message naming the problem, exit non-zero, and
// leave no reservation, veth or pod interface behind.
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOpts{cniVersion: "1.0.0"})
	podNS := e.addPodNS()
	good := func(mod func(c map[string]any)) []byte {
		c := map[string]any{"cniVersion": "1.0.0", "name": netName, "type": "skein", "bridge": e.bridge,
			"dataDir": e.dataDir, "ranges": []map[string]string{{"subnet": "10.77.0.0/24"}}}
		if mod != nil {
			mod(c)
		}
		b, _ := json.Marshal(c)
		return b
	}
	ranges := func(r ...map[string]string) func(map[string]any) {
		return func(c map[string]any) { c["ranges"] = r }
	}
	addEnv := func(mod func(map[string]string)) map[string]string {
		v := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "bad", "CNI_NETNS": podNS.Path, "CNI_IFNAME": "eth0"}
		if mod != nil {
			mod(v)
		}
		return v
	}
	tests := []struct {
		name  string
		vars  map[string]string
		stdin []byte
		code  uint
		msg   string
	}{
		{"malformed JSON", addEnv(nil), []byte(`{"cniVersion": "1.0.0", "name":`), 6, "network config"},
		{"missing cniVersion", addEnv(nil), good(func(c map[string]any) { delete(c, "cniVersion") }), 7, "cniVersion: required"},
		{"unknown cniVersion", addEnv(nil), good(func(c map[string]any) { c["cniVersion"] = "7.0.0" }), 1, "incompatible CNI versions"},
		{"missing subnet", addEnv(nil), good(ranges(map[string]string{})), 7, "ranges[0].subnet: required"},
		{"invalid subnet", addEnv(nil), good(ranges(map[string]string{"subnet": "10.77.0.0/33"})), 7, "ranges[0].subnet"},
		{"no ranges", addEnv(nil), good(func(c map[string]any) { delete(c, "ranges") }), 7, "ranges: required"},
		{"subnet too small", addEnv(nil), good(ranges(map[string]string{"subnet": "10.77.0.0/31"})), 7, "too small"},
		{"gateway outside", addEnv(nil), good(ranges(map[string]string{"subnet": "10.77.0.0/24", "gateway": "10.78.0.1"})), 7, "ranges[0].gateway: 10.78.0.1 is outside subnet"},
		{"overlapping ranges", addEnv(nil), good(ranges(map[string]string{"subnet": "10.77.0.0/24"}, map[string]string{"subnet": "10.77.0.128/25"})), 7, "overlaps"},
		{"rangeStart after rangeEnd", addEnv(nil), good(ranges(map[string]string{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.9", "rangeEnd": "10.77.0.5"})), 7, "rangeStart: 10.77.0.9 is after rangeEnd"},
		{"MTU out of range", addEnv(nil), good(func(c map[string]any) { c["mtu"] = 20 }), 7, "mtu: 20 is out of range"},
		{"ifname too long", addEnv(func(v map[string]string) { v["CNI_IFNAME"] = "eth0123456789abc" }), good(nil), 4, "interface name is too long"},
		{"netns does not exist", addEnv(func(v map[string]string) { v["CNI_NETNS"] = "/run/netns/skein-no-such-netns" }), good(nil), 4, "CNI_NETNS"},
		{"missing CNI_CONTAINERID", addEnv(func(v map[string]string) { delete(v, "CNI_CONTAINERID") }), good(nil), 4, "CNI_CONTAINERID"},
		{"garbage CNI_ARGS", addEnv(func(v map[string]string) { v["CNI_ARGS"] = "K8S_POD_NAMESPACE" }), good(nil), 4, "CNI_ARGS"},
		{"garbage requested IP", addEnv(func(v map[string]string) { v["CNI_ARGS"] = "IP=10.77.0.999" }), good(nil), 4, "not an IP address"},
		{"requested IP outside", addEnv(func(v map[string]string) { v["CNI_ARGS"] = "IP=10.99.0.5" }), good(nil), 101, "in no configured subnet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := e.runPlugin(tc.vars, tc.stdin)
			var ee *exec.ExitError
			if !errorsAs(err, &ee) {
				t.Fatalf("plugin exited 0 (err %v); stdout %s", err, out)
			}
			var res types.Error
			if jerr := json.Unmarshal(out, &res); jerr != nil {
				t.Fatalf("stdout is not a CNI error: %q (stderr %q)", out, stderr)
			}
			if res.Code != tc.code {
				t.Errorf("code %d, want %d (%s)", res.Code, tc.code, out)
			}
			if !strings.Contains(res.Msg+" "+res.Details, tc.msg) {
				t.Errorf("message %q does not say %q", res.Msg+" "+res.Details, tc.msg)
			}
			e.assertNothingLeft()
			if o, _ := podNS.Exec(ctx(t), "ip", "-o", "link"); strings.Contains(o, "eth0") {
				t.Errorf("pod interface left: %s", o)
			}
		})
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

func TestPoolExhausted(t *testing.T) {
	e := newEnv(t, envOpts{ranges: []map[string]string{{"subnet": "10.77.0.0/29"}}})
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		e.addPod(id)
	}
	_, err := e.node.AddPod(ctx(t), uniq("pod"), "f")
	if err == nil || !strings.Contains(err.Error(), "no free address") || !strings.Contains(err.Error(), "10.77.0.1-10.77.0.6") {
		t.Fatalf("ADD on a full pool = %v, want it to name the full range", err)
	}
	if code := cniCode(t, err); code != 100 {
		t.Errorf("code %d, want 100", code)
	}
	if got := len(e.records()); got != 5 {
		t.Errorf("%d reservations, want the 5 pods'", got)
	}
	if got := len(e.hostVeths()); got != 5 {
		t.Errorf("%d veths, want the 5 pods'", got)
	}
}

func TestRequestedAddress(t *testing.T) {
	e := newEnv(t, envOpts{ranges: []map[string]string{{"subnet": "10.77.0.0/24"}}})
	podNS := e.addPodNS()
	rt := harnessRuntimeConf("pinned", podNS.Path)
	rt.Args = append(rt.Args, [2]string{"IP", "10.77.0.42"})
	res, err := e.node.Add(ctx(t), rt)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.IPs[0].Address.IP.String(); got != "10.77.0.42" {
		t.Fatalf("got %s, want the requested 10.77.0.42", got)
	}
	other := e.addPodNS()
	rt2 := harnessRuntimeConf("second", other.Path)
	rt2.Args = append(rt2.Args, [2]string{"IP", "10.77.0.42"})
	_, err = e.node.Add(ctx(t), rt2)
	if err == nil || !strings.Contains(err.Error(), "10.77.0.42 is already reserved for pinned/eth0") {
		t.Fatalf("second ADD = %v, want it to name the holder", err)
	}
	if code := cniCode(t, err); code != 101 {
		t.Errorf("code %d, want 101", code)
	}
	if got := len(e.hostVeths()); got != 1 {
		t.Errorf("%d veths, want only the first pod's", got)
	}
}

// TestFullDisk puts the data dir on a tiny tmpfs and fills it: ADD must
// fail with a message that says the disk is full and leave nothing, and
// work again once space is freed.
func TestFullDisk(t *testing.T) {
	e := newEnv(t, envOpts{})
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "skein-test-tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	e.dataDir = mnt
	e.node.List.Plugins[0].Bytes = e.pluginStdin(map[string]any{"dataDir": mnt})
	if err := os.MkdirAll(filepath.Join(mnt, netName), 0o700); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	_, err = e.node.AddPod(ctx(t), uniq("pod"), "full")
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("ADD on a full disk = %v, want it to say the disk is full", err)
	}
	if code := cniCode(t, err); code != 102 {
		t.Errorf("code %d, want 102", code)
	}
	e.assertNothingLeft()
	if err := e.node.Status(ctx(t)); err == nil {
		t.Error("STATUS succeeded on a full disk")
	}
	os.Remove(filler)
	p := e.addPod("after")
	if err := p.NS.Ping(ctx(t), "10.77.0.1", 1); err != nil {
		t.Error(err)
	}
}
