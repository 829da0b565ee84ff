package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

// hostVethPrefix starts the name of every host-side veth skein creates.
const hostVethPrefix = "skein"

// hostVethName derives the host-side veth name from the attachment, so
// DEL, CHECK and GC find it again after any crash without a lookup table:
// "skein" and 10 hex digits of a hash of network, container and ifname.
func hostVethName(network string, k ipam.Key) string {
	sum := sha256.Sum256([]byte(network + "\x00" + k.ContainerID + "\x00" + k.IfName))
	return hostVethPrefix + hex.EncodeToString(sum[:])[:conf.MaxIfNameLen-len(hostVethPrefix)]
}

// linkAlias marks a host veth as belonging to a network, for GC.
func linkAlias(network string) string { return "skein/" + network }

// bridgeMAC gives the bridge a fixed, locally administered MAC derived
// from its first gateway. A bridge without one takes the lowest MAC of its
// ports, which changes as pods come and go and leaves every pod's ARP
// entry for the gateway stale.
func bridgeMAC(n *conf.Network) net.HardwareAddr {
	gw := n.Ranges[0].Gateway
	if gw.Is4() {
		b := gw.As4()
		return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
	}
	sum := sha256.Sum256(gw.AsSlice())
	return net.HardwareAddr{0x0a, 0x58, sum[0], sum[1], sum[2], sum[3]}
}

// cniArgs parses CNI_ARGS ("K=V;K2=V2").
func cniArgs(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, envErrorf("CNI_ARGS: %q is not KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// requestedIPs merges the "ips" capability with CNI_ARGS IP=.
func requestedIPs(n *conf.Network, args map[string]string) ([]netip.Addr, error) {
	if s, ok := args["IP"]; ok {
		ips, err := conf.ParseRequestedIPs(strings.Split(s, ","))
		if err != nil {
			return nil, envErrorf("CNI_ARGS IP=%s: %v", s, err)
		}
		if len(n.RequestedIPs) > 0 && len(ips) > 0 {
			return nil, envErrorf("CNI_ARGS IP= and runtimeConfig.ips both request addresses; use one")
		}
		if len(ips) > 0 {
			return ips, nil
		}
	}
	return n.RequestedIPs, nil
}

// prefixOf returns ip with its range's prefix length.
func prefixOf(pool *ipam.Pool, ip netip.Addr) (netip.Prefix, conf.Range, error) {
	r, ok := pool.Range(ip)
	if !ok {
		return netip.Prefix{}, conf.Range{}, fmt.Errorf("reserved address %s is in no configured subnet (did the network's subnets change?)", ip)
	}
	return netip.PrefixFrom(ip, r.Subnet.Bits()), r, nil
}
