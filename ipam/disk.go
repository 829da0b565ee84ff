package ipam

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skein-net/skein/conf"
)

// DefaultLockTimeout bounds how long a call waits for another to finish
// with the store before it answers "try again later".
const DefaultLockTimeout = 30 * time.Second

const (
	lockFile    = "lock"
	tmpPrefix   = ".tmp-"
	indexPrefix = "k."
)

// Disk is the on-disk Store, in a directory of its own (mode 0700, files
// 0600). Each reserved address is a file named by the address, holding
// its Record, with a second name (a hard link) that indexes it by
// attachment: "k.<hash of container ID and ifname>.<address>". One
// directory read so tells which addresses are taken and which one an
// attachment holds, without opening every record.
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
			if <-done == nil {
				// It got the lock after all: give it back. Closing the
				// descriptor would too; this says so.
				_ = flock(f, unix.LOCK_UN)
			}
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

// dropTemp removes a temporary file. One that stays behind (the removal
// failed, or the process died first) is removed by Tidy on the next GC.
func dropTemp(name string) { _ = os.Remove(name) }

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

// keyHash names an attachment in the index.
func keyHash(k Key) string {
	sum := sha256.Sum256([]byte(k.ContainerID + "\x00" + k.IfName))
	return hex.EncodeToString(sum[:16])
}

func (d *Disk) path(ip netip.Addr) string { return filepath.Join(d.dir, ip.String()) }

func (d *Disk) indexPath(k Key, ip netip.Addr) string {
	return filepath.Join(d.dir, indexPrefix+keyHash(k)+"."+ip.String())
}

// names reads the directory once: the reserved addresses, and the index
// entries as hash -> addresses.
func (d *Disk) names() (taken []netip.Addr, index map[string][]netip.Addr, err error) {
	entries, err := readNames(d.dir)
	if err != nil {
		return nil, nil, storeErr(fmt.Errorf("read data dir: %w", err))
	}
	index = map[string][]netip.Addr{}
	for _, name := range entries {
		if rest, ok := strings.CutPrefix(name, indexPrefix); ok {
			hash, ipStr, ok := strings.Cut(rest, ".")
			if ip, err := netip.ParseAddr(ipStr); ok && err == nil {
				index[hash] = append(index[hash], ip)
			}
			continue
		}
		if ip, err := netip.ParseAddr(name); err == nil {
			taken = append(taken, ip)
		}
	}
	return taken, index, nil
}

// readNames lists a directory's names, unsorted: cheaper than
// os.ReadDir, which every ADD and DEL would pay for.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// Scan lists the reserved addresses from one directory read, and reads
// only the records the index names for key. An index entry whose record
// is gone or belongs to another attachment is ignored (Tidy removes it).
func (d *Disk) Scan(key Key) (taken []netip.Addr, mine []Record, err error) {
	taken, index, err := d.names()
	if err != nil {
		return nil, nil, err
	}
	for _, ip := range index[keyHash(key)] {
		rec, err := d.read(ip)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, storeErr(err)
		}
		if !rec.Corrupt && rec.Key == key {
			mine = append(mine, rec)
		}
	}
	return taken, mine, nil
}

// List reads every record. A record that cannot be parsed is returned
// with Corrupt set, and a name that is not a regular file with NotFile,
// rather than failing the listing: one bad file must not stop every pod
// on the node from getting an address.
func (d *Disk) List() ([]Record, error) {
	taken, _, err := d.names()
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, ip := range taken {
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
	f, err := openRecord(d.path(ip))
	if errors.Is(err, errNotFile) {
		return Record{IP: ip, NotFile: true}, nil
	}
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

// Reserve writes the record to a temporary file, locks it and links it
// into place, then into the index: link fails if the name exists, so the
// address is taken atomically, and no process ever sees the record
// half-written. Should the call die between the two links, the record
// lacks its index entry, so DEL misses it and GC collects it.
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
	defer dropTemp(tmp.Name())
	fail := func(err error) (io.Closer, error) {
		tmp.Close()
		return nil, storeErr(fmt.Errorf("reserve %s: %w", rec.IP, err))
	}
	// os.CreateTemp makes the file 0600.
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
	if err := os.Link(tmp.Name(), d.indexPath(rec.Key, rec.IP)); err != nil && !errors.Is(err, os.ErrExist) {
		return fail(errors.Join(err, os.Remove(d.path(rec.IP))))
	}
	return tmp, nil
}

// errNotFile marks a name that holds something other than a regular file.
var errNotFile = errors.New("not a regular file")

// openRecord opens a record for reading without following a symbolic
// link or blocking on a FIFO (an open of a FIFO waits for a writer, and
// GC would wait with the store lock held), and refuses what is not a
// regular file: only Reserve writes records, always as regular files.
func openRecord(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s: %w", path, errNotFile)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is a %s: %w", path, st.Mode().Type(), errNotFile)
	}
	return f, nil
}

