package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"runtime"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// MaxFileSize bounds the cluster file read into memory.
const MaxFileSize = 64 << 20

// ParseFile reads Kubernetes objects from YAML (one or more documents) or
// JSON: objects, or Lists of them. Nodes, Services, EndpointSlices and
// ServiceCIDRs are kept (a namespaced object without a namespace is in
// "default", as kubectl has it); kinds skeind does not read are ignored.
// A document that does not parse fails the whole file, so a half-written
// file never becomes a snapshot.
func ParseFile(data []byte) (*State, error) { return (&Parser{}).Parse(data) }

// Parser is ParseFile with a memory: the items of a JSON List that are
// byte for byte those of the last file it parsed are not decoded again,
// and come back as the same objects. A change to one Service of ten
// thousand then costs one Service's decoding (and lets the controllers
// memoize per object), not the whole file's. The zero value is ready.
type Parser struct {
	seed  maphash.Seed
	items map[uint64]*item // the last good file's List items, by content hash
	// last is the last good JSON List's split: a file that differs from
	// it in a stretch of items is split again around that stretch only.
	last     lastSplit
	lastKind string
	// Kept between parses to be reused (see list).
	spare       map[uint64]*item
	spareHashes []uint64
	itemsBuf    []*item
	seen        map[string]bool
}

// Parse implements ParseFile.
func (p *Parser) Parse(data []byte) (*State, error) {
	st := &State{}
	seen := map[string]bool{}
	// A file that is one JSON object (what a generator writes) decodes in
	// one pass; anything else goes through the YAML/JSON stream decoder.
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		var head struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		// Splitting the items by hand is an order of magnitude faster
		// than encoding/json's scan; what is not plain goes the slow way.
		var spans []span
		var reused []int
		var arr span
		var ok bool
		if spans, reused, arr, ok = p.last.resplit(trimmed); ok {
			head.Kind = p.lastKind // the change is inside the items
		}
		if !ok {
			var rest []byte
			rest, spans, arr, ok = splitSpans(trimmed)
			ok = ok && json.Unmarshal(rest, &head) == nil
			reused = nil
		}
		if ok && isList(head.Kind) {
			if p.seen == nil {
				p.seen = make(map[string]bool, len(spans))
			}
			clear(p.seen)
			if err := p.list(st, trimmed, spans, reused, p.seen); err != nil {
				return nil, fmt.Errorf("document 0: %w", err)
			}
			p.last.head = append([]byte(nil), trimmed[:arr.start+1]...)
			p.last.tail = append([]byte(nil), trimmed[arr.end:]...)
			p.last.arrEnd, p.last.seed, p.lastKind = arr.end, p.seed, head.Kind
			return st, nil
		}
		if ok || json.Unmarshal(trimmed, &head) == nil {
			var err error
			if isList(head.Kind) {
				err = listRaw(st, head.Items, seen)
			} else {
				var o object
				if err = json.Unmarshal(trimmed, &o); err == nil {
					err = st.add(&o, seen, 0)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("document 0: %w", err)
			}
			return st, nil
		}
	}
	return parseStream(data, st, seen)
}

// parseStream decodes a YAML or JSON stream of objects, or Lists of
// them, into st.
func parseStream(data []byte, st *State, seen map[string]bool) (*State, error) {
	objects := 0
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 0; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		var o object
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if err := st.add(&o, seen, 0); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		objects++
	}
	// An empty file is far more likely one caught between truncate and
	// write than a cluster without nodes; taking it would drop every peer.
	if objects == 0 {
		return nil, fmt.Errorf("the file holds no objects")
	}
	return st, nil
}

