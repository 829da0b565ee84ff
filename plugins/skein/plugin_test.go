package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

func TestCNIErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code uint
	}{
		{"decode", &conf.DecodeError{Err: errors.New("x")}, types.ErrDecodingFailure},
		{"invalid config", &conf.Error{Field: "mtu", Msg: "x"}, types.ErrInvalidNetworkConfig},
		{"environment", envErrorf("CNI_NETNS"), types.ErrInvalidEnvironmentVariables},
		{"lock timeout", fmt.Errorf("wrapped: %w", ipam.ErrLockTimeout), types.ErrTryAgainLater},
		{"busy", ipam.ErrBusy, types.ErrTryAgainLater},
		{"exhausted", fmt.Errorf("IPv4: %w", ipam.ErrExhausted), ErrPoolExhausted},
		{"unavailable", &ipam.UnavailableError{Addr: netip.MustParseAddr("10.0.0.1")}, ErrAddressUnavailable},
		{"store", &ipam.StoreError{Err: syscall.EACCES}, ErrStore},
		{"bridge", &bridgeError{"x"}, ErrBridge},
		{"check", &checkError{[]string{"x"}}, ErrCheck},
		{"kernel", errors.New("netlink said no"), ErrKernel},
		// A rollback failure does not change the code of the cause.
		{"cause wins", fmt.Errorf("%w (and undoing it failed: %v)", &bridgeError{"x"}, &ipam.StoreError{Err: syscall.EIO}), ErrBridge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var te *types.Error
			if !errors.As(cniError(tc.err), &te) || te.Code != tc.code {
				t.Fatalf("cniError(%v) = %v, want code %d", tc.err, cniError(tc.err), tc.code)
			}
		})
	}
	if cniError(nil) != nil {
		t.Fatal("cniError(nil) is not nil")
	}
	var te *types.Error
	errors.As(cniError(&ipam.StoreError{Err: syscall.ENOSPC}), &te)
	if !strings.Contains(te.Details, "full") {
		t.Errorf("a full disk is not named in %q", te.Details)
	}
}

func TestHostVethName(t *testing.T) {
	a := hostVethName("net", ipam.Key{ContainerID: "abc", IfName: "eth0"})
	if len(a) != conf.MaxIfNameLen || a[:5] != "skein" {
		t.Fatalf("name %q: want skein + 10 hex digits", a)
	}
	if a != hostVethName("net", ipam.Key{ContainerID: "abc", IfName: "eth0"}) {
		t.Fatal("not deterministic")
	}
	for _, other := range []string{
		hostVethName("net", ipam.Key{ContainerID: "abc", IfName: "eth1"}),
		hostVethName("net", ipam.Key{ContainerID: "abd", IfName: "eth0"}),
		hostVethName("net2", ipam.Key{ContainerID: "abc", IfName: "eth0"}),
	} {
		if other == a {
			t.Fatalf("different attachments share %q", a)
		}
	}
}

func TestCNIArgs(t *testing.T) {
	got, err := cniArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=web;IP=10.0.0.5,fd00::5;")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "web", "IP": "10.0.0.5,fd00::5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"K8S_POD_NAMESPACE", "=x"} {
		if _, err := cniArgs(bad); err == nil {
			t.Errorf("cniArgs(%q) accepted", bad)
		}
	}
}

func testNet(t *testing.T, extra string) *conf.Network {
	t.Helper()
	n, err := conf.Load([]byte(`{"cniVersion":"1.0.0","name":"t","ranges":[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]` + extra + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRequestedIPs(t *testing.T) {
	n := testNet(t, ``)
	got, err := requestedIPs(n, map[string]string{"IP": "10.0.0.5,fd00::5"})
	if err != nil || len(got) != 2 || got[1].String() != "fd00::5" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := requestedIPs(testNet(t, `,"runtimeConfig":{"ips":["10.0.0.6"]}`), map[string]string{"IP": "10.0.0.5"}); err == nil {
		t.Error("both CNI_ARGS IP= and runtimeConfig.ips accepted")
	}
}

func TestDNSAndRoutes(t *testing.T) {
	n := testNet(t, `,"clusterDomain":"cluster.local","dns":{"nameservers":["10.96.0.10"],"search":["corp.example","cluster.local"]},
		"routes":[{"dst":"10.96.0.0/12"},{"dst":"0.0.0.0/0"}]`)
	d := dnsFor(n, map[string]string{"K8S_POD_NAMESPACE": "web"})
	want := []string{"web.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}
	if diff := cmp.Diff(want, d.Search); diff != "" {
		t.Errorf("search (-want +got):\n%s", diff)
	}
	gws := map[int]netip.Addr{4: netip.MustParseAddr("10.0.0.1"), 6: netip.MustParseAddr("fd00::1")}
	var got []string
	for _, r := range podRoutes(n, gws) {
		got = append(got, r.Dst.String()+" via "+r.GW.String())
	}
	if diff := cmp.Diff([]string{"0.0.0.0/0 via 10.0.0.1", "::/0 via fd00::1", "10.96.0.0/12 via 10.0.0.1"}, got); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}