// Hold locks an existing record for the caller's ADD.
func (d *Disk) Hold(ip netip.Addr) (io.Closer, error) {
	f, err := openRecord(d.path(ip))
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

// Release removes the record and its index entry; missing ones are no
// error. The record goes first: an index entry without a record is
// ignored, a record without an index entry is still a reservation.
func (d *Disk) Release(rec Record) error {
	if rec.NotFile {
		return storeErr(fmt.Errorf("release %s: %s is not a record (%w); remove it by hand", rec.IP, d.path(rec.IP), errNotFile))
	}
	if err := os.Remove(d.path(rec.IP)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return storeErr(fmt.Errorf("release %s: %w", rec.IP, err))
	}
	if rec.Corrupt {
		return nil // its key is unknown; Tidy removes the index entry
	}
	if err := os.Remove(d.indexPath(rec.Key, rec.IP)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return storeErr(fmt.Errorf("release index of %s: %w", rec.IP, err))
	}
	return nil
}

// Tidy removes temporary files (every call that makes one removes it
// before it lets go of the lock, so any found under the lock is left by
// a killed call) and index entries whose record is gone or is another
// attachment's.
func (d *Disk) Tidy() error {
	entries, err := readNames(d.dir)
	if err != nil {
		return storeErr(fmt.Errorf("read data dir: %w", err))
	}
	var errs []error
	for _, name := range entries {
		stale := strings.HasPrefix(name, tmpPrefix)
		if rest, ok := strings.CutPrefix(name, indexPrefix); ok {
			stale = true
			hash, ipStr, _ := strings.Cut(rest, ".")
			if ip, err := netip.ParseAddr(ipStr); err == nil {
				rec, err := d.read(ip)
				stale = err != nil || rec.Corrupt || keyHash(rec.Key) != hash
			}
		}
		if stale {
			if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return storeErr(errors.Join(errs...))
}

// The next-fit positions live in the lock file, which the store holds
// open while locked, as lines "ipv4 <address>": writing them costs one
// write, where a file of their own would cost a file creation per ADD.
// They are only a hint: a torn write restarts next-fit at the range start.

// LastReserved returns the address last handed out in the family, or the
// zero Addr if none was or the hint is unreadable.
func (d *Disk) LastReserved(family int) (netip.Addr, error) {
	hints, err := d.readHints()
	if err != nil {
		return netip.Addr{}, err
	}
	return hints[family], nil
}

// SetLastReserved records the next-fit position of the family.
func (d *Disk) SetLastReserved(family int, ip netip.Addr) error {
	hints, err := d.readHints()
	if err != nil {
		return err
	}
	hints[family] = ip
	var b strings.Builder
	for _, fam := range []int{4, 6} {
		if a, ok := hints[fam]; ok {
			fmt.Fprintf(&b, "ipv%d %s\n", fam, a)
		}
	}
	if _, err := d.held.WriteAt([]byte(b.String()), 0); err != nil {
		return storeErr(fmt.Errorf("write next-fit position: %w", err))
	}
	if err := d.held.Truncate(int64(b.Len())); err != nil {
		return storeErr(fmt.Errorf("write next-fit position: %w", err))
	}
	return nil
}

func (d *Disk) readHints() (map[int]netip.Addr, error) {
	if d.held == nil {
		return nil, storeErr(errors.New("next-fit position used without the lock"))
	}
	buf := make([]byte, 256)
	n, err := d.held.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, storeErr(fmt.Errorf("read next-fit position: %w", err))
	}
	hints := map[int]netip.Addr{}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		fam, addr, _ := strings.Cut(line, " ")
		a, err := netip.ParseAddr(addr)
		if err != nil {
			continue
		}
		if (fam == "ipv4" && a.Is4()) || (fam == "ipv6" && a.Is6()) {
			hints[conf.Family(a)] = a
		}
	}
	return hints, nil
}

// Writable creates, writes, syncs and removes a probe file.
func (d *Disk) Writable() error {
	tmp, err := os.CreateTemp(d.dir, tmpPrefix)
	if err != nil {
		return storeErr(fmt.Errorf("data dir %s is not writable: %w", d.dir, err))
	}
	defer dropTemp(tmp.Name())
	_, werr := tmp.WriteString(`{"probe":true}`)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return storeErr(fmt.Errorf("data dir %s is not writable: %w", d.dir, err))
	}
	return nil
}
