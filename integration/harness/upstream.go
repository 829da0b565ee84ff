package harness

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	miekg "github.com/miekg/dns"
)

// UpstreamIP is the address of the virtual cluster's resolver for names
// outside the cluster, on the underlay: every node's skeind forwards
// there (--dns-upstream), as a real node's would to its site resolver.
const UpstreamIP = underlayPrefix + "2"

// OutsideIP is the underlay namespace's own address, the first on ul0 and
// so the source of what it sends: tests let it play a host outside the
// cluster, and the nodes' default gateway.
const OutsideIP = underlayPrefix + "1"

// OutsideAddr is what Upstream answers for every name under
// OutsideDomain.
const (
	OutsideDomain = "example.test."
	OutsideAddr   = "192.0.2.80"
)

// Upstream is that resolver: A records under OutsideDomain (TTL 30),
// NXDOMAIN for everything else; it counts the questions it is asked.
type Upstream struct {
	Asked   atomic.Int64
	servers []*miekg.Server
}

// NewUpstream serves on ip:53 in ns (which holds the address), UDP and
// TCP.
func NewUpstream(ns *NetNS, ip string) (*Upstream, error) {
	u := &Upstream{}
	addr := net.JoinHostPort(ip, "53")
	var pc net.PacketConn
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		if pc != nil {
			pc.Close()
		}
		return nil, fmt.Errorf("upstream resolver in %s: %w", ns.Name, err)
	}
	for _, s := range []*miekg.Server{{PacketConn: pc}, {Listener: ln}} {
		s.Handler = u
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		u.servers = append(u.servers, s)
	}
	return u, nil
}

// ServeDNS answers one question.
func (u *Upstream) ServeDNS(w miekg.ResponseWriter, r *miekg.Msg) {
	u.Asked.Add(1)
	m := new(miekg.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if len(r.Question) != 1 {
		m.Rcode = miekg.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	switch name := strings.ToLower(q.Name); {
	case !strings.HasSuffix(name, "."+OutsideDomain) && name != OutsideDomain:
		m.Rcode = miekg.RcodeNameError
	case q.Qtype == miekg.TypeA:
		m.Answer = append(m.Answer, &miekg.A{Hdr: miekg.RR_Header{Name: q.Name, Rrtype: miekg.TypeA, Class: miekg.ClassINET, Ttl: 30},
			A: net.ParseIP(OutsideAddr)})
	}
	_ = w.WriteMsg(m)
}

// Close stops serving.
func (u *Upstream) Close() {
	for _, s := range u.servers {
		_ = s.Shutdown()
	}
}
