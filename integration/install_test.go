package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInstallCNIFullDisk: `skeind install-cni` into a plugin directory
// without room for the new plugin fails with a clear error, and leaves
// the old plugin whole and no temporary file behind.
func TestInstallCNIFullDisk(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	to := filepath.Join(dir, "bin")
	if err := os.Mkdir(to, 0o755); err != nil {
		t.Fatal(err)
	}
	// A 1 MiB file system, smaller than the plugin (several MiB).
	if err := unix.Mount(uniq("tmpfs"), to, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(to, 0); err != nil {
			t.Errorf("unmount %s: %v", to, err)
		}
	})
	old := []byte("#!/bin/sh\necho old\n")
	if err := os.WriteFile(filepath.Join(to, "skein"), old, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(pluginDir, "skeind"), "install-cni",
		"--from", pluginDir, "--to", to, "--plugins", "skein").CombinedOutput()
	if err == nil {
		t.Fatalf("install-cni into a full file system succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "install skein into "+to) || !strings.Contains(string(out), "no space left on device") {
		t.Errorf("the error does not say what failed and why:\n%s", out)
	}
	got, err := os.ReadFile(filepath.Join(to, "skein"))
	if err != nil || string(got) != string(old) {
		t.Errorf("the old plugin was not left whole: %q, %v", got, err)
	}
	entries, _ := os.ReadDir(to)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("left in the plugin directory: %v, want only skein", names)
	}
}
