package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dirEvent is what inotify reported for one name in the watched
// directory.
type dirEvent struct {
	name string
	mask uint32
}

// complete tells whether the event ends a write of the named file: the
// file renamed into the directory (as config management and editors
// replace it) or closed after being opened for writing. A lost event
// (the kernel's queue overflowed) counts too: anything may have changed.
func (e dirEvent) complete(file string) bool {
	return e.mask&unix.IN_Q_OVERFLOW != 0 || e.name == file && e.mask&(unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0
}

// touches tells whether the event may have changed the named file
// without completing it: any event naming it, and a rename of another
// name, since the file may be reached through a link that rename swapped
// (the kubelet swaps a ConfigMap volume's "..data" link so).
func (e dirEvent) touches(file string) bool {
	return e.name == file || e.mask&unix.IN_MOVED_TO != 0
}

// dirWatch follows one directory through inotify. It is used rather than
// fsnotify because fsnotify reports a rename into the directory and a
// file's creation as the same event and does not report a close after
// writing: exactly the difference between a file that is whole and one
// that a writer may still be filling.
type dirWatch struct {
	f      *os.File
	events chan dirEvent // closed when the watch ends
	done   chan struct{}
}

const watchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO |
	unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_ATTRIB | unix.IN_ONLYDIR

func watchDir(dir string) (*dirWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, watchMask); err != nil {
		_ = unix.Close(fd) // nothing was read from it
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	// A non-blocking descriptor becomes a file served by the runtime's
	// poller: Read parks the goroutine, and Close wakes it.
	w := &dirWatch{f: os.NewFile(uintptr(fd), "inotify "+dir), events: make(chan dirEvent, 64), done: make(chan struct{})}
	go w.read()
	return w, nil
}

// Close ends the watch.
func (w *dirWatch) Close() error {
	close(w.done)
	return w.f.Close()
}

func (w *dirWatch) read() {
	defer close(w.events)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // closed
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, then len bytes
			// of NUL-padded name.
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := int(binary.NativeEndian.Uint32(buf[off+12:]))
			raw := buf[off+unix.SizeofInotifyEvent : min(n, off+unix.SizeofInotifyEvent+size)]
			off += unix.SizeofInotifyEvent + size
			if mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
				return // the directory is gone: polling takes over
			}
			if end := bytes.IndexByte(raw, 0); end >= 0 {
				raw = raw[:end]
			}
			name := string(raw)
			select {
			case w.events <- dirEvent{name: name, mask: mask}:
			case <-w.done:
				return
			}
		}
	}
}

// settle is how long a file that is being written must stay quiet before
// it is read: a writer that truncates and then writes in steps, without
// closing in between, is done by then.
const settle = 10 * time.Millisecond

// waitForChange returns at the next tick; at once when an event ends a
// write of file (see dirEvent.complete); or once an event has touched
// file and no other has for quiet. Writes to other names do not hold it
// back, so a busy neighbour (a log written beside the file) cannot keep
// a change waiting. ok is false when the watch has ended;
// err is set when ctx ends.
func waitForChange(ctx context.Context, tick <-chan time.Time, events <-chan dirEvent, file string, quiet time.Duration) (ok bool, err error) {
	var settled <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-tick:
			return true, nil
		case <-settled:
			return true, nil
		case ev, open := <-events:
			switch {
			case !open:
				return false, nil
			case ev.complete(file):
				return true, nil
			case ev.touches(file):
				settled = time.After(quiet)
			}
		}
	}
}
