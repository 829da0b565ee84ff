package harness

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
)

// BenchNode is the node the proxy benchmarks run a proxy on: a namespace
// with an underlay address (172.31.0.1/16 on a veth), the cni0 bridge
// (10.64.1.1/24) and two pods on it made by hand, a server (10.64.1.10,
// accepting TCP on 8080 and closing at once) and a client (10.64.1.11,
// and 10.64.1.12 for connects straight to the server).
type BenchNode struct {
	NS, Server, Client *NetNS
	Dir                string // a temporary directory for the node's files
	ln                 net.Listener
}

// The bench node's addresses.
const (
	BenchUnderlayIP = "172.31.0.1"
	BenchServerIP   = "10.64.1.10"
	BenchClientIP   = "10.64.1.11"
	// BenchDirectClientIP is the client's second address, the source of
	// FirstPacket's direct connects.
	BenchDirectClientIP = "10.64.1.12"
)

// NewBenchNode builds it, its namespaces named from prefix. On error,
// what it built is still returned for Close.
func NewBenchNode(prefix string) (*BenchNode, error) {
	ctx := context.Background()
	n := &BenchNode{}
	var err error
	if n.Dir, err = os.MkdirTemp("", prefix+"-"); err != nil {
		return n, err
	}
	for _, p := range []struct {
		ns   **NetNS
		name string
	}{{&n.NS, "node"}, {&n.Server, "server"}, {&n.Client, "client"}} {
		if *p.ns, err = NewNetNS(prefix + "-" + p.name); err != nil {
			return n, err
		}
	}
	script := `ip link set lo up && ip link add ul0 type veth peer name ul1 && ip addr add ` + BenchUnderlayIP + `/16 dev ul0 && ip link set ul1 up && ip link set ul0 up
ip link add cni0 type bridge && ip addr add 10.64.1.1/24 dev cni0 && ip link set cni0 up
ip link add vs type veth peer name eth0 netns ` + n.Server.Name + ` && ip link set vs master cni0 up
ip link add vc type veth peer name eth0 netns ` + n.Client.Name + ` && ip link set vc master cni0 up
sysctl -qw net.ipv4.ip_forward=1`
	if _, err := n.NS.Exec(ctx, "sh", "-c", script); err != nil {
		return n, err
	}
	for ns, ip := range map[*NetNS]string{n.Server: BenchServerIP, n.Client: BenchClientIP} {
		if _, err := ns.Exec(ctx, "sh", "-c", "ip addr add "+ip+"/24 dev eth0 && ip link set eth0 up && ip link set lo up && ip route add default via 10.64.1.1"); err != nil {
			return n, err
		}
	}
	if _, err := n.Client.Exec(ctx, "ip", "addr", "add", BenchDirectClientIP+"/24", "dev", "eth0"); err != nil {
		return n, err
	}
	if err := n.Server.Do(func() error {
		n.ln, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		return n, err
	}
	go func() {
		for {
			conn, err := n.ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return n, nil
}

// Close removes the namespaces and the directory.
func (n *BenchNode) Close() {
	if n.ln != nil {
		n.ln.Close()
	}
	for _, ns := range []*NetNS{n.Client, n.Server, n.NS} {
		if ns != nil {
			_ = ns.Delete()
		}
	}
	os.RemoveAll(n.Dir)
}

// StartIn runs args in ns for a benchmark, the output appended to the
// file at log, without the environment's SKEIN_ variables (the scripts'
// settings, not the program's).
func StartIn(ns *NetNS, log string, args ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SKEIN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd, cmd.Start()
}

// Stop kills what StartIn started (nil: nothing) and waits for it.
func Stop(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}
