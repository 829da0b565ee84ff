package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ownerFile marks a directory as made by a running process, with what
// to undo should that process die before it cleans up (a test killed at
// its timeout, a Ctrl-C the process did not see): a real cluster's
// nodes, or a control plane. The next real cluster or control plane
// started on the machine sweeps what such dead owners left.
const ownerFile = "skein-owner"

// MarkOwner records this process (PID and start time: PIDs are reused)
// as dir's owner, with what a sweep needs: "cluster <prefix> <nodes>"
// or "plane".
func MarkOwner(dir string, what ...string) error {
	start, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	line := strings.Join(append([]string{strconv.Itoa(os.Getpid()), start}, what...), " ")
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(line+"\n"), 0o644)
}

// startTime is a process's start time (clock ticks since boot), field
// 22 of /proc/<pid>/stat.
func startTime(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces: count from its end.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return fields[19], nil
}

// SweepOrphans undoes what real clusters and control planes whose owner
// process died left behind: their nodes' processes (killed by the PIDs
// in the nodes' cgroups, which only they use) and cgroups, their network
// namespaces, their control plane's processes (scripts/k8s/stop.sh,
// which checks each PID is that run's) and their directories. A
// directory whose owner lives is left alone.
func SweepOrphans() error {
	var marks []string
	for _, pattern := range []string{"*", "*/*"} {
		m, _ := filepath.Glob(filepath.Join(os.TempDir(), pattern, ownerFile))
		marks = append(marks, m...)
	}
	var errs []error
	for _, mark := range marks {
		data, err := os.ReadFile(mark)
		if err != nil {
			continue // gone meanwhile
		}
		f := strings.Fields(string(data))
		if len(f) < 3 {
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		if start, err := startTime(pid); err == nil && start == f[1] {
			continue // its owner runs
		}
		dir := filepath.Dir(mark)
		if err := sweep(dir, f[2:]); err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

func sweep(dir string, what []string) error {
	var errs []error
	switch {
	case what[0] == "cluster" && len(what) == 3:
		prefix := what[1]
		nodes, _ := strconv.Atoi(what[2])
		for i := 1; i <= nodes; i++ {
			n := &RealNode{Name: fmt.Sprintf("%s-node%d", prefix, i)}
			errs = append(errs, n.stop())
			errs = append(errs, (&NetNS{Name: fmt.Sprintf("%s-n%d", prefix, i)}).Delete())
		}
		errs = append(errs, (&NetNS{Name: prefix + "-ul"}).Delete())
	case what[0] == "plane":
		root, err := ModuleRoot()
		if err != nil {
			return err
		}
		stop := exec.Command(filepath.Join(root, "scripts/k8s/stop.sh"))
		stop.Env = append(os.Environ(), "SKEIN_K8S_RUN="+dir, "WIPE=1")
		if out, err := stop.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("stop its control plane: %v\n%s", err, out))
		}
	default:
		return fmt.Errorf("unknown owner record %q", what)
	}
	if err := errors.Join(errs...); err != nil {
		return err // the directory stays, to try again
	}
	return os.RemoveAll(dir)
}
