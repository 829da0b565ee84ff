package dns

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	miekg "github.com/miekg/dns"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
)

func testState(t testing.TB, edit func(string) string) *cluster.State {
	t.Helper()
	b, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return clustertest.Parse(t, string(b), edit)
}

// testHandler answers from the test cluster; outside names go to
// upstreams, none unless given.
func testHandler(t testing.TB, pods bool, upstreams ...string) *handler {
	t.Helper()
	m := NewMetrics(nil)
	h := &handler{origin: "cluster.local.", pods: pods, zoned: make(chan struct{}), firstWait: 100 * time.Millisecond,
		fwd:      newForwarder(2*time.Second, false, func(string, string) {}),
		cache:    newCache(100, 1<<20, 0, time.Hour, func() {}),
		inflight: make(chan struct{}, 10), metrics: m}
	h.fwd.setUpstreams(upstreams)
	h.setZone(NewMemo("cluster.local", 5).Build(testState(t, nil), 1))
	return h
}

func ask(h *handler, name string, qtype uint16) *miekg.Msg {
	req := new(miekg.Msg)
	req.SetQuestion(name, qtype)
	return h.resolve(context.Background(), req)
}

// rrs are a section's records as text, sorted, without TTLs.
func rrs(section []miekg.RR) []string {
	var out []string
	for _, rr := range section {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(append(f[:1:1], f[2:]...), " "))
	}
	slices.Sort(out)
	return out
}