// list takes the items of a top-level JSON List, data[spans[i]], decoding
// only those it has not seen in the last file: reused[i], when there is
// one and it is not -1, is the index of the same bytes in the last file.
func (p *Parser) list(st *State, data []byte, spans []span, reused []int, seen map[string]bool) error {
	if p.items == nil {
		p.seed = maphash.MakeSeed()
	}
	// The maps and slices of the last parse but one are reused: a change
	// to a large file must not leave the file's size in garbage.
	next := p.spare
	if next == nil {
		next = make(map[uint64]*item, len(spans))
	}
	clear(next)
	hashes := slices.Grow(p.spareHashes[:0], len(spans))[:len(spans)]
	items := slices.Grow(p.itemsBuf[:0], len(spans))[:len(spans)]
	clear(items)
	p.itemsBuf = items
	var fresh []int // the items to decode
	for i, sp := range spans {
		if reused != nil && reused[i] >= 0 {
			hashes[i] = p.last.hashes[reused[i]]
		} else {
			hashes[i] = maphash.Bytes(p.seed, data[sp.start:sp.end])
		}
		if it, ok := p.items[hashes[i]]; ok {
			items[i] = it
		} else {
			fresh = append(fresh, i)
		}
	}
	if i, err := decodeItems(data, spans, fresh, items); err != nil {
		return fmt.Errorf("item %d: %w", i, err)
	}
	var nodes, svcs, eps int
	for _, it := range items {
		if it != nil {
			nodes, svcs, eps = nodes+btoi(it.node != nil), svcs+btoi(it.svc != nil), eps+btoi(it.es != nil)
		}
	}
	// Sized up front (left nil when none, as the other paths leave them).
	if nodes > 0 {
		st.Nodes = make([]corev1.Node, 0, nodes)
	}
	if svcs > 0 {
		st.Services = make([]*corev1.Service, 0, svcs)
	}
	if eps > 0 {
		st.EndpointSlices = make([]*discoveryv1.EndpointSlice, 0, eps)
	}
	for i, it := range items {
		next[hashes[i]] = it
		if err := st.take(it, seen); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	p.spare, p.items = p.items, next
	p.spareHashes, p.last.hashes = p.last.hashes, hashes
	p.last.spans = spans
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// decodeItems decodes the items of data at spans[fresh[…]] into items,
// on every CPU when there are many (a cold start with thousands of
// Services); it returns the first item that does not decode, by index.
func decodeItems(data []byte, spans []span, fresh []int, items []*item) (int, error) {
	// decode returns the part's first failure.
	decode := func(part []int) (int, error) {
		for _, i := range part {
			var err error
			if items[i], err = decodeItem(data[spans[i].start:spans[i].end]); err != nil {
				return i, err
			}
		}
		return -1, nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(fresh)/parallelDecodeMin)
	if workers < 2 {
		return decode(fresh)
	}
	per := (len(fresh) + workers - 1) / workers
	type failure struct {
		i   int
		err error
	}
	failures := make([]failure, workers)
	var wg sync.WaitGroup
	w := 0
	for part := range slices.Chunk(fresh, per) {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			failures[w].i, failures[w].err = decode(part)
		}(w)
		w++
	}
	wg.Wait()
	for _, f := range failures { // parts in order: the first failure is the lowest index
		if f.err != nil {
			return f.i, f.err
		}
	}
	return -1, nil
}

// parallelDecodeMin is the fewest items worth a goroutine of their own.
const parallelDecodeMin = 512

// listRaw takes the items of a List decoded by encoding/json.
func listRaw(st *State, raws []json.RawMessage, seen map[string]bool) error {
	for i, raw := range raws {
		it, err := decodeItem(raw)
		if err == nil {
			err = st.take(it, seen)
		}
		if err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

// decodeItem decodes and converts one item of a List.
func decodeItem(raw []byte) (*item, error) {
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	if isList(o.Kind) {
		return nil, fmt.Errorf("a %s inside a List", o.Kind)
	}
	return convert(&o)
}

func isList(kind string) bool {
	switch kind {
	case "List", "NodeList", "ServiceList", "EndpointSliceList", "ServiceCIDRList":
		return true
	}
	return false
}

// item is one object of the file, converted; nil for kinds skeind does
// not read.
type item struct {
	key  string // unique in a file: the Node's name, or "Kind namespace/name"
	node *corev1.Node
	svc  *corev1.Service
	es   *discoveryv1.EndpointSlice
	cidr *networkingv1.ServiceCIDR
}

// object is the part of a Kubernetes object (or List) skeind reads: the
// fields of a Node, a Service and an EndpointSlice side by side (their
// names do not collide). A document decodes into it in one pass, items
// and all, for a fraction of the cost of full typed objects: that matters
// with thousands of nodes or services.
type object struct {
	Kind     string   `json:"kind"`
	Items    []object `json:"items"`
	Metadata struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
		CreationTimestamp metav1.Time       `json:"creationTimestamp"`
		DeletionTimestamp *metav1.Time      `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR  string         `json:"podCIDR"`
		PodCIDRs []string       `json:"podCIDRs"`
		Taints   []corev1.Taint `json:"taints"`
		CIDRs    []string       `json:"cidrs"` // a ServiceCIDR's
		// A Service's spec, allocated only when a document has one.
		*corev1.ServiceSpec
	} `json:"spec"`
	Status struct {
		Addresses    []corev1.NodeAddress      `json:"addresses"`
		LoadBalancer corev1.LoadBalancerStatus `json:"loadBalancer"`
	} `json:"status"`
	// An EndpointSlice's fields.
	AddressType discoveryv1.AddressType    `json:"addressType"`
	Endpoints   []discoveryv1.Endpoint     `json:"endpoints"`
	Ports       []discoveryv1.EndpointPort `json:"ports"`
}

func (o *object) meta() metav1.ObjectMeta {
	ns := o.Metadata.Namespace
	if ns == "" {
		ns = "default"
	}
	return metav1.ObjectMeta{Name: o.Metadata.Name, Namespace: ns, Labels: o.Metadata.Labels,
		Annotations: o.Metadata.Annotations, CreationTimestamp: o.Metadata.CreationTimestamp}
}

func (st *State) add(o *object, seen map[string]bool, depth int) error {
	if isList(o.Kind) {
		if depth > 0 {
			return fmt.Errorf("a %s inside a List", o.Kind)
		}
		for i := range o.Items {
			if err := st.add(&o.Items[i], seen, depth+1); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		return nil
	}
	it, err := convert(o)
	if err != nil {
		return err
	}
	return st.take(it, seen)
}

// convert turns a decoded object into the typed one skeind keeps.
func convert(o *object) (*item, error) {
	switch o.Kind {
	case "Node":
		if o.Metadata.Name == "" {
			return nil, fmt.Errorf("a Node without metadata.name")
		}
		n := &corev1.Node{}
		n.Name = o.Metadata.Name
		n.Annotations, n.Labels = o.Metadata.Annotations, o.Metadata.Labels
		n.CreationTimestamp, n.DeletionTimestamp = o.Metadata.CreationTimestamp, o.Metadata.DeletionTimestamp
		n.Spec.PodCIDR, n.Spec.PodCIDRs, n.Spec.Taints = o.Spec.PodCIDR, o.Spec.PodCIDRs, o.Spec.Taints
		n.Status.Addresses = o.Status.Addresses
		return &item{key: n.Name, node: n}, nil
	case "Service", "EndpointSlice":
		m := o.meta()
		if m.Name == "" {
			return nil, fmt.Errorf("a %s without metadata.name", o.Kind)
		}
		it := &item{key: o.Kind + " " + m.Namespace + "/" + m.Name}
		if o.Kind == "Service" {
			it.svc = &corev1.Service{ObjectMeta: m}
			if o.Spec.ServiceSpec != nil {
				it.svc.Spec = *o.Spec.ServiceSpec
			}
			it.svc.Status.LoadBalancer = o.Status.LoadBalancer
		} else {
			it.es = &discoveryv1.EndpointSlice{ObjectMeta: m, AddressType: o.AddressType, Endpoints: o.Endpoints, Ports: o.Ports}
		}
		return it, nil
	case "ServiceCIDR":
		if o.Metadata.Name == "" {
			return nil, fmt.Errorf("a ServiceCIDR without metadata.name")
		}
		c := &networkingv1.ServiceCIDR{Spec: networkingv1.ServiceCIDRSpec{CIDRs: o.Spec.CIDRs}}
		c.Name, c.Labels = o.Metadata.Name, o.Metadata.Labels
		return &item{key: "ServiceCIDR " + c.Name, cidr: c}, nil
	case "":
		return nil, fmt.Errorf("an object without kind")
	}
	return nil, nil
}

// take adds an item to the snapshot; an object twice fails the file.
func (st *State) take(it *item, seen map[string]bool) error {
	if it == nil {
		return nil
	}
	if seen[it.key] {
		if it.node != nil {
			return fmt.Errorf("Node %q appears twice", it.key)
		}
		return fmt.Errorf("%s appears twice", it.key)
	}
	seen[it.key] = true
	switch {
	case it.node != nil:
		st.Nodes = append(st.Nodes, *it.node)
	case it.svc != nil:
		st.Services = append(st.Services, it.svc)
	case it.es != nil:
		st.EndpointSlices = append(st.EndpointSlices, it.es)
	case it.cidr != nil:
		st.ServiceCIDRs = append(st.ServiceCIDRs, it.cidr)
	}
	return nil
}
