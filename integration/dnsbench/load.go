package main

// The load generator speaks DNS over raw connected UDP sockets with each
// question packed once, and reads only the answer's header: a client
// that unpacked every answer would run out of CPU before a server does.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/skein-net/skein/integration/harness"
)

// loadRun is one throughput run's figures.
type loadRun struct {
	server, what, how string
	throughputResult
	syncs string // what the server did during the run (see during)

}

type throughputResult struct {
	qps  float64
	lat  []time.Duration
	lost int
}

// exchange sends q with id on c and waits for its answer until deadline,
// skipping late answers to earlier questions. It returns the answer's
// rcode and answer count; ok is false when none came.
func exchange(c *net.UDPConn, q []byte, id uint16, buf []byte, deadline time.Time) (rcode, answers int, ok bool, err error) {
	binary.BigEndian.PutUint16(q, id)
	if _, err := c.Write(q); err != nil {
		return 0, 0, false, err
	}
	_ = c.SetReadDeadline(deadline)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
				return 0, 0, false, nil
			}
			return 0, 0, false, err
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != id {
			continue
		}
		return int(buf[3] & 0x0f), int(binary.BigEndian.Uint16(buf[6:])), true, nil
	}
}

// throughput asks names in turn from workers sockets, each with one
// question in flight, for d (or, when count is set, count questions in
// all). Every answer must be NOERROR with at least one record.
func throughput(ns *harness.NetNS, addr string, names []string, workers int, d time.Duration, count int) (throughputResult, error) {
	qs, err := harness.PackQuestions(names, miekg.TypeA)
	if err != nil {
		return throughputResult{}, err
	}
	conns, err := harness.UDPSockets(ns, addr, workers)
	if err != nil {
		return throughputResult{}, err
	}
	defer harness.CloseAll(conns)
	lats := make([][]time.Duration, workers)
	lost := make([]int, workers)
	errs := make([]error, workers)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for w, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			q := make([]byte, 512)
			for k := 0; ; k++ {
				i := w + k*workers
				if (count > 0 && i >= count) || (count == 0 && time.Now().After(end)) {
					return
				}
				msg := q[:copy(q, qs[i%len(qs)])]
				t0 := time.Now()
				rcode, answers, ok, err := exchange(c, msg, uint16(k), buf, t0.Add(time.Second))
				switch {
				case err != nil:
					errs[w] = err
					return
				case !ok:
					lost[w]++
				case rcode != miekg.RcodeSuccess || answers == 0:
					errs[w] = fmt.Errorf("%s: %s with %d answers", names[i%len(names)], miekg.RcodeToString[rcode], answers)
					return
				default:
					lats[w] = append(lats[w], time.Since(t0))
				}
			}
		}()
	}
	wg.Wait()
	var r throughputResult
	var failed []error
	for w := range workers {
		r.lat = append(r.lat, lats[w]...)
		r.lost += lost[w]
		if errs[w] != nil {
			failed = append(failed, errs[w])
		}
	}
	r.qps = float64(len(r.lat)) / time.Since(start).Seconds()
	return r, joinErr(failed)
}

// untilAnswered asks for name's A record every -poll, as a client
// retrying would, until it is answered with an address, and returns the
// time since t0.
func untilAnswered(ctx context.Context, ns *harness.NetNS, addr, name string, t0 time.Time) (time.Duration, error) {
	qs, err := harness.PackQuestions([]string{name}, miekg.TypeA)
	if err != nil {
		return 0, err
	}
	conns, err := harness.UDPSockets(ns, addr, 1)
	if err != nil {
		return 0, err
	}
	defer harness.CloseAll(conns)
	buf := make([]byte, 4096)
	for id := uint16(1); time.Since(t0) < 5*time.Minute; id++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		asked := time.Now()
		rcode, answers, ok, err := exchange(conns[0], qs[0], id, buf, asked.Add(50*time.Millisecond))
		if err != nil && !errors.Is(err, syscall.ECONNREFUSED) { // refused: not listening yet
			return 0, err
		}
		if ok && rcode == miekg.RcodeSuccess && answers > 0 {
			return time.Since(t0), nil
		}
		time.Sleep(time.Until(asked.Add(*poll)))
	}
	return 0, fmt.Errorf("%s not answered after 5 minutes", name)
}

// paced sends A questions for names in turn at rate per second, spread
// over workers sockets, for d, whatever the answers do (an open loop: a
// slow answer does not slow the questions), and times each answer.
func paced(ns *harness.NetNS, addr string, names []string, rate float64, d time.Duration) (throughputResult, error) {
	const workers = 32
	qs, err := harness.PackQuestions(names, miekg.TypeA)
	if err != nil {
		return throughputResult{}, err
	}
	per := int(rate * d.Seconds() / workers)
	if per >= 1<<16 {
		return throughputResult{}, fmt.Errorf("%d questions per socket do not fit in 16-bit IDs", per)
	}
	conns, err := harness.UDPSockets(ns, addr, workers)
	if err != nil {
		return throughputResult{}, err
	}
	defer harness.CloseAll(conns)
	interval := time.Duration(float64(time.Second) * workers / rate)
	lats := make([][]time.Duration, workers)
	answered := make([]int, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for w, c := range conns {
		sent := make([]atomic.Int64, per)
		wg.Add(2)
		go func() { // the sender
			defer wg.Done()
			q := make([]byte, 512)
			for k := range per {
				at := start.Add(time.Duration(k)*interval + time.Duration(w)*interval/workers)
				time.Sleep(time.Until(at))
				msg := q[:copy(q, qs[(w+k*workers)%len(qs)])]
				binary.BigEndian.PutUint16(msg, uint16(k))
				sent[k].Store(time.Now().UnixNano())
				_, _ = c.Write(msg)
			}
		}()
		go func() { // the receiver
			defer wg.Done()
			buf := make([]byte, 4096)
			_ = c.SetReadDeadline(start.Add(d + time.Second))
			for answered[w] < per {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				if n < 12 {
					continue
				}
				id := int(binary.BigEndian.Uint16(buf))
				if id >= per {
					continue
				}
				if t := sent[id].Load(); t != 0 {
					lats[w] = append(lats[w], time.Duration(now-t))
					answered[w]++
				}
			}
		}()
	}
	wg.Wait()
	r := throughputResult{lost: per * workers}
	for w := range workers {
		r.lat = append(r.lat, lats[w]...)
		r.lost -= answered[w]
	}
	r.qps = float64(per*workers) / d.Seconds()
	return r, nil
}
