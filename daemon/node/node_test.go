package node

import (
	"net/netip"
	"testing"
)

// TestCheckOwnPodCIDRs: this node refuses for itself what every peer
// refuses for it.
func TestCheckOwnPodCIDRs(t *testing.T) {
	host := []netip.Prefix{netip.MustParsePrefix("172.30.0.0/24"), netip.MustParsePrefix("fd00:30::/64")}
	for _, tc := range []struct {
		cidr, reason string
	}{
		{"10.244.1.0/24", ""},
		{"fd00:10:244:1::/64", ""},
		{"0.0.0.0/0", ReasonInvalidPodCIDR},
		{"::/0", ReasonInvalidPodCIDR},
		{"172.30.0.0/16", ReasonCoversHostNetwork},
		{"172.30.0.128/25", ReasonCoversHostNetwork},
		{"127.0.0.0/8", ReasonInvalidPodCIDR},
		{"169.254.0.0/16", ReasonInvalidPodCIDR},
		{"224.0.0.0/4", ReasonInvalidPodCIDR},
	} {
		reason, detail := CheckOwnPodCIDRs([]netip.Prefix{netip.MustParsePrefix(tc.cidr)}, host)
		if reason != tc.reason {
			t.Errorf("%s: reason %q (%s), want %q", tc.cidr, reason, detail, tc.reason)
		}
	}
}
