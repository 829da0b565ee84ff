package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skein-net/skein/daemon/cluster"
)

// bigState is n Services with eps endpoints each, all remote.
func bigState(n, eps int) *cluster.State {
	st := &cluster.State{Nodes: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.64.1.0/24"}}}}}
	port, name, proto := int32(8080), "http", corev1.ProtocolTCP
	for i := 0; i < n; i++ {
		svc := fmt.Sprintf("svc%d", i)
		st.Services = append(st.Services, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: "bench"},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.%d.%d", i/256, i%256),
				Ports: []corev1.ServicePort{{Name: name, Port: 80, Protocol: proto}}}})
		es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: svc + "-1", Namespace: "bench",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}}}
		for j := 0; j < eps; j++ {
			node := fmt.Sprintf("node%d", 2+j)
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 100+j, i/256, i%256)}, NodeName: &node})
		}
		st.EndpointSlices = append(st.EndpointSlices, &es)
	}
	return st
}

// BenchmarkPartialSync is the CPU side of one endpoint change at 10,000
// Services, as the controller runs it: the memoized model, each
// backend's desired rules from its cached chunks, and the diff.
func BenchmarkPartialSync(b *testing.B) {
	st := bigState(10000, 10)
	cfg := Config{NodeName: "node1", Families: []int{4}}
	var memo Memo
	prev := memo.Build(st, cfg)
	nf, ip := newNFTFamily(4, opts), newIPTFamily(4, opts)
	_, nc := nf.desired(&prev, nil, false)
	_, ic := ip.desired(&prev, nil, false)
	// change replaces one slice by an edited copy, as a source does.
	change := func(i int) {
		es := *st.EndpointSlices[0]
		es.Endpoints = append([]discoveryv1.Endpoint(nil), es.Endpoints...)
		es.Endpoints[0].Addresses = []string{fmt.Sprintf("10.99.%d.%d", i/256%256, i%256)}
		st.EndpointSlices[0] = &es
	}
	i := 0
	b.Run("model", func(b *testing.B) {
		for b.Loop() {
			i++
			change(i)
			memo.Build(st, cfg)
		}
	})
	b.Run("nftables", func(b *testing.B) {
		for b.Loop() {
			i++
			change(i)
			m := memo.Build(st, cfg)
			var ch nftChange
			ch, nc = nf.desired(&m, nc, true)
			nf.transaction(newFakeTx(4), ch.before, ch.after, nil, nil)
		}
	})
	b.Run("iptables", func(b *testing.B) {
		for b.Loop() {
			i++
			change(i)
			m := memo.Build(st, cfg)
			var ch iptChange
			ch, ic = ip.desired(&m, ic, true)
			restoreText(ch.before, ch.after, nil)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	st := bigState(10000, 10)
	data, err := json.Marshal(map[string]any{"kind": "List", "items": listItems(st)})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := cluster.ParseFile(data); err != nil {
			b.Fatal(err)
		}
	}
}

func listItems(st *cluster.State) []any {
	var items []any
	for i := range st.Nodes {
		n := st.Nodes[i]
		n.Kind = "Node"
		items = append(items, n)
	}
	for _, s := range st.Services {
		c := *s
		c.Kind = "Service"
		items = append(items, c)
	}
	for _, e := range st.EndpointSlices {
		c := *e
		c.Kind = "EndpointSlice"
		items = append(items, c)
	}
	return items
}

// BenchmarkReparse is the file source's cost for a file of 10,000
// Services of which one changed since the last read.
func BenchmarkReparse(b *testing.B) {
	st := bigState(10000, 10)
	data, err := json.Marshal(map[string]any{"kind": "List", "items": listItems(st)})
	if err != nil {
		b.Fatal(err)
	}
	// The other version: one endpoint of a Service in the middle moved.
	other := bytes.Replace(data, []byte(`"10.100.19.136"`), []byte(`"10.99.0.1"`), 1)
	if bytes.Equal(other, data) {
		b.Fatal("no endpoint to change")
	}
	var p cluster.Parser
	if _, err := p.Parse(data); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		i++
		next := data
		if i%2 == 1 {
			next = other
		}
		if _, err := p.Parse(next); err != nil {
			b.Fatal(err)
		}
	}
}
