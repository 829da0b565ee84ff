package harness

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"

	"k8s.io/client-go/tools/clientcmd"
)

// Relay listens on 127.0.0.1 inside the namespace and forwards every
// connection to target as dialled from the test's own namespace: it lets
// a daemon in a node namespace reach a server on the host's loopback (the
// API server), the way a node reaches its control plane. Close stops it.
type Relay struct {
	Addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

// NewRelay starts a relay into n, on a free port.
func NewRelay(n *NetNS, target string) (*Relay, error) {
	return NewRelayAt(n, "127.0.0.1:0", target)
}

// NewRelayAt starts a relay into n listening on addr there.
func NewRelayAt(n *NetNS, addr, target string) (*Relay, error) {
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return nil, err
	}
	return serve(ln, func() (net.Conn, error) { return net.Dial("tcp", target) }), nil
}

// NewRelayInto starts a relay the other way: listening on addr in the
// test's own namespace, it forwards every connection to target as
// dialled inside n (a server in a namespace, reached from the host's
// loopback).
func NewRelayInto(n *NetNS, addr, target string) (*Relay, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return serve(ln, func() (net.Conn, error) { return n.Dial(context.Background(), "tcp", target) }), nil
}

// serve relays every connection ln accepts to one dial makes.
func serve(ln net.Listener, dial func() (net.Conn, error)) *Relay {
	r := &Relay{Addr: ln.Addr().String(), ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go pipe(c, dial)
		}
	}()
	return r
}

func pipe(c net.Conn, dial func() (net.Conn, error)) {
	defer c.Close()
	up, err := dial()
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// Close stops accepting; open connections end with their peers.
func (r *Relay) Close() error {
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

// RelayedKubeconfig writes to path a copy of the kubeconfig at from whose
// API server is reached through a Relay into ns (started here, or reused
// when relay is not nil), acting as user when user is not empty. It
// returns the relay, which the caller closes.
func RelayedKubeconfig(ns *NetNS, relay *Relay, from, path, user string) (*Relay, error) {
	cfg, err := clientcmd.LoadFromFile(from)
	if err != nil {
		return relay, err
	}
	for _, cl := range cfg.Clusters {
		if relay == nil {
			if relay, err = NewRelay(ns, strings.TrimPrefix(cl.Server, "https://")); err != nil {
				return nil, err
			}
		}
		cl.Server = "https://" + relay.Addr
	}
	if user != "" {
		for _, u := range cfg.AuthInfos {
			u.Impersonate = user
		}
	}
	return relay, clientcmd.WriteToFile(*cfg, path)
}
