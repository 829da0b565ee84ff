package nftwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// TableInfo is a table in outline, as the kernel reports it: enough to
// tell cheaply that it was deleted and made again, or that chains or
// sets came or went behind its owner's back.
type TableInfo struct {
	Handle uint64 // NFTA_TABLE_HANDLE: new each time the table is made
	Use    uint32 // NFTA_TABLE_USE: the chains, sets and objects it holds
}

// nftaTableHandle is NFTA_TABLE_HANDLE, which x/sys/unix does not name.
const nftaTableHandle = 4

// Table reads the outline of the family's table; ok is false when it
// does not exist.
func (s *Conn) Table(family byte, name string) (t TableInfo, ok bool, err error) {
	req := request(unix.NFT_MSG_GETTABLE, unix.NLM_F_ACK, family)
	req.str(unix.NFTA_TABLE_NAME, name)
	err = s.query(req, func(typ uint16, attrs []byte) {
		if typ != nfnlSubsysNFTables|unix.NFT_MSG_NEWTABLE {
			return
		}
		ok = true
		eachAttr(attrs, func(a uint16, v []byte) {
			switch {
			case a == unix.NFTA_TABLE_USE && len(v) == 4:
				t.Use = binary.BigEndian.Uint32(v)
			case a == nftaTableHandle && len(v) == 8:
				t.Handle = binary.BigEndian.Uint64(v)
			}
		})
	})
	if errors.Is(err, unix.ENOENT) {
		return TableInfo{}, false, nil
	}
	return t, ok, err
}

// Rules counts the rules of a chain of the family's table: none when
// the table or the chain does not exist (a dump finds nothing then).
func (s *Conn) Rules(family byte, table, chain string) (n int, err error) {
	req := request(unix.NFT_MSG_GETRULE, unix.NLM_F_DUMP, family)
	req.str(unix.NFTA_RULE_TABLE, table)
	req.str(unix.NFTA_RULE_CHAIN, chain)
	err = s.query(req, func(typ uint16, _ []byte) {
		if typ == nfnlSubsysNFTables|unix.NFT_MSG_NEWRULE {
			n++
		}
	})
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	return n, err
}

// request starts a message that reads (not in a batch).
func request(typ uint16, flags uint16, family byte) *Batch {
	b := &Batch{family: family}
	b.begin(nfnlSubsysNFTables|typ, flags, "read")
	return b
}

// query sends one read request and hands each reply to each, until the
// dump is done or the kernel's acknowledgement or error comes.
func (s *Conn) query(req *Batch, each func(typ uint16, attrs []byte)) error {
	req.end()
	s.seq++
	seq := s.seq
	binary.NativeEndian.PutUint32(req.buf[8:], seq)
	if err := unix.Sendto(s.fd, req.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	var err error
	if rerr := s.receive(func(m syscall.NetlinkMessage) bool {
		if m.Header.Seq != seq {
			return false // an earlier request's
		}
		switch m.Header.Type {
		case unix.NLMSG_DONE:
			return true
		case unix.NLMSG_ERROR:
			if len(m.Data) < 4 {
				err = errors.New("netlink: short error message")
			} else if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
				err = syscall.Errno(-code)
			}
			return true
		}
		if len(m.Data) >= 4 {
			each(m.Header.Type, m.Data[4:]) // past nftables' own header
		}
		return false
	}); rerr != nil {
		return rerr
	}
	return err
}

// eachAttr calls f with each netlink attribute of b.
func eachAttr(b []byte, f func(typ uint16, v []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[2:])&^unix.NLA_F_NESTED, b[4:l])
		b = b[min((l+3)&^3, len(b)):]
	}
}
