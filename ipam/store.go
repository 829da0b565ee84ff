package ipam

import (
	"errors"
	"io"
	"net/netip"
	"time"
)

// Key names one attachment: a container's interface.
type Key struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// Record is one reserved address.
type Record struct {
	IP  netip.Addr `json:"-"`
	Key Key        `json:"key"`
	// Link is the host-side interface of the attachment.
	Link string `json:"link,omitempty"`
	// Busy is set by List when the ADD that holds the record still runs.
	Busy bool `json:"-"`
	// Corrupt is set by List when the record cannot be read; its address
	// is treated as taken and its owner as unknown.
	Corrupt bool `json:"-"`
	// NotFile is set by List when the name holds something other than a
	// regular file (a directory, a FIFO, a socket, a symbolic link): not
	// a record skein wrote. Its address is treated as taken, and it is
	// never opened for reading nor removed.
	NotFile bool `json:"-"`
	// Written is when the record was last written (zero if unknown).
	Written time.Time `json:"-"`
}

// Errors a Store returns.
var (
	ErrTaken       = errors.New("address already reserved")
	ErrBusy        = errors.New("attachment is being set up by another call")
	ErrLockTimeout = errors.New("timed out waiting for the store lock")
)

// Store keeps reservations. Every method but Lock must be called with the
// lock held; Pool does that. Scan serves every ADD and DEL and must not
// cost a read per reservation; List serves GC and may.
type Store interface {
	Lock() error
	Unlock() error
	// Scan returns every reserved address, readable record or not, and
	// the records of one attachment.
	Scan(key Key) (taken []netip.Addr, mine []Record, err error)
	// List reads every record, with Busy and Corrupt set.
	List() ([]Record, error)
	// Reserve records rec unless its address is taken (ErrTaken). The
	// returned Closer is the in-flight hold: until it is closed, or the
	// process ends, List reports the record Busy.
	Reserve(rec Record) (io.Closer, error)
	// Hold takes the in-flight hold on an existing record (ErrBusy if
	// another call holds it).
	Hold(ip netip.Addr) (io.Closer, error)
	// Release forgets the record; releasing a free address is no error.
	Release(rec Record) error
	// Tidy removes what interrupted calls left: temporary files and
	// index entries of released records.
	Tidy() error
	LastReserved(family int) (netip.Addr, error)
	SetLastReserved(family int, ip netip.Addr) error
	// Writable checks that a record could be written now.
	Writable() error
}

// StoreError is a failure of the store itself (I/O, permissions, a full
// disk), as opposed to the pool's state.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return "reservation store: " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

func storeErr(err error) error {
	if err == nil {
		return nil
	}
	var se *StoreError
	if errors.As(err, &se) || errors.Is(err, ErrLockTimeout) || errors.Is(err, ErrBusy) {
		return err
	}
	return &StoreError{Err: err}
}
