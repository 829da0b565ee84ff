package nftables

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestElems: each kind of element in the text nft writes and the bytes
// the kernel takes, built once from the same values.
func TestElems(t *testing.T) {
	a4, a6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::1")
	for _, tc := range []struct {
		name        string
		e           elem
		text, value string
		key, data   []byte
		code        int32
		chain       string
	}{
		{"endpoint v4", endpointElem(7, netip.AddrPortFrom(a4, 8080)), "7", "10.1.2.3 . 8080",
			binary.NativeEndian.AppendUint32(nil, 7), []byte{10, 1, 2, 3, 0x1f, 0x90, 0, 0}, 0, ""},
		{"endpoint v6", endpointElem(7, netip.AddrPortFrom(a6, 53)), "7", "fd00::1 . 53",
			binary.NativeEndian.AppendUint32(nil, 7), append(a6.AsSlice(), 0, 53, 0, 0), 0, ""},
		{"hairpin", hairpinElem(a4), "10.1.2.3 . 10.1.2.3", "", []byte{10, 1, 2, 3, 10, 1, 2, 3}, nil, 0, ""},
		{"service", serviceElem(a4, "udp", 53, "goto", "svc-x"), "10.1.2.3 . udp . 53", "goto svc-x",
			[]byte{10, 1, 2, 3, 17, 0, 0, 0, 0, 53, 0, 0}, nil, unix.NFT_GOTO, "svc-x"},
		{"service dropped", serviceElem(a6, "tcp", 80, "drop", ""), "fd00::1 . tcp . 80", "drop",
			append(a6.AsSlice(), 6, 0, 0, 0, 0, 80, 0, 0), nil, 0, ""},
		{"node port", nodePortElem("sctp", 30000, "goto", "reject-chain"), "sctp . 30000", "goto reject-chain",
			[]byte{132, 0, 0, 0, 0x75, 0x30, 0, 0}, nil, unix.NFT_GOTO, "reject-chain"},
	} {
		e := tc.e
		if e.text() != tc.text || e.value() != tc.value || !bytes.Equal(e.key(), tc.key) || !bytes.Equal(e.data(), tc.data) ||
			e.code != tc.code || e.chain() != tc.chain {
			t.Errorf("%s: %+v, want text %q value %q key %v data %v verdict %d %q", tc.name, e, tc.text, tc.value, tc.key, tc.data, tc.code, tc.chain)
		}
	}
	if e := intervalElem(netip.MustParsePrefix("172.30.0.7/24")); e.text() != "172.30.0.0/24" || e.kind != interval || e.span() != netip.MustParsePrefix("172.30.0.0/24") {
		t.Errorf("interval %+v", e)
	}
}
