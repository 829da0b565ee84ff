package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockTimeout bounds how long a call waits for another to finish
// with the store before it answers "try again later".
const DefaultLockTimeout = 30 * time.Second

const (
	lockFile   = "lock"
	lastPrefix = "last_reserved_ipv"
	tmpPrefix  = ".tmp-"
)

// Disk is the on-disk Store: one file per reserved address, named by the
// address, in a directory of its own (mode 0700, files 0600).
type Disk struct {
	dir         string
	lockTimeout time.Duration
	held        *os.File // the lock file while the lock is held
}

// OpenDisk creates dir if needed. It takes no lock.
func OpenDisk(dir string, lockTimeout time.Duration) (*Disk, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, storeErr(fmt.Errorf("create data dir: %w", err))
	}
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	return &Disk{dir: dir, lockTimeout: lockTimeout}, nil
}

// Dir returns the store's directory.
func (d *Disk) Dir() string { return d.dir }

// Close drops the lock if it is held.
func (d *Disk) Close() error {
	if d.held == nil {
		return nil
	}
	return d.Unlock()
}

// Lock takes the store's exclusive lock, waiting at most the lock timeout.
// A blocking flock wakes as soon as the holder lets go, which polling
// would not. Each call locks a descriptor of its own, so a waiter that
// timed out can be abandoned: it closes its descriptor, and so drops the
// lock, whenever its flock returns.
func (d *Disk) Lock() error {
	name := filepath.Join(d.dir, lockFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return storeErr(fmt.Errorf("open lock file: %w", err))
	}
	done := make(chan error, 1)
	go func() { done <- flock(f, unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return storeErr(fmt.Errorf("lock %s: %w", name, err))
		}
		d.held = f
		return nil
	case <-time.After(d.lockTimeout):
		go func() {
			<-done
			f.Close()
		}()
		return fmt.Errorf("%w %s after %s", ErrLockTimeout, name, d.lockTimeout)
	}
}

// Unlock drops the store's lock.
func (d *Disk) Unlock() error {
	if d.held == nil {
		return storeErr(errors.New("unlock: lock not held"))
	}
	f := d.held
	d.held = nil
	uerr := flock(f, unix.LOCK_UN)
	cerr := f.Close()
	if err := errors.Join(uerr, cerr); err != nil {
		return storeErr(fmt.Errorf("unlock %s: %w", f.Name(), err))
	}
	return nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// List reads every record. A record that cannot be parsed is returned
// with Corrupt set rather than failing the listing: one bad file must not
// stop every pod on the node from getting an address.
func (d *Disk) List() ([]Record, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, storeErr(fmt.Errorf("read data dir: %w", err))
	}
	var out []Record
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		rec, err := d.read(ip)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, storeErr(err)
		}
		out = append(out, rec)
	}
	return out, nil
}

func (d *Disk) read(ip netip.Addr) (Record, error) {
	f, err := os.Open(d.path(ip))
	if err != nil {
		return Record{}, err
	}
	defer f.Close()
	rec := Record{IP: ip}
	// A shared lock that cannot be had means an ADD holds the record.
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err {
	case nil:
	case unix.EWOULDBLOCK:
		rec.Busy = true
	default:
		return Record{}, fmt.Errorf("lock record %s: %w", ip, err)
	}
	if st, err := f.Stat(); err == nil {
		rec.Written = st.ModTime()
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return Record{}, fmt.Errorf("read record %s: %w", ip, err)
	}
	if err := json.Unmarshal(data, &rec); err != nil || rec.Key.ContainerID == "" || rec.Key.IfName == "" {
		rec.Corrupt = true
	}
	return rec, nil
}

func (d *Disk) path(ip netip.Addr) string { return filepath.Join(d.dir, ip.String()) }

// Reserve writes the record to a temporary file, locks it and links it
// into place: link fails if the name exists, so the address is taken
// atomically, and no process ever sees the record half-written.
//
// It is not synced to disk. A reservation only matters while its pod
// lives, and a crash of the node ends every pod on it: a record lost then
// frees a dead pod's address, and one left empty by a power cut is
// unreadable and released by GC as written before the boot. The sync cost
// as much as the rest of the allocation together.
func (d *Disk) Reserve(rec Record) (io.Closer, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(d.dir, tmpPrefix)
	if err != nil {
		return nil, storeErr(fmt.Errorf("reserve %s: %w", rec.IP, err))
	}
	defer os.Remove(tmp.Name())
	fail := func(err error) (io.Closer, error) {
		tmp.Close()
		return nil, storeErr(fmt.Errorf("reserve %s: %w", rec.IP, err))
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	if err := flock(tmp, unix.LOCK_EX); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := os.Link(tmp.Name(), d.path(rec.IP)); err != nil {
		if errors.Is(err, os.ErrExist) {
			tmp.Close()
			return nil, fmt.Errorf("%s: %w", rec.IP, ErrTaken)
		}
		return fail(err)
	}
	return tmp, nil
}

// Hold locks an existing record for the caller's ADD.
func (d *Disk) Hold(ip netip.Addr) (io.Closer, error) {
	f, err := os.Open(d.path(ip))
	if err != nil {
		return nil, storeErr(fmt.Errorf("hold %s: %w", ip, err))
	}
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
		return f, nil
	case unix.EWOULDBLOCK:
		f.Close()
		return nil, fmt.Errorf("%s: %w", ip, ErrBusy)
	default:
		f.Close()
		return nil, storeErr(fmt.Errorf("hold %s: %w", ip, err))
	}
}

// Release removes the record; a missing one is no error.
func (d *Disk) Release(ip netip.Addr) error {
	if err := os.Remove(d.path(ip)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return storeErr(fmt.Errorf("release %s: %w", ip, err))
	}
	return nil
}

// LastReserved returns the address last handed out in the family, or the
// zero Addr if none was or the hint is unreadable (it only steers next-fit).
func (d *Disk) LastReserved(family int) (netip.Addr, error) {
	data, err := os.ReadFile(filepath.Join(d.dir, lastPrefix+strconv.Itoa(family)))
	if errors.Is(err, os.ErrNotExist) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, storeErr(fmt.Errorf("read last reserved: %w", err))
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(data)))
	if err != nil {
		return netip.Addr{}, nil
	}
	return a, nil
}

// SetLastReserved records the next-fit position, atomically by rename. It
// is not synced: losing it after a crash only restarts next-fit at the
// start of the range.
func (d *Disk) SetLastReserved(family int, ip netip.Addr) error {
	tmp, err := os.CreateTemp(d.dir, tmpPrefix)
	if err != nil {
		return storeErr(fmt.Errorf("write last reserved: %w", err))
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(ip.String())
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return storeErr(fmt.Errorf("write last reserved: %w", err))
	}
	if err := os.Rename(tmp.Name(), filepath.Join(d.dir, lastPrefix+strconv.Itoa(family))); err != nil {
		return storeErr(fmt.Errorf("write last reserved: %w", err))
	}
	return nil
}

// Writable creates, writes, syncs and removes a probe file.
func (d *Disk) Writable() error {
	tmp, err := os.CreateTemp(d.dir, tmpPrefix)
	if err != nil {
		return storeErr(fmt.Errorf("data dir %s is not writable: %w", d.dir, err))
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(`{"probe":true}`)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return storeErr(fmt.Errorf("data dir %s is not writable: %w", d.dir, err))
	}
	return nil
}
