package nftwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Conn is a netfilter netlink socket, kept open between transactions:
// closing one waits for the kernel's RCU grace period (milliseconds).
type Conn struct {
	fd     int
	seq    uint32
	sndbuf int
}

// Open opens a socket in the calling thread's network namespace.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	s := &Conn{fd: fd}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.Close()
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// A reply that never comes must not hang the proxy.
	tv := unix.Timeval{Sec: 60}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		s.Close()
		return nil, fmt.Errorf("netlink receive timeout: %w", err)
	}
	return s, nil
}

// Close closes the socket; a nil Conn is closed already.
func (s *Conn) Close() {
	if s != nil && s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
}

// Transact sends the batch (finishing it) as one kernel transaction and
// waits for its outcome. The kernel acknowledges the last message only;
// an error names the message it is about.
func (s *Conn) Transact(w *Batch) error {
	w.Finish()
	if w.Ops() == 0 {
		return nil
	}
	base := s.seq + 1
	for i, off := range w.msgs {
		binary.NativeEndian.PutUint32(w.buf[off+8:], base+uint32(i))
	}
	lastMsg := len(w.msgs) - 2 // before the batch end
	lastSeq := base + uint32(lastMsg)
	flags := binary.NativeEndian.Uint16(w.buf[w.msgs[lastMsg]+6:])
	binary.NativeEndian.PutUint16(w.buf[w.msgs[lastMsg]+6:], flags|unix.NLM_F_ACK)
	s.seq = base + uint32(len(w.msgs))
	// The whole batch is one message to the socket: its send buffer must
	// hold it (as root the system's limit does not apply).
	if need := len(w.buf) + 64<<10; need > s.sndbuf {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, need); err != nil {
			if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, need); err != nil {
				return fmt.Errorf("netlink send buffer: %w", err)
			}
		}
		s.sndbuf = need
	}
	if err := unix.Sendto(s.fd, w.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	var errs []error
	err := s.receive(func(m syscall.NetlinkMessage) bool {
		seq := m.Header.Seq
		if m.Header.Type != unix.NLMSG_ERROR || seq < base || seq >= s.seq || len(m.Data) < 4 {
			return false // not about this batch
		}
		if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
			what := "commit"
			if i := int(seq - base); i > 0 {
				what = w.what[i]
			}
			errs = append(errs, fmt.Errorf("%s: %w", what, syscall.Errno(-code)))
			if seq == base {
				return true // the batch as a whole failed; nothing else may come
			}
		}
		return seq == lastSeq
	})
	return errors.Join(append(errs, err)...)
}

// receive reads the socket's messages and hands each to each until it
// says the exchange is over.
func (s *Conn) receive(each func(m syscall.NetlinkMessage) (done bool)) error {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if each(m) {
				return nil
			}
		}
	}
}
