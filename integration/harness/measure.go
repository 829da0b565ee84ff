package harness

import (
	"context"
	"fmt"
	"maps"
	"math"
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
		for range k {
			t, err := dialOnce(&net.Dialer{Timeout: 2 * time.Second}, addr)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// dialOnce times one TCP connect and closes the connection with a reset,
// so that neither end keeps it in TIME_WAIT: over thousands of connects
// the ephemeral ports come round again, and a SYN meeting an earlier
// connection's conntrack entry on the same ports pays for removing it.
func dialOnce(d *net.Dialer, addr string) (time.Duration, error) {
	t0 := time.Now()
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w", addr, err)
	}
	took := time.Since(t0)
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
	return took, nil
}

// FirstPacket times k TCP connects from the bench node's client pod to a
// Service address and k to the server pod directly, alternating one and
// one so that both see the same moment of the machine. The two series
// leave from different client addresses: sharing one, a connect straight
// to the server could reuse the ports of an earlier connection through
// the Service and match its NATed reply tuple in conntrack.
func (n *BenchNode) FirstPacket(service string, k int) (via, direct []time.Duration, err error) {
	toService := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(BenchClientIP)}}
	toServer := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(BenchDirectClientIP)}}
	err = n.Client.Do(func() error {
		for range k {
			v, err := dialOnce(toService, service)
			if err != nil {
				return err
			}
			d, err := dialOnce(toServer, BenchServerIP+":8080")
			if err != nil {
				return err
			}
			via, direct = append(via, v), append(direct, d)
		}
		return nil
	})
	return via, direct, err
}

// HistogramTotals reads a Prometheus histogram's count and sum (in
// seconds, summed over its labels) from the metrics at url, asked from
// inside ns.
func HistogramTotals(ctx context.Context, ns *NetNS, url, metric string) (int, time.Duration, error) {
	code, body, err := ns.HTTPGet(ctx, url)
	if err != nil || code != 200 {
		return 0, 0, fmt.Errorf("metrics at %s: %d %v", url, code, err)
	}
	var count, sum float64
	for _, l := range strings.Split(body, "\n") {
		var v float64
		if rest, ok := strings.CutPrefix(l, metric+"_sum"); ok {
			_, _ = fmt.Sscan(rest[strings.LastIndex(rest, " ")+1:], &v)
			sum += v
		} else if rest, ok := strings.CutPrefix(l, metric+"_count"); ok {
			_, _ = fmt.Sscan(rest[strings.LastIndex(rest, " ")+1:], &v)
			count += v
		}
	}
	return int(count), time.Duration(sum * float64(time.Second)), nil
}

// Buckets is a Prometheus histogram's cumulative counts by upper bound
// (+Inf included), summed over its label sets.
type Buckets map[float64]float64

// HistogramBuckets reads a histogram's buckets from a /metrics page
// served in ns.
func HistogramBuckets(ctx context.Context, ns *NetNS, url, metric string) (Buckets, error) {
	code, body, err := ns.HTTPGet(ctx, url)
	if err != nil || code != 200 {
		return nil, fmt.Errorf("metrics at %s: %d %v", url, code, err)
	}
	out := Buckets{}
	for _, l := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(l, metric+"_bucket{")
		if !ok {
			continue
		}
		_, le, ok := strings.Cut(rest, `le="`)
		if !ok {
			continue
		}
		bound, _, _ := strings.Cut(le, `"`)
		var upper, v float64
		if bound == "+Inf" {
			upper = math.Inf(1)
		} else if _, err := fmt.Sscan(bound, &upper); err != nil {
			continue
		}
		if _, err := fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &v); err != nil {
			continue
		}
		out[upper] += v
	}
	return out, nil
}

// Since is what the histogram counted after before was read.
func (b Buckets) Since(before Buckets) Buckets {
	out := Buckets{}
	for le, v := range b {
		out[le] = v - before[le]
	}
	return out
}

// Count is how many observations the histogram holds.
func (b Buckets) Count() int { return int(b[math.Inf(1)]) }

// Quantile estimates the q-quantile (0 to 1) as Prometheus's
// histogram_quantile does: linearly within the bucket it falls in; in
// the +Inf bucket, the highest finite bound. NaN when empty.
func (b Buckets) Quantile(q float64) float64 {
	bounds := slices.Sorted(maps.Keys(b))
	total := b[math.Inf(1)]
	if total == 0 || len(bounds) == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		if b[le] >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if b[le] == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(b[le]-below)
		}
		lower, below = le, b[le]
	}
	return lower
}
