// Package ipamtest holds an in-memory ipam.Store for tests.
package ipamtest

import (
	"fmt"
	"io"
	"net/netip"
	"sync"

	"github.com/skein-net/skein/ipam"
)

// Store is an in-memory ipam.Store. Set FailReserve to make every
// Reserve fail, as a full disk would.
type Store struct {
	mu          sync.Mutex
	locked      bool
	recs        map[netip.Addr]ipam.Record
	hmu         sync.Mutex // guards held: a Lease is closed in and out of the lock
	held        map[netip.Addr]bool
	last        map[int]netip.Addr
	FailReserve error
}

// New returns an empty store.
func New() *Store {
	return &Store{recs: map[netip.Addr]ipam.Record{}, held: map[netip.Addr]bool{}, last: map[int]netip.Addr{}}
}

func (s *Store) Lock() error {
	s.mu.Lock()
	s.locked = true
	return nil
}

func (s *Store) Unlock() error {
	if !s.locked {
		return fmt.Errorf("unlock of an unlocked store")
	}
	s.locked = false
	s.mu.Unlock()
	return nil
}

func (s *Store) mustBeLocked() {
	if !s.locked {
		panic("ipamtest: store used without its lock")
	}
}

func (s *Store) Scan(key ipam.Key) ([]netip.Addr, []ipam.Record, error) {
	all, err := s.List()
	var taken []netip.Addr
	var mine []ipam.Record
	for _, r := range all {
		taken = append(taken, r.IP)
		if r.Key == key {
			mine = append(mine, r)
		}
	}
	return taken, mine, err
}

func (s *Store) Tidy() error { return nil }

func (s *Store) List() ([]ipam.Record, error) {
	s.mustBeLocked()
	out := make([]ipam.Record, 0, len(s.recs))
	s.hmu.Lock()
	defer s.hmu.Unlock()
	for ip, r := range s.recs {
		r.Busy = s.held[ip]
		out = append(out, r)
	}
	return out, nil
}

type hold struct {
	s  *Store
	ip netip.Addr
}

// Close drops the hold.
func (h hold) Close() error {
	h.s.hmu.Lock()
	delete(h.s.held, h.ip)
	h.s.hmu.Unlock()
	return nil
}

func (s *Store) Reserve(rec ipam.Record) (io.Closer, error) {
	s.mustBeLocked()
	if s.FailReserve != nil {
		return nil, &ipam.StoreError{Err: s.FailReserve}
	}
	if _, ok := s.recs[rec.IP]; ok {
		return nil, fmt.Errorf("%s: %w", rec.IP, ipam.ErrTaken)
	}
	s.recs[rec.IP] = rec
	return s.Hold(rec.IP)
}

func (s *Store) Hold(ip netip.Addr) (io.Closer, error) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.held[ip] {
		return nil, fmt.Errorf("%s: %w", ip, ipam.ErrBusy)
	}
	s.held[ip] = true
	return hold{s, ip}, nil
}

func (s *Store) Release(rec ipam.Record) error {
	s.mustBeLocked()
	delete(s.recs, rec.IP)
	return nil
}

func (s *Store) LastReserved(family int) (netip.Addr, error) { return s.last[family], nil }

func (s *Store) SetLastReserved(family int, ip netip.Addr) error {
	s.last[family] = ip
	return nil
}

func (s *Store) Writable() error { return s.FailReserve }
