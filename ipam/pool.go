package ipam

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/skein-net/skein/conf"
)

// Pool hands out one network's addresses from a Store.
type Pool struct {
	net      *conf.Network
	store    Store
	bootTime time.Time
}

// New returns the pool of network n, kept in s.
func New(n *conf.Network, s Store) *Pool { return &Pool{net: n, store: s} }

// WithBootTime tells the pool when the node booted: no attachment made
// before then can still be alive, so Collect releases unreadable records
// written before it.
func (p *Pool) WithBootTime(t time.Time) *Pool {
	p.bootTime = t
	return p
}

// Lease is the addresses of one attachment, one per configured family,
// IPv4 first. It holds the records in flight until Close.
type Lease struct {
	Records []Record
	holds   []io.Closer
}

// Close ends the in-flight hold; garbage collection may then judge the
// attachment by the runtime's list alone.
func (l *Lease) Close() error {
	var errs []error
	for _, h := range l.holds {
		errs = append(errs, h.Close())
	}
	l.holds = nil
	return errors.Join(errs...)
}

// Range returns the configured range that holds ip.
func (p *Pool) Range(ip netip.Addr) (conf.Range, bool) {
	return familyOf(p.net, conf.Family(ip)).rangeOf(ip)
}

func (p *Pool) families() []int {
	var out []int
	for _, fam := range []int{4, 6} {
		if p.net.HasFamily(fam) {
			out = append(out, fam)
		}
	}
	return out
}

func (p *Pool) locked(fn func() error) error {
	if err := p.store.Lock(); err != nil {
		return err
	}
	err := fn()
	if uerr := p.store.Unlock(); uerr != nil {
		return errors.Join(err, uerr)
	}
	return err
}

