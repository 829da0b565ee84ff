package dns

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// FuzzQuery feeds the query path whatever bytes come: what unpacks is
// resolved (outside names with no upstream), and its answer packs.
func FuzzQuery(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"backend.shop.svc.cluster.local.", miekg.TypeA}, {"_pg._tcp.db.shop.svc.cluster.local.", miekg.TypeSRV},
		{"5.1.244.10.in-addr.arpa.", miekg.TypePTR}, {"10-244-1-5.shop.pod.cluster.local.", miekg.TypeAAAA}, {"example.com.", miekg.TypeMX}} {
		m := new(miekg.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		b, _ := m.Pack()
		f.Add(b)
	}
	h := testHandler(f, true)
	h.fwd.budget = 10 * time.Millisecond
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(miekg.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		m := h.resolve(context.Background(), req)
		m.Truncate(512)
		if _, err := m.Pack(); err != nil {
			t.Fatalf("the answer to %v does not pack: %v", req, err)
		}
	})
}

// TestMalformedPackets: bytes that are no query (a header cut short, a
// compression pointer to itself, a label past 63 bytes, a name past 255)
// get FORMERR or nothing, and the server goes on answering.
func TestMalformedPackets(t *testing.T) {
	h := testHandler(t, true)
	srv := serve(t, h)
	header := func(qd uint16) []byte {
		b := make([]byte, 12)
		binary.BigEndian.PutUint16(b[0:], 0x1234)
		binary.BigEndian.PutUint16(b[4:], qd)
		return b
	}
	longName := []byte{}
	for range 5 {
		longName = append(longName, 63)
		longName = append(longName, make([]byte, 63)...)
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"short header", []byte{0x12, 0x34, 0x01}},
		{"pointer loop", append(header(1), 0xc0, 12, 0, 1, 0, 1)},
		{"label of 64 bytes", append(append(header(1), 64), make([]byte, 70)...)},
		{"name past 255 bytes", append(append(header(1), longName...), 0, 0, 1, 0, 1)},
		{"question count past the packet", header(40)},
		{"a reply, not a query", append([]byte{0x12, 0x34, 0x80, 0}, make([]byte, 8)...)},
	} {
		conn, err := net.Dial("udp", srv)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write(tc.pkt)
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 512)
		if n, err := conn.Read(buf); err == nil {
			m := new(miekg.Msg)
			if m.Unpack(buf[:n]) == nil && m.Rcode != miekg.RcodeFormatError && m.Rcode != miekg.RcodeNotImplemented {
				t.Errorf("%s: answered %s", tc.name, miekg.RcodeToString[m.Rcode])
			}
		}
		conn.Close()
	}
	if m := query(t, srv, "udp", "backend.shop.svc.cluster.local.", miekg.TypeA); len(m.Answer) != 1 {
		t.Errorf("after the malformed packets: %v", m)
	}
}

// TestTCPStall: a TCP client that sends a length and then nothing is
// disconnected, and others are answered meanwhile.
func TestTCPStall(t *testing.T) {
	h := testHandler(t, true)
	srv := serve(t, h)
	conn, err := net.Dial("tcp", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte{0, 200, 0x12})
	if m := query(t, srv, "tcp", "backend.shop.svc.cluster.local.", miekg.TypeA); len(m.Answer) != 1 {
		t.Errorf("beside a stalled client: %v", m)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Errorf("the stalled connection was not closed by the server: %v", err)
	}
}
