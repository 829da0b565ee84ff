package harness

import (
	"fmt"
	"net"
	"time"
)

// SourceSeen connects over TCP from client to serverIP inside server and
// returns the source address the server saw: the client's own address
// when nothing NATs the path.
func SourceSeen(server *NetNS, serverIP string, client *NetNS) (string, error) {
	var ln net.Listener
	if err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(serverIP, "0"))
		return err
	}); err != nil {
		return "", fmt.Errorf("listen in %s: %w", server.Name, err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		c.Close()
		seen <- host
	}()
	if err := client.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		return "", fmt.Errorf("connect from %s to %s: %w", client.Name, ln.Addr(), err)
	}
	select {
	case s := <-seen:
		return s, nil
	case <-time.After(5 * time.Second):
		return "", fmt.Errorf("%s saw no connection", server.Name)
	}
}
