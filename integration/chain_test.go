package integration

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestChaining runs skein -> portmap -> bandwidth, the reference plugins
// built from the pinned module: skein's result must be a prevResult both
// accept, and a host port on 127.0.0.1 must reach the pod.
func TestChaining(t *testing.T) {
	for _, backend := range []string{"iptables", "nftables"} {
		t.Run("portmap "+backend, func(t *testing.T) {
			e := newEnv(t, envOpts{cniVersion: "1.0.0", chain: []map[string]any{
				{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "backend": backend},
				{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
			}})
			podNS := e.addPodNS()
			rt := harnessRuntimeConf("web", podNS.Path)
			rt.CapabilityArgs = map[string]any{
				"portMappings": []map[string]any{{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp", "hostIP": "127.0.0.1"}},
				"bandwidth":    map[string]any{"ingressRate": 100_000_000, "ingressBurst": 1_000_000, "egressRate": 100_000_000, "egressBurst": 1_000_000},
			}
			res, err := e.node.Add(ctx(t), rt)
			if err != nil {
				t.Fatalf("ADD through the chain: %v", err)
			}
			podIP := res.IPs[0].Address.IP.String()

			// A server in the pod answers with its own address.
			var ln net.Listener
			if err := podNS.Do(func() error {
				var err error
				ln, err = net.Listen("tcp", net.JoinHostPort(podIP, "8080"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					fmt.Fprintf(c, "hello from %s\n", podIP)
					c.Close()
				}
			}()
			var reply string
			if err := e.node.NS.Do(func() error {
				c, err := net.DialTimeout("tcp", "127.0.0.1:18080", 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				reply, err = bufio.NewReader(c).ReadString('\n')
				return err
			}); err != nil {
				t.Fatalf("connect to host port 127.0.0.1:18080: %v", err)
			}
			if want := "hello from " + podIP; strings.TrimSpace(reply) != want {
				t.Fatalf("reply %q, want %q", reply, want)
			}
			if err := e.node.Check(ctx(t), rt); err != nil {
				t.Errorf("CHECK through the chain: %v", err)
			}
			if err := e.node.Del(ctx(t), rt); err != nil {
				t.Fatalf("DEL through the chain: %v", err)
			}
			e.assertNothingLeft()
		})
	}
}