// TestSpec checks each rule of the Kubernetes DNS specification (schema
// 1.1.0) the server answers by; each case is named after its rule.
func TestSpec(t *testing.T) {
	h := testHandler(t, true)
	for _, tc := range []struct {
		rule   string
		name   string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
	}{
		{"names match case-insensitively", "BackEnd.SHOP.svc.Cluster.Local.", miekg.TypeA, 0,
			[]string{"backend.shop.svc.cluster.local. IN A 10.96.0.20"}, nil},
		{"schema version", "dns-version.cluster.local.", miekg.TypeTXT, 0,
			[]string{`dns-version.cluster.local. IN TXT "1.1.0"`}, nil},
		{"ClusterIP A", "backend.shop.svc.cluster.local.", miekg.TypeA, 0,
			[]string{"backend.shop.svc.cluster.local. IN A 10.96.0.20"}, nil},
		{"ClusterIP AAAA (dual-stack)", "backend.shop.svc.cluster.local.", miekg.TypeAAAA, 0,
			[]string{"backend.shop.svc.cluster.local. IN AAAA fd00:96::20"}, nil},
		{"ClusterIP without the other family is NODATA", "web.shop.svc.cluster.local.", miekg.TypeAAAA, 0, nil, nil},
		{"ClusterIP SRV per named port", "_http._tcp.backend.shop.svc.cluster.local.", miekg.TypeSRV, 0,
			[]string{"_http._tcp.backend.shop.svc.cluster.local. IN SRV 0 100 80 backend.shop.svc.cluster.local."},
			[]string{"backend.shop.svc.cluster.local. IN A 10.96.0.20", "backend.shop.svc.cluster.local. IN AAAA fd00:96::20"}},
		{"ClusterIP SRV of a UDP port", "_dns._udp.backend.shop.svc.cluster.local.", miekg.TypeSRV, 0,
			[]string{"_dns._udp.backend.shop.svc.cluster.local. IN SRV 0 100 53 backend.shop.svc.cluster.local."},
			[]string{"backend.shop.svc.cluster.local. IN A 10.96.0.20", "backend.shop.svc.cluster.local. IN AAAA fd00:96::20"}},
		{"no SRV for a port of another protocol", "_http._udp.backend.shop.svc.cluster.local.", miekg.TypeSRV, miekg.RcodeNameError, nil, nil},
		{"headless A per ready endpoint (nil ready counts as ready)", "db.shop.svc.cluster.local.", miekg.TypeA, 0,
			[]string{"db.shop.svc.cluster.local. IN A 10.244.1.5", "db.shop.svc.cluster.local. IN A 10.244.2.6"}, nil},
		{"headless AAAA", "db.shop.svc.cluster.local.", miekg.TypeAAAA, 0,
			[]string{"db.shop.svc.cluster.local. IN AAAA fd00:244:1::5"}, nil},
		{"headless without a ready endpoint is NXDOMAIN", "empty.shop.svc.cluster.local.", miekg.TypeA, miekg.RcodeNameError, nil, nil},
		{"publishNotReadyAddresses makes every endpoint ready", "early.shop.svc.cluster.local.", miekg.TypeA, 0,
			[]string{"early.shop.svc.cluster.local. IN A 10.244.1.10"}, nil},
		{"headless endpoint by hostname", "db-0.db.shop.svc.cluster.local.", miekg.TypeA, 0,
			[]string{"db-0.db.shop.svc.cluster.local. IN A 10.244.1.5"}, nil},
		{"headless endpoint by hostname, both families", "db-0.db.shop.svc.cluster.local.", miekg.TypeAAAA, 0,
			[]string{"db-0.db.shop.svc.cluster.local. IN AAAA fd00:244:1::5"}, nil},
		{"headless endpoint without hostname by its dashed address", "10-244-2-6.db.shop.svc.cluster.local.", miekg.TypeA, 0,
			[]string{"10-244-2-6.db.shop.svc.cluster.local. IN A 10.244.2.6"}, nil},
		{"not-ready endpoint has no name", "db-2.db.shop.svc.cluster.local.", miekg.TypeA, miekg.RcodeNameError, nil, nil},
		{"headless SRV per ready endpoint and named port", "_pg._tcp.db.shop.svc.cluster.local.", miekg.TypeSRV, 0,
			[]string{
				// db-0 is in the IPv4 and the IPv6 slice: one target.
				"_pg._tcp.db.shop.svc.cluster.local. IN SRV 0 50 5432 10-244-2-6.db.shop.svc.cluster.local.",
				"_pg._tcp.db.shop.svc.cluster.local. IN SRV 0 50 5432 db-0.db.shop.svc.cluster.local.",
			},
			[]string{"10-244-2-6.db.shop.svc.cluster.local. IN A 10.244.2.6", "db-0.db.shop.svc.cluster.local. IN A 10.244.1.5",
				"db-0.db.shop.svc.cluster.local. IN AAAA fd00:244:1::5"}},
		{"ExternalName is a CNAME", "search.other.svc.cluster.local.", miekg.TypeCNAME, 0,
			[]string{"search.other.svc.cluster.local. IN CNAME search.example.com."}, nil},
		{"ExternalName inside the zone is followed", "alias.other.svc.cluster.local.", miekg.TypeA, 0,
			[]string{"alias.other.svc.cluster.local. IN CNAME web.shop.svc.cluster.local.", "web.shop.svc.cluster.local. IN A 10.96.0.30"}, nil},
		{"PTR of a ClusterIP", "20.0.96.10.in-addr.arpa.", miekg.TypePTR, 0,
			[]string{"20.0.96.10.in-addr.arpa. IN PTR backend.shop.svc.cluster.local."}, nil},
		{"PTR of a ClusterIP, IPv6 nibbles", "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.", miekg.TypePTR, 0,
			[]string{"0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa. IN PTR backend.shop.svc.cluster.local."}, nil},
		{"PTR of a headless endpoint", "5.1.244.10.in-addr.arpa.", miekg.TypePTR, 0,
			[]string{"5.1.244.10.in-addr.arpa. IN PTR db-0.db.shop.svc.cluster.local."}, nil},
		{"pod record", "10-244-1-77.shop.pod.cluster.local.", miekg.TypeA, 0,
			[]string{"10-244-1-77.shop.pod.cluster.local. IN A 10.244.1.77"}, nil},
		{"pod record, IPv6 with dashes", "fd00-244-1--77.shop.pod.cluster.local.", miekg.TypeAAAA, 0,
			[]string{"fd00-244-1--77.shop.pod.cluster.local. IN AAAA fd00:244:1::77"}, nil},
		{"pod record that spells no address", "not-an-ip.shop.pod.cluster.local.", miekg.TypeA, miekg.RcodeNameError, nil, nil},
		{"endpoints name gives every ready endpoint", "web.shop.endpoints.cluster.local.", miekg.TypeA, 0,
			[]string{"web.shop.endpoints.cluster.local. IN A 10.244.1.20"}, nil},
		{"existing name, missing type is NODATA", "backend.shop.svc.cluster.local.", miekg.TypeMX, 0, nil, nil},
		{"unknown name is NXDOMAIN", "nothing.shop.svc.cluster.local.", miekg.TypeA, miekg.RcodeNameError, nil, nil},
		{"unknown namespace is NXDOMAIN", "backend.nowhere.svc.cluster.local.", miekg.TypeA, miekg.RcodeNameError, nil, nil},
		{"a namespace with Services exists, without records", "shop.svc.cluster.local.", miekg.TypeA, 0, nil, nil},
		{"svc exists, without records", "svc.cluster.local.", miekg.TypeA, 0, nil, nil},
		{"apex SOA", "cluster.local.", miekg.TypeSOA, 0,
			[]string{"cluster.local. IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}, nil},
		{"ANY is answered minimally (RFC 8482)", "backend.shop.svc.cluster.local.", miekg.TypeANY, 0,
			[]string{"backend.shop.svc.cluster.local. IN A 10.96.0.20", "backend.shop.svc.cluster.local. IN AAAA fd00:96::20"}, nil},
		{"a Service whose name is not a DNS label is skipped", "bad name.other.svc.cluster.local.", miekg.TypeA, miekg.RcodeNameError, nil, nil},
		{"an ExternalName that is not a DNS name is skipped", "badext.other.svc.cluster.local.", miekg.TypeCNAME, miekg.RcodeNameError, nil, nil},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			m := ask(h, tc.name, tc.qtype)
			if m.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", miekg.RcodeToString[m.Rcode], miekg.RcodeToString[tc.rcode])
			}
			if diff := cmp.Diff(tc.answer, rrs(m.Answer)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.extra, rrs(m.Extra)); diff != "" {
				t.Errorf("additional (-want +got):\n%s", diff)
			}
			if !m.Authoritative {
				t.Error("not authoritative")
			}
			if len(m.Answer) == 0 {
				// NODATA and NXDOMAIN carry the SOA, its TTL the negative TTL.
				if len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != miekg.TypeSOA || m.Ns[0].(*miekg.SOA).Minttl != 5 {
					t.Errorf("negative answer's authority: %v", m.Ns)
				}
			}
			for _, rr := range m.Answer {
				if rr.Header().Ttl != 5 {
					t.Errorf("TTL %d, want 5: %s", rr.Header().Ttl, rr)
				}
			}
		})
	}
}

