package harness

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0-100) of d, nearest rank.
func Percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// PeakRSS returns a process's peak resident set size in KiB (VmHWM), or
// 0 when it cannot be read.
func PeakRSS(pid int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kib int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
			return kib
		}
	}
	return 0
}

// CPUSeconds returns the user plus system CPU time a process has used,
// or 0 when it cannot be read.
func CPUSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th (fields 14 and 15 of proc(5)).
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	var user, sys float64
	fmt.Sscan(fields[11], &user)
	fmt.Sscan(fields[12], &sys)
	return (user + sys) / 100 // USER_HZ, 100 on Linux
}

// DialTimes connects k times from ns to addr over TCP and returns each
// connect's time.
func DialTimes(ns *NetNS, addr string, k int) ([]time.Duration, error) {
	var out []time.Duration
	err := ns.Do(func() error {
		for i := 0; i < k; i++ {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return fmt.Errorf("connect %d to %s: %w", i, addr, err)
			}
			out = append(out, time.Since(t0))
			c.Close()
		}
		return nil
	})
	return out, err
}
