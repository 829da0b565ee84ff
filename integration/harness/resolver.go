package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	miekg "github.com/miekg/dns"
)

// ResolvConfDir is where "ip netns exec" finds a namespace's own
// resolv.conf, which it mounts over /etc/resolv.conf for the command.
func ResolvConfDir(ns *NetNS) string { return filepath.Join("/etc/netns", ns.Name) }

// WriteResolvConf writes what a runtime makes of a pod's DNS settings
// (its CNI result's) as the namespace's resolv.conf, so that glibc in the
// pod asks what a real pod's would. Deleting the namespace removes it.
func WriteResolvConf(ns *NetNS, d types.DNS) error {
	dir := ResolvConfDir(ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	for _, s := range d.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(d.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.Search, " "))
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(b.String()), 0o644)
}

// Getent resolves name in ns through glibc (getent ahostsv4: its
// resolv.conf and search path, as a program in the pod would) and
// returns the IPv4 addresses, sorted.
func Getent(ctx context.Context, ns *NetNS, name string) ([]string, error) {
	out, err := ns.Exec(ctx, "getent", "ahostsv4", name)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && !slices.Contains(addrs, f[0]) {
			addrs = append(addrs, f[0])
		}
	}
	slices.Sort(addrs)
	return addrs, nil
}

// Lookup asks server:53 one question over UDP from ns, with EDNS0.
func Lookup(ctx context.Context, ns *NetNS, server, name string, qtype uint16) (*miekg.Msg, error) {
	conn, err := ns.Dial(ctx, "udp", net.JoinHostPort(server, "53"))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	co := &miekg.Conn{Conn: conn, UDPSize: 1232} // what it advertises: ReadMsg reads 512 bytes otherwise
	req := new(miekg.Msg)
	req.SetQuestion(name, qtype)
	req.SetEdns0(1232, false)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := co.WriteMsg(req); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// Records are a section's records as "name type data", without TTL and
// class, sorted.
func Records(rrs []miekg.RR) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(append(f[:1:1], f[3:]...), " "))
	}
	slices.Sort(out)
	return out
}
