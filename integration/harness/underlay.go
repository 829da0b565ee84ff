package harness

import (
	"context"
	"fmt"
)

// newUnderlay makes the namespace of the nodes' shared network: a
// bridge holding the outside host's address and the upstream resolver's,
// which it starts.
func newUnderlay(ctx context.Context, prefix string) (*NetNS, *Upstream, error) {
	ul, err := NewNetNS(prefix + "-ul")
	if err != nil {
		return nil, nil, err
	}
	if _, err := ul.Exec(ctx, "sh", "-c", "ip link add ul0 type bridge && ip addr add "+OutsideIP+"/24 dev ul0 && ip addr add "+UpstreamIP+"/24 dev ul0 && ip link set ul0 up"); err != nil {
		return ul, nil, err
	}
	up, err := NewUpstream(ul, UpstreamIP)
	return ul, up, err
}

// closeUnderlay stops the upstream and deletes the underlay that
// newUnderlay made (either may be nil: made in part).
func closeUnderlay(ul *NetNS, up *Upstream) error {
	if up != nil {
		up.Close()
	}
	if ul != nil {
		return ul.Delete()
	}
	return nil
}

// attach plugs ns into the underlay ul: a veth whose end in ns is eth0,
// holding addr, its other end (named port) on the bridge.
func attach(ctx context.Context, ul, ns *NetNS, port, addr string) error {
	script := fmt.Sprintf("ip link add %[1]s type veth peer name eth0 netns %[2]s && ip link set %[1]s master ul0 up", port, ns.Name)
	if _, err := ul.Exec(ctx, "sh", "-c", script); err != nil {
		return err
	}
	_, err := ns.Exec(ctx, "sh", "-c", fmt.Sprintf("ip addr add %s/24 dev eth0 && ip link set eth0 up", addr))
	return err
}
