// Command netexec is the test image of the real-node clusters, in the
// spirit of the upstream test image's netexec: one program, static, with
// no shell beside it.
//
//	netexec serve [--port 8080]   HTTP and UDP on the port
//	netexec get URL...            prints the body of a GET of each URL
//	netexec udp ADDR MESSAGE      sends one datagram, prints the answer
//	netexec lookup NAME           prints the addresses the resolver gives
//	netexec loop --for D --every I URL...
//	                              GETs every URL each interval for a while,
//	                              a failure tried once more at once; prints
//	                              how many answered, answered on the retry,
//	                              and failed twice
//
// What the last three print goes to /dev/termination-log as well, when
// it exists (in a Kubernetes container), so that a test reads it from
// the Pod's status without reaching the kubelet.
//
// Over HTTP: /hostname, /clientip (the address the connection came
// from), /echo?msg=, /healthz (200 while ready, else 503) and
// /ready?ready=false|true (readiness set by the test). Over UDP: a
// datagram "hostname", "clientip" or "echo TEXT" is answered in kind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "get":
		err = get(args)
	case "udp":
		err = udp(args)
	case "lookup":
		err = lookup(args)
	case "loop":
		err = loop(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netexec:", err)
		say("error: " + err.Error())
		os.Exit(1)
	}
}

// out is what the command printed, for the termination log.
var out strings.Builder

func say(s string) {
	fmt.Print(s)
	out.WriteString(s)
	if _, err := os.Stat("/dev/termination-log"); err == nil {
		_ = os.WriteFile("/dev/termination-log", []byte(out.String()), 0o644)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: netexec serve [--port N] | get URL... | udp ADDR MESSAGE | lookup NAME | loop --for D --every I URL...")
	os.Exit(2)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	port := fs.Int("port", 8080, "the HTTP (TCP) and UDP port")
	_ = fs.Parse(args)
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	var notReady atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, host) })
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.URL.Query().Get("msg")) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if notReady.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		notReady.Store(r.URL.Query().Get("ready") == "false")
		fmt.Fprintf(w, "ready %v", !notReady.Load())
	})
	pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", *port))
	if err != nil {
		return err
	}
	go serveUDP(pc, host)
	srv := &http.Server{Addr: fmt.Sprintf(":%d", *port), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// serveUDP answers each datagram on its own.
func serveUDP(pc net.PacketConn, host string) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg := strings.TrimSpace(string(buf[:n]))
		var out string
		switch {
		case msg == "hostname":
			out = host
		case msg == "clientip":
			out = from.String()
		case strings.HasPrefix(msg, "echo "):
			out = strings.TrimPrefix(msg, "echo ")
		default:
			out = "unknown: " + msg
		}
		_, _ = pc.WriteTo([]byte(out), from)
	}
}

func get(args []string) error {
	if len(args) == 0 {
		usage()
	}
	// A connection per request: each goes through the Service's load
	// balancing afresh.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, url := range args {
		body, err := getOne(c, url)
		if err != nil {
			return err
		}
		say(url + " " + body + "\n")
	}
	return nil
}

func getOne(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), nil
}

func udp(args []string) error {
	if len(args) != 2 {
		usage()
	}
	c, err := net.Dial("udp", args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(args[1])); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	say(string(buf[:n]))
	return nil
}

func lookup(args []string) error {
	if len(args) != 1 {
		usage()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, args[0])
	if err != nil {
		return err
	}
	say(strings.Join(addrs, "\n") + "\n")
	return nil
}

func loop(args []string) error {
	fs := flag.NewFlagSet("loop", flag.ExitOnError)
	length := fs.Duration("for", time.Minute, "how long to go on")
	every := fs.Duration("every", 200*time.Millisecond, "the interval between two rounds")
	timeout := fs.Duration("timeout", 2*time.Second, "the most one request may take")
	_ = fs.Parse(args)
	if fs.NArg() == 0 {
		usage()
	}
	c := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var ok, retried, failed int
	var slowest time.Duration
	var fails []string
	get := func(url string) error {
		start := time.Now()
		_, err := getOne(c, url)
		if err == nil {
			slowest = max(slowest, time.Since(start))
		}
		return err
	}
	end := time.Now().Add(*length)
	for t := time.NewTicker(*every); time.Now().Before(end); <-t.C {
		for _, url := range fs.Args() {
			if err := get(url); err == nil {
				ok++
				continue
			}
			if err := get(url); err == nil {
				retried++
				continue
			} else if len(fails) < 10 {
				fails = append(fails, time.Now().UTC().Format("15:04:05.000")+" "+err.Error())
			}
			failed++
		}
	}
	say(fmt.Sprintf("ok=%d retried=%d failed=%d slowest=%s\n%s", ok, retried, failed, slowest.Round(time.Millisecond), strings.Join(fails, "\n")))
	return nil
}
