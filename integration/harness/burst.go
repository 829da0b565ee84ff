package harness

import (
	"encoding/binary"
	"net"
	"sync"
	"time"

	miekg "github.com/miekg/dns"
)

// PackQuestions is the wire form of a qtype question for each name; the
// first two bytes of each, the ID, are the caller's to set.
func PackQuestions(names []string, qtype uint16) ([][]byte, error) {
	out := make([][]byte, len(names))
	for i, n := range names {
		m := new(miekg.Msg)
		m.SetQuestion(n, qtype)
		b, err := m.Pack()
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// UDPSockets opens k UDP sockets in ns connected to addr.
func UDPSockets(ns *NetNS, addr string, k int) ([]*net.UDPConn, error) {
	conns := make([]*net.UDPConn, 0, k)
	err := ns.Do(func() error {
		raddr, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		for range k {
			c, err := net.DialUDP("udp", nil, raddr)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		CloseAll(conns)
		return nil, err
	}
	return conns, nil
}

// CloseAll closes conns.
func CloseAll(conns []*net.UDPConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// BurstResult is what Burst saw: the time each answered question took,
// the questions never answered, and the last answer's time after the
// burst began.
type BurstResult struct {
	Latencies []time.Duration
	Lost      int
	Last      time.Duration
}

// Burst sends, from ns to the DNS server at addr, an A and an AAAA
// question for each name at once, each pair from a socket of its own as
// a resolver library sends them (glibc sends both back to back from one
// socket), and waits up to wait for the answers.
func Burst(ns *NetNS, addr string, names []string, wait time.Duration) (BurstResult, error) {
	as, err := PackQuestions(names, miekg.TypeA)
	if err != nil {
		return BurstResult{}, err
	}
	aaaas, err := PackQuestions(names, miekg.TypeAAAA)
	if err != nil {
		return BurstResult{}, err
	}
	conns, err := UDPSockets(ns, addr, len(names))
	if err != nil {
		return BurstResult{}, err
	}
	defer CloseAll(conns)
	sent := make([]time.Time, len(names))
	start := time.Now()
	for i, c := range conns {
		binary.BigEndian.PutUint16(as[i], 1)
		binary.BigEndian.PutUint16(aaaas[i], 2)
		sent[i] = time.Now()
		if _, err := c.Write(as[i]); err != nil {
			return BurstResult{}, err
		}
		if _, err := c.Write(aaaas[i]); err != nil {
			return BurstResult{}, err
		}
	}
	var mu sync.Mutex
	var r BurstResult
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			_ = c.SetReadDeadline(start.Add(wait))
			for got := 0; got < 2; got++ {
				if _, err := c.Read(buf); err != nil {
					mu.Lock()
					r.Lost += 2 - got
					mu.Unlock()
					return
				}
				now := time.Now()
				mu.Lock()
				r.Latencies = append(r.Latencies, now.Sub(sent[i]))
				r.Last = max(r.Last, now.Sub(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return r, nil
}
