package harness

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NFTablesEvents reports, with the time it was received, every nftables
// netlink event in ns that concerns table of family (unix.AF_INET, ...):
// the kernel sends them on each committed change, whether nft, a netlink
// library or iptables-nft made it. Stop ends it and closes the channel.
func NFTablesEvents(ns *NetNS, family uint8, table string) (events <-chan time.Time, stop func(), err error) {
	h, err := netns.GetFromPath(ns.Path)
	if err != nil {
		return nil, nil, err
	}
	defer h.Close()
	const nfnlgrpNFTables = 7
	sock, err := nl.SubscribeAt(h, netns.None(), unix.NETLINK_NETFILTER, nfnlgrpNFTables)
	if err != nil {
		return nil, nil, err
	}
	// A sync writes many objects; a small buffer would overflow.
	if err := sock.SetReceiveBufferSize(64<<20, true); err != nil {
		sock.Close()
		return nil, nil, err
	}
	ch := make(chan time.Time, 4096)
	go func() {
		defer close(ch)
		for {
			msgs, _, err := sock.Receive()
			if errors.Is(err, unix.ENOBUFS) {
				continue // some events were lost; the next change is timed anew
			}
			if err != nil {
				return
			}
			now := time.Now()
			for _, m := range msgs {
				if isTableEvent(m.Data, family, table) {
					select {
					case ch <- now:
					default: // nobody is timing now
					}
				}
			}
		}
	}()
	return ch, sock.Close, nil
}

// Quiet waits until events have been silent for d.
func Quiet(events <-chan time.Time, d time.Duration) {
	for quiet := time.After(d); ; {
		select {
		case <-events:
			quiet = time.After(d)
		case <-quiet:
			return
		}
	}
}

// isTableEvent tells whether a netlink message from the nftables group
// concerns table in family: the message starts with nfgenmsg (family,
// version, resource id), and rules, chains, sets and elements name their
// table in attribute 1.
func isTableEvent(b []byte, family uint8, table string) bool {
	if len(b) < 4 || b[0] != family {
		return false
	}
	b = b[4:]
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & 0x3fff
		if l < 4 || l > len(b) {
			return false
		}
		if typ == 1 {
			return string(bytes.TrimRight(b[4:l], "\x00")) == table
		}
		b = b[(l+3)&^3:]
	}
	return false
}
