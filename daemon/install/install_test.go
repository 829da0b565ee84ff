package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// plugin writes an executable script to dir/name that prints version as
// its last act; a reader of a half-written copy prints nothing.
func plugin(t *testing.T, dir, name, version string) {
	t.Helper()
	body := "#!/bin/sh\n" + strings.Repeat("# padding so a copy takes more than one write\n", 20000) + "echo " + version + "\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInstall(t *testing.T) {
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "opt", "cni", "bin")
	plugin(t, from, "skein", "v1")
	plugin(t, from, "portmap", "p1")
	o := Options{From: from, To: to, Names: []string{"skein", "portmap"}}

	res, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Installed: []string{"skein", "portmap"}}, res); diff != "" {
		t.Errorf("first install (-want +got):\n%s", diff)
	}
	if out := run(t, filepath.Join(to, "skein")); out != "v1" {
		t.Errorf("installed skein prints %q, want v1", out)
	}
	before, _ := os.Stat(filepath.Join(to, "skein"))

	res, err = Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Unchanged: []string{"skein", "portmap"}}, res); diff != "" {
		t.Errorf("second install (-want +got):\n%s", diff)
	}
	if after, _ := os.Stat(filepath.Join(to, "skein")); !os.SameFile(before, after) {
		t.Error("an unchanged binary was rewritten")
	}

	plugin(t, from, "skein", "v2")
	res, err = Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Installed: []string{"skein"}, Unchanged: []string{"portmap"}}, res); diff != "" {
		t.Errorf("upgrade (-want +got):\n%s", diff)
	}
	if out := run(t, filepath.Join(to, "skein")); out != "v2" {
		t.Errorf("upgraded skein prints %q, want v2", out)
	}
	if left := leftovers(t, to); len(left) > 0 {
		t.Errorf("temporary files left in the plugin directory: %v", left)
	}
}

func TestInstallRefusesBeforeWriting(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	plugin(t, from, "skein", "v1")
	for _, tc := range []struct {
		name  string
		names []string
		want  string
	}{
		{"missing binary", []string{"skein", "portmap"}, "install portmap: stat " + filepath.Join(from, "portmap") + ": no such file or directory"},
		{"path, not a name", []string{"../skein"}, `install "../skein": not a plain file name`},
		{"empty name", []string{""}, `install "": not a plain file name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Install(Options{From: from, To: to, Names: tc.names})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
			if entries, _ := os.ReadDir(to); len(entries) > 0 {
				t.Errorf("wrote %v before refusing", entries)
			}
		})
	}
}

// TestInstallWhileExecuted replaces a plugin over and over while another
// process executes it in a loop, as containerd does on a busy node during
// an upgrade: every run must execute a whole binary, old or new. (The
// runner is one shell started before any install: a child forked by this
// process could inherit the temporary file's write descriptor and make
// the exec fail with "text file busy", which no runtime would see.)
func TestInstallWhileExecuted(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	plugin(t, from, "skein", "v0")
	o := Options{From: from, To: to, Names: []string{"skein"}}
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	loop := exec.Command("sh", "-c", `end=$(($(date +%s) + 3)); while [ "$(date +%s)" -lt $end ]; do echo "run:$(./skein 2>&1)"; done`)
	loop.Dir = to
	var out strings.Builder
	loop.Stdout, loop.Stderr = &out, &out
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- loop.Wait() }()
	installs := 0
	for running := true; running; installs++ {
		plugin(t, from, "skein", "v"+strings.Repeat("x", installs%7))
		if _, err := Install(o); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the runner failed: %v\n%s", err, out.String())
			}
			running = false
		default:
		}
	}
	runs := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, r := range runs {
		if !strings.HasPrefix(r, "run:v") {
			t.Errorf("a run during the installs printed %q", r)
		}
	}
	if len(runs) < 10 || installs < 10 {
		t.Fatalf("only %d runs during %d installs", len(runs), installs)
	}
	t.Logf("%d runs during %d installs", len(runs), installs)
}

func run(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command(path).Output()
	if err != nil {
		t.Fatalf("run %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			left = append(left, e.Name())
		}
	}
	return left
}
