package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Echo serves from inside ns, as a pod's workload would: on TCP port
// 8080 it answers "<name> <client address>" and closes; on UDP port 5353
// it answers each datagram with name. Close stops it.
type Echo struct {
	ln net.Listener
	pc net.PacketConn
}

// NewEcho starts an Echo in ns.
func NewEcho(ns *NetNS, name string) (*Echo, error) {
	e := &Echo{}
	if err := ns.Do(func() error {
		var err error
		if e.ln, err = net.Listen("tcp", ":8080"); err != nil {
			return err
		}
		e.pc, err = net.ListenPacket("udp", ":5353")
		return err
	}); err != nil {
		e.Close()
		return nil, fmt.Errorf("listen in %s: %w", ns.Name, err)
	}
	go func() {
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", name, host)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := e.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = e.pc.WriteTo([]byte(name), from)
		}
	}()
	return e, nil
}

// Close stops the listeners.
func (e *Echo) Close() {
	if e.ln != nil {
		e.ln.Close()
	}
	if e.pc != nil {
		e.pc.Close()
	}
}

// Ask connects from ns to an Echo at addr over TCP and returns who
// answered and the client address it saw.
func Ask(ctx context.Context, ns *NetNS, addr string) (name, seen string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read from %s: %w", addr, err)
	}
	name, seen, _ = strings.Cut(strings.TrimSpace(line), " ")
	return name, seen, nil
}

// Backend is an endpoint of a Service: a pod's address and its node.
type Backend struct{ IP, Node string }

// ServiceYAML renders a Service in namespace default (spec in YAML flow
// style) and its EndpointSlice with the backends as ready endpoints, on
// an Echo's port: 8080 for TCP, 5353 for UDP.
func ServiceYAML(name, spec, proto string, eps ...Backend) string {
	var list []string
	for _, b := range eps {
		list = append(list, fmt.Sprintf("{addresses: [%s], nodeName: %s, conditions: {ready: true}}", b.IP, b.Node))
	}
	return EndpointsYAML(name, spec, proto, list...)
}

// EndpointsYAML is ServiceYAML with the slice's endpoints as given, each
// an EndpointSlice endpoint in YAML flow style (conditions, hints).
func EndpointsYAML(name, spec, proto string, endpoints ...string) string {
	target := 8080
	if proto == "UDP" {
		target = 5353
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: default}
spec: %[2]s
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s-1, namespace: default, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{port: %[3]d, protocol: %[4]s}]
endpoints: [%[5]s]
`, name, spec, target, proto, strings.Join(endpoints, ", "))
}
