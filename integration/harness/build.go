package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ReferencePlugins are the containernetworking/plugins binaries tests and
// benchmarks run beside skein, pinned by the tool directives in go.mod.
var ReferencePlugins = []string{
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
	"github.com/containernetworking/plugins/plugins/meta/portmap",
	"github.com/containernetworking/plugins/plugins/meta/bandwidth",
}

// ModuleRoot finds the directory holding go.mod, from the working
// directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Packages of skein's binaries.
const (
	// LoopbackPlugin is shipped in skein's image: containerd 1.x runs it
	// for every pod.
	LoopbackPlugin = "github.com/containernetworking/plugins/plugins/main/loopback"
	SkeinPlugin    = "./plugins/skein"
	Skeind         = "./daemon/cmd/skeind"
)

// BuildPlugins builds packages (static, as `make build` does) into dir;
// with none, skein's plugin and daemon and the reference plugins.
func BuildPlugins(dir string, pkgs ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		pkgs = append([]string{SkeinPlugin, Skeind, LoopbackPlugin}, ReferencePlugins...)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// BuildTemp builds packages (as BuildPlugins) into a new temporary
// directory, named with pattern as os.MkdirTemp does, and returns it; the
// caller removes it.
func BuildTemp(pattern string, pkgs ...string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	if err := BuildPlugins(dir, pkgs...); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}