// TestPodRecordsOff: with pod records off, pod names do not exist.
func TestPodRecordsOff(t *testing.T) {
	h := testHandler(t, false)
	if m := ask(h, "10-244-1-77.shop.pod.cluster.local.", miekg.TypeA); m.Rcode != miekg.RcodeNameError {
		t.Errorf("rcode %s, want NXDOMAIN", miekg.RcodeToString[m.Rcode])
	}
}

// TestBeforeFirstSnapshot: a query for the zone before the first
// complete snapshot waits for it, and is answered when it comes; one
// that waits longer than firstWait gets SERVFAIL, never a wrong
// NXDOMAIN.
func TestBeforeFirstSnapshot(t *testing.T) {
	h := testHandler(t, true)
	h.zone.Store(nil)
	h.zoned, h.zonedOnce = make(chan struct{}), sync.Once{}
	start := time.Now()
	if m := ask(h, "backend.shop.svc.cluster.local.", miekg.TypeA); m.Rcode != miekg.RcodeServerFailure {
		t.Errorf("no snapshot: rcode %s, want SERVFAIL", miekg.RcodeToString[m.Rcode])
	}
	if took := time.Since(start); took < h.firstWait {
		t.Errorf("no snapshot: SERVFAIL after %s, want it to wait %s first", took, h.firstWait)
	}
	// Past the bound of waiting questions, SERVFAIL at once.
	for range cap(h.inflight) {
		h.inflight <- struct{}{}
	}
	start = time.Now()
	if m := ask(h, "backend.shop.svc.cluster.local.", miekg.TypeA); m.Rcode != miekg.RcodeServerFailure || time.Since(start) >= h.firstWait {
		t.Errorf("no snapshot, the bound reached: rcode %s after %s, want SERVFAIL at once", miekg.RcodeToString[m.Rcode], time.Since(start))
	}
	for range cap(h.inflight) {
		<-h.inflight
	}
	h.firstWait = time.Minute
	answered := make(chan *miekg.Msg, 1)
	go func() { answered <- ask(h, "backend.shop.svc.cluster.local.", miekg.TypeA) }()
	time.Sleep(50 * time.Millisecond)
	h.setZone(NewMemo("cluster.local", 5).Build(testState(t, nil), 1))
	select {
	case m := <-answered:
		if m.Rcode != miekg.RcodeSuccess || len(m.Answer) != 1 {
			t.Errorf("held until the snapshot: rcode %s, answer %v", miekg.RcodeToString[m.Rcode], m.Answer)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a query held for the first snapshot was not answered when it came")
	}
}

// TestRefusedQuestions: zone transfers and classes other than IN are
// refused; opcodes other than QUERY are not implemented; a query without
// exactly one question is a format error; EDNS versions past 0 get
// BADVERS.
func TestRefusedQuestions(t *testing.T) {
	h := testHandler(t, true)
	q := func(edit func(*miekg.Msg)) int {
		req := new(miekg.Msg)
		req.SetQuestion("backend.shop.svc.cluster.local.", miekg.TypeA)
		edit(req)
		return h.resolve(context.Background(), req).Rcode
	}
	for _, tc := range []struct {
		name string
		edit func(*miekg.Msg)
		want int
	}{
		{"AXFR", func(m *miekg.Msg) { m.Question[0].Qtype = miekg.TypeAXFR }, miekg.RcodeRefused},
		{"IXFR", func(m *miekg.Msg) { m.Question[0].Qtype = miekg.TypeIXFR }, miekg.RcodeRefused},
		{"class CHAOS", func(m *miekg.Msg) { m.Question[0].Qclass = miekg.ClassCHAOS }, miekg.RcodeRefused},
		{"opcode UPDATE", func(m *miekg.Msg) { m.Opcode = miekg.OpcodeUpdate }, miekg.RcodeNotImplemented},
		{"no question", func(m *miekg.Msg) { m.Question = nil }, miekg.RcodeFormatError},
		{"two questions", func(m *miekg.Msg) { m.Question = append(m.Question, m.Question[0]) }, miekg.RcodeFormatError},
		{"EDNS version 1", func(m *miekg.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }, miekg.RcodeBadVers},
	} {
		if got := q(tc.edit); got != tc.want {
			t.Errorf("%s: rcode %s, want %s", tc.name, miekg.RcodeToString[got], miekg.RcodeToString[tc.want])
		}
	}
}

// TestZoneFollowsSnapshots: a Service's names come and go with it, and
// an unchanged Service keeps the records built for it.
func TestZoneFollowsSnapshots(t *testing.T) {
	memo := NewMemo("cluster.local", 5)
	st := testState(t, nil)
	z1 := memo.Build(st, 1)
	z2 := memo.Build(testState(t, func(s string) string {
		return strings.Replace(s, "clusterIP: 10.96.0.30", "clusterIP: 10.96.0.31", 1)
	}), 2)
	if z1.service("backend.shop") == nil || z1.service("web.shop") == nil {
		t.Fatal("the first zone lacks Services")
	}
	r, _ := z2.lookup("web.shop.svc.cluster.local.", true)
	if len(r.addrs) != 1 || r.addrs[0].(*miekg.A).A.String() != "10.96.0.31" {
		t.Errorf("after the change web is %v", r.addrs)
	}
	z3 := memo.Build(st, 3)
	if _, ok := z3.lookup("web.shop.svc.cluster.local.", true); !ok {
		t.Error("web is gone")
	}
	probs := strings.Join(z3.Problems(), "\n")
	for _, want := range []string{"invalid-name", "invalid-external-name"} {
		if !strings.Contains(probs, want) {
			t.Errorf("problems lack %s:\n%s", want, probs)
		}
	}
}

// TestUnusableAddresses: a loopback, link-local or multicast address
// (which the API server refuses, and a cluster file may hold) is never
// answered: not as an endpoint of a headless Service, nor as a ClusterIP.
func TestUnusableAddresses(t *testing.T) {
	h := testHandler(t, true)
	h.zone.Store(NewMemo("cluster.local", 5).Build(testState(t, func(s string) string {
		return s + `---
apiVersion: v1
kind: Service
metadata: {name: lo, namespace: shop}
spec:
  clusterIP: None
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lo-1, namespace: shop, labels: {kubernetes.io/service-name: lo}}
addressType: IPv4
endpoints:
- {addresses: [127.0.0.1]}
- {addresses: [224.0.0.1]}
- {addresses: [10.244.1.20]}
---
apiVersion: v1
kind: Service
metadata: {name: meta, namespace: shop}
spec:
  clusterIP: 169.254.169.254
  clusterIPs: [169.254.169.254, "fd00:96::99"]
  ipFamilyPolicy: PreferDualStack
  ports:
  - {name: http, port: 80, protocol: TCP}
`
	}), 1))
	for _, tc := range []struct {
		name string
		qt   uint16
		want []string
	}{
		{"lo.shop.svc.cluster.local.", miekg.TypeA, []string{"lo.shop.svc.cluster.local. IN A 10.244.1.20"}},
		{"meta.shop.svc.cluster.local.", miekg.TypeAAAA, []string{"meta.shop.svc.cluster.local. IN AAAA fd00:96::99"}},
		{"meta.shop.svc.cluster.local.", miekg.TypeA, nil},
		{"1.0.0.127.in-addr.arpa.", miekg.TypePTR, nil},
		{"254.169.254.169.in-addr.arpa.", miekg.TypePTR, nil},
	} {
		r := ask(h, tc.name, tc.qt)
		if diff := cmp.Diff(tc.want, rrs(r.Answer)); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tc.name, miekg.TypeToString[tc.qt], diff)
		}
	}
}
