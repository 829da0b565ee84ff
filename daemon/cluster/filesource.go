package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FileSource reads the cluster from a file, following its directory
// through inotify (the directory, so that a file replaced by rename is
// seen) and, as a fallback, reading it every Interval. A file renamed
// into place, or closed after writing, is read at once; a file still
// being written, once it has been quiet for 10 ms. A file that does not
// parse is logged and the last good snapshot stays.
//
// What cannot be a snapshot is refused before it is read: anything but a
// regular file (a FIFO would block the open for good; a link to
// /dev/zero would never end) and a file over MaxFileSize. A file that
// failed is not read or parsed again until it changes (its inode, size,
// modification or change time), so a broken 50 MB file costs one parse,
// not one every Interval.
type FileSource struct {
	Path     string
	Interval time.Duration // default 2s
	Log      *slog.Logger
	Health   *Health // nil: none kept
}

// Reasons a read of the cluster file fails, as metric labels.
const (
	ReasonRead       = "read"
	ReasonNotRegular = "not_regular_file"
	ReasonTooLarge   = "too_large"
	ReasonParse      = "parse"
)

// sourceError is a failed read with its reason.
type sourceError struct {
	reason string
	err    error
}

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// fileID tells one version of a file from another without reading it.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func idOf(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{size: fi.Size(), mtime: syscall.NsecToTimespec(fi.ModTime().UnixNano())}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// Run implements Source.
func (s *FileSource) Run(ctx context.Context, updates chan<- *State) error {
	interval := s.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	var events <-chan dirEvent
	if w, err := watchDir(filepath.Dir(s.Path)); err != nil {
		s.Log.Warn("cannot watch the cluster file's directory; polling", "every", interval, "err", err)
	} else {
		defer func() { _ = w.Close() }() // an inotify descriptor that will not close leaks nothing we could reclaim
		events = w.events
	}
	name := filepath.Base(s.Path)
	// The last good file's hash: a file read again unchanged (the
	// periodic read, an event for another file) is not parsed again.
	seed := maphash.MakeSeed()
	var last sent
	var lastErr string
	// The version of the file that last failed, not tried again.
	var failed *fileID
	var parser Parser
	// The file is read into the same buffer each time (a large file would
	// otherwise leave its size in garbage at every change): nothing the
	// parser returns refers to it.
	var buf []byte
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		id, err := statFile(s.Path)
		if err == nil && (failed == nil || *failed != id) {
			err = s.read(ctx, updates, &buf, &parser, seed, &last)
			if err != nil {
				failed = &id
			} else {
				failed = nil
			}
		} else if err == nil {
			err = errUnchanged
		}
		switch {
		case errors.Is(err, errUnchanged):
			// Still the file that failed: still failing, nothing new.
		case err != nil:
			var se *sourceError
			if !errors.As(err, &se) {
				se = &sourceError{ReasonRead, err}
			}
			s.Health.Bad(se.reason, err)
			if err.Error() != lastErr {
				lastErr = err.Error()
				s.Log.Error("cluster file not read; keeping the last good snapshot", "path", s.Path, "err", err)
			}
		default:
			lastErr = ""
			s.Health.Good()
		}
		if ctx.Err() != nil {
			return nil
		}
		ok, err := waitForChange(ctx, tick.C, events, name, settle)
		if err != nil {
			return nil
		}
		if !ok {
			s.Log.Warn("the cluster file's directory is no longer watched; polling", "every", interval)
			events = nil
		}
	}
}

var errUnchanged = errors.New("unchanged since it failed")

// read reads and parses the file and sends the snapshot when the file's
// content changed since the last good one.
// sent is the last snapshot a FileSource sent, and its file's hash.
type sent struct {
	sum uint64
	st  *State
}

func (s *FileSource) read(ctx context.Context, updates chan<- *State, buf *[]byte, parser *Parser, seed maphash.Seed, last *sent) error {
	data, err := readLimited(s.Path, *buf)
	if data != nil {
		*buf = data
	}
	if err != nil {
		return err
	}
	sum := maphash.Bytes(seed, data)
	if sum == last.sum && last.st != nil {
		return nil
	}
	st, err := parser.Parse(data)
	if err != nil {
		return &sourceError{ReasonParse, err}
	}
	last.sum = sum
	st.SortByKey()
	select {
	case updates <- st.Seal(last.st):
		last.st = st
	case <-ctx.Done():
	}
	return nil
}

// statFile looks at the file (through links) without opening it, and
// refuses what cannot be a snapshot.
func statFile(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	if err := usable(path, fi); err != nil {
		return fileID{}, err
	}
	return idOf(fi), nil
}

func usable(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return &sourceError{ReasonNotRegular, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())}
	}
	if fi.Size() > MaxFileSize {
		return &sourceError{ReasonTooLarge, fmt.Errorf("%s is %d bytes, larger than the limit of %d", path, fi.Size(), MaxFileSize)}
	}
	return nil
}

// readLimited reads the file into buf, refusing what is not a regular
// file or grows past MaxFileSize. The open never blocks: the path may
// have become a FIFO since it was looked at.
func readLimited(path string, buf []byte) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := usable(path, fi); err != nil {
		return nil, err
	}
	buf = slices.Grow(buf[:0], int(fi.Size())+1) // +1: to see the end without growing
	data := buf[:0]
	for {
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if len(data) > MaxFileSize {
			return nil, &sourceError{ReasonTooLarge, fmt.Errorf("%s is larger than %d bytes", path, MaxFileSize)}
		}
		if errors.Is(err, io.EOF) {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
		if len(data) == cap(data) {
			data = slices.Grow(data, len(data)+1)
		}
	}
}
