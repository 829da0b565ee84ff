package harness

import (
	"fmt"
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
