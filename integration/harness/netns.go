package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// NetNS is a named network namespace, as `ip netns add` makes it.
type NetNS struct {
	Name string
	Path string
}

// NewNetNS creates the namespace and brings its loopback up.
func NewNetNS(name string) (*NetNS, error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &NetNS{Name: name, Path: filepath.Join("/run/netns", name)}
	if _, err := n.Exec(context.Background(), "ip", "link", "set", "lo", "up"); err != nil {
		n.Delete()
		return nil, err
	}
	return n, nil
}

// Delete removes the namespace and its resolv.conf, if WriteResolvConf
// wrote one (ip netns del leaves /etc/netns/<name>); deleting a missing
// one is no error.
func (n *NetNS) Delete() error {
	out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
	return os.RemoveAll(ResolvConfDir(n))
}

// Do runs fn on an OS thread inside the namespace. Processes fn starts
// (the CNI plugins libcni execs) begin in it too.
func (n *NetNS) Do(fn func() error) error {
	return ns.WithNetNSPath(n.Path, func(ns.NetNS) error { return fn() })
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *NetNS) Exec(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %v: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Ping sends count echo requests to addr from the namespace and fails
// unless every one is answered.
func (n *NetNS) Ping(ctx context.Context, addr string, count int) error {
	_, err := n.Exec(ctx, "ping", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.05", "-W", "2", addr)
	return err
}

// Dial opens a connection from inside the namespace; the socket stays in
// it whatever goroutine uses it afterwards.
func (n *NetNS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPGet fetches a URL from inside the namespace.
func (n *NetNS) HTTPGet(ctx context.Context, url string) (int, string, error) {
	client := &http.Client{Transport: &http.Transport{DialContext: n.Dial, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