// Allocate gives key one address per family, or the addresses it already
// holds (a repeated ADD gets the same answer). requested pins the address
// of its family.
func (p *Pool) Allocate(key Key, link string, requested []netip.Addr) (*Lease, error) {
	lease := &Lease{}
	err := p.locked(func() error {
		takenList, mine, err := p.store.Scan(key)
		if err != nil {
			return err
		}
		taken := make(map[netip.Addr]bool, len(takenList))
		for _, ip := range takenList {
			taken[ip] = true
		}
		var fresh []Record
		for _, fam := range p.families() {
			rec, hold, isNew, err := p.allocateFamily(fam, key, link, requested, mine, taken)
			if err != nil {
				// Give back what this call reserved, so nothing is left
				// behind. Records the key held before stay: a failed
				// repeat ADD must not free an attachment that works.
				errs := []error{err, lease.Close()}
				for _, r := range fresh {
					errs = append(errs, p.store.Release(r))
				}
				return errors.Join(errs...)
			}
			if isNew {
				fresh = append(fresh, rec)
			}
			lease.Records = append(lease.Records, rec)
			lease.holds = append(lease.holds, hold)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lease, nil
}

func (p *Pool) allocateFamily(fam int, key Key, link string, requested []netip.Addr, mine []Record, taken map[netip.Addr]bool) (rec Record, hold io.Closer, isNew bool, err error) {
	f := familyOf(p.net, fam)
	var want netip.Addr
	for _, a := range requested {
		if conf.Family(a) == fam {
			want = a
		}
	}
	for _, r := range mine {
		if conf.Family(r.IP) != fam {
			continue
		}
		if want.IsValid() && want != r.IP {
			return Record{}, nil, false, &UnavailableError{want, fmt.Sprintf("differs from %s, which %s/%s already holds", r.IP, key.ContainerID, key.IfName)}
		}
		hold, err := p.store.Hold(r.IP)
		if err != nil {
			return Record{}, nil, false, err
		}
		return r, hold, false, nil
	}
	rec = Record{Key: key, Link: link}
	if want.IsValid() {
		if _, err := f.check(want); err != nil {
			return Record{}, nil, false, err
		}
		if taken[want] {
			return Record{}, nil, false, &UnavailableError{want, p.holder(want)}
		}
		rec.IP = want
	} else {
		last, err := p.store.LastReserved(fam)
		if err != nil {
			return Record{}, nil, false, err
		}
		if rec.IP, err = f.next(func(a netip.Addr) bool { return taken[a] }, last); err != nil {
			return Record{}, nil, false, fmt.Errorf("IPv%d ranges %s: %w", fam, describe(f), err)
		}
	}
	hold, err = p.store.Reserve(rec)
	if err != nil {
		return Record{}, nil, false, err
	}
	taken[rec.IP] = true
	if !want.IsValid() {
		if err := p.store.SetLastReserved(fam, rec.IP); err != nil {
			return Record{}, nil, false, errors.Join(err, hold.Close(), p.store.Release(rec))
		}
	}
	return rec, hold, true, nil
}

// holder says who holds ip, for an error message: it reads every record,
// which only a failed request pays for.
func (p *Pool) holder(ip netip.Addr) string {
	all, _ := p.store.List()
	for _, r := range all {
		if r.IP == ip && !r.Corrupt {
			return fmt.Sprintf("is already reserved for %s/%s", r.Key.ContainerID, r.Key.IfName)
		}
	}
	return "is already reserved"
}

func describe(f family) string {
	s := ""
	for i, r := range f.ranges {
		if i > 0 {
			s += ","
		}
		s += r.Start.String() + "-" + r.End.String()
	}
	return s
}

// Lookup returns the records key holds.
func (p *Pool) Lookup(key Key) ([]Record, error) {
	var out []Record
	err := p.locked(func() error {
		var err error
		_, out, err = p.store.Scan(key)
		return err
	})
	sortRecords(out)
	return out, err
}

// Release frees every address key holds. Releasing twice is no error.
func (p *Pool) Release(key Key) ([]Record, error) {
	var out []Record
	err := p.locked(func() error {
		var err error
		if _, out, err = p.store.Scan(key); err != nil {
			return err
		}
		var errs []error
		for _, r := range out {
			errs = append(errs, p.store.Release(r))
		}
		return errors.Join(errs...)
	})
	return out, err
}

// GCReport is what a collection did.
type GCReport struct {
	Released []Record
	// Busy are records outside the valid set kept because their ADD still
	// runs; Corrupt are unreadable records written since the boot, kept
	// because their owner is unknown (an operator removes them once no pod
	// uses the address).
	Busy    []Record
	Corrupt []Record
	// NotFile are names of the data dir that look like an address but are
	// not regular files (a directory, a FIFO, ...): left alone, and their
	// addresses treated as taken, until an operator removes them.
	NotFile []Record
}

// Collect releases every record whose key is not in valid and whose ADD
// is not running. sweep, when not nil, runs before the lock is dropped
// with the links of the records kept (valid or busy) and of those
// released, so that it can remove the host interfaces of collected
// attachments without racing an ADD that would reserve and create one
// meanwhile.
func (p *Pool) Collect(valid map[Key]bool, sweep func(keep, drop map[string]bool) error) (GCReport, error) {
	var rep GCReport
	err := p.locked(func() error {
		all, err := p.store.List()
		if err != nil {
			return err
		}
		keep, drop := map[string]bool{}, map[string]bool{}
		var errs []error
		for _, r := range all {
			switch {
			case r.NotFile:
				rep.NotFile = append(rep.NotFile, r)
			case r.Corrupt && (r.Busy || p.bootTime.IsZero() || !r.Written.Before(p.bootTime)):
				rep.Corrupt = append(rep.Corrupt, r)
			case valid[r.Key]:
				keep[r.Link] = true
			case r.Busy:
				rep.Busy = append(rep.Busy, r)
				keep[r.Link] = true
			default:
				if err := p.store.Release(r); err != nil {
					errs = append(errs, err)
					keep[r.Link] = true
					continue
				}
				rep.Released = append(rep.Released, r)
				drop[r.Link] = true
			}
		}
		errs = append(errs, p.store.Tidy())
		if sweep != nil {
			errs = append(errs, sweep(keep, drop))
		}
		return errors.Join(errs...)
	})
	return rep, err
}

// Available returns nil when an ADD could be served now: the store can be
// written and every family has a free address.
func (p *Pool) Available() error {
	return p.locked(func() error {
		if err := p.store.Writable(); err != nil {
			return err
		}
		all, _, err := p.store.Scan(Key{})
		if err != nil {
			return err
		}
		taken := make(map[netip.Addr]bool, len(all))
		for _, ip := range all {
			taken[ip] = true
		}
		for _, fam := range p.families() {
			f := familyOf(p.net, fam)
			if _, err := f.next(func(a netip.Addr) bool { return taken[a] }, netip.Addr{}); err != nil {
				return fmt.Errorf("IPv%d ranges %s: %w (%d addresses reserved)", fam, describe(f), err, countFamily(all, fam))
			}
		}
		return nil
	})
}

func countFamily(all []netip.Addr, fam int) int {
	n := 0
	for _, ip := range all {
		if conf.Family(ip) == fam {
			n++
		}
	}
	return n
}
func sortRecords(rs []Record) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].IP.Less(rs[j].IP) })
}
