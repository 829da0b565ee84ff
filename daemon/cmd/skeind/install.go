package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/skein-net/skein/daemon/install"
)

// installCNI copies the CNI plugins shipped beside skeind into the
// runtime's plugin directory: the DaemonSet's init container runs it on
// every node before skeind starts. The conflist is left to skeind.
func installCNI(log *slog.Logger, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find skeind's own directory: %w", err)
	}
	fs := flag.NewFlagSet("skeind install-cni", flag.ContinueOnError)
	from := fs.String("from", filepath.Dir(self), "directory holding the plugins to install")
	to := fs.String("to", "/opt/cni/bin", "the container runtime's CNI plugin directory")
	names := fs.String("plugins", "skein,portmap,loopback", "comma-separated plugins to install (the conflist chains portmap; containerd 1.x runs loopback for every pod's lo)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("install-cni takes no arguments, got %q", fs.Args())
	}
	o := install.Options{From: *from, To: *to}
	for _, n := range strings.Split(*names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.Names = append(o.Names, n)
		}
	}
	if len(o.Names) == 0 {
		return errors.New("--plugins names no plugin")
	}
	res, err := install.Install(o)
	if len(res.Installed) > 0 || err == nil {
		log.Info("CNI plugins", "dir", *to, "installed", res.Installed, "unchanged", res.Unchanged)
	}
	return err
}
