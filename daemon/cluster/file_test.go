package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const twoNodes = `
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24]}
status: {addresses: [{type: InternalIP, address: 172.30.0.11}]}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: node2, annotations: {skein.dev/vtep-mac: "0e:00:00:00:00:02"}, labels: {topology.kubernetes.io/zone: z2},
    deletionTimestamp: "2026-01-02T00:00:00Z"}
  spec: {podCIDRs: [10.244.2.0/24, "fd00:10:244:2::/64"], taints: [{key: ToBeDeletedByClusterAutoscaler, effect: NoSchedule}]}
  status: {addresses: [{type: InternalIP, address: 172.30.0.12}]}
- apiVersion: v1
  kind: Service
  metadata: {name: ignored-for-now}
`

func TestParseFile(t *testing.T) {
	st, err := ParseFile([]byte(twoNodes))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 2 {
		t.Fatalf("%d nodes, want 2", len(st.Nodes))
	}
	n2, ok := st.Node("node2")
	if !ok || len(n2.Spec.PodCIDRs) != 2 || n2.Annotations["skein.dev/vtep-mac"] == "" {
		t.Fatalf("node2 = %+v", n2)
	}
	// What the Service proxy reads: the zone, and whether the node is
	// going away.
	if n2.Labels["topology.kubernetes.io/zone"] != "z2" || n2.DeletionTimestamp == nil ||
		len(n2.Spec.Taints) != 1 || n2.Spec.Taints[0].Key != "ToBeDeletedByClusterAutoscaler" {
		t.Errorf("node2's labels, deletion and taints: %+v", n2)
	}
	// JSON works as well.
	st, err = ParseFile([]byte(`{"kind":"NodeList","items":[{"kind":"Node","metadata":{"name":"a"}}]}`))
	if err != nil || len(st.Nodes) != 1 {
		t.Fatalf("JSON: %v, %v", st, err)
	}
}

func TestParseFileRejects(t *testing.T) {
	for _, tc := range []struct{ name, data, msg string }{
		{"garbage", "kind: Node\nmetadata: [", "document 0"},
		{"no kind", "metadata: {name: x}", "without kind"},
		{"no name", "kind: Node\nmetadata: {}", "without metadata.name"},
		{"twice", "kind: Node\nmetadata: {name: a}\n---\nkind: Node\nmetadata: {name: a}", "appears twice"},
		{"bad field type", "kind: Node\nmetadata: {name: a}\nspec: {podCIDRs: 7}", "podCIDRs"},
		{"nested list", `{"kind":"List","items":[{"kind":"List","items":[]}]}`, "inside a List"},
		{"empty", "", "no objects"},
		{"only separators", "---\n---\n", "no objects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want it to say %q", err, tc.msg)
			}
		})
	}
}

func TestFileSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(path, []byte(twoNodes), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan *State)
	// A long fallback poll: changes must be seen through inotify.
	src := &FileSource{Path: path, Interval: time.Hour, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	go src.Run(ctx, updates)
	next := func() *State { return nextSnapshot(t, updates) }
	if st := next(); len(st.Nodes) != 2 {
		t.Fatalf("first snapshot has %d nodes", len(st.Nodes))
	}
	// A broken file, or one emptied (as a writer does before writing),
	// is not a snapshot; the next good one is.
	if err := os.WriteFile(path, []byte("kind: Node\nmetadata: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-updates:
		t.Fatalf("broken file produced a snapshot: %+v", st)
	case <-time.After(100 * time.Millisecond):
	}
	// Replaced by rename, as editors and config management do.
	if err := os.WriteFile(path+".new", []byte("kind: Node\nmetadata: {name: only}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if st := next(); len(st.Nodes) != 1 || st.Nodes[0].Name != "only" {
		t.Fatalf("after the fix: %+v", st.Nodes)
	}
}

// FuzzParseFile: arbitrary bytes never panic, and an accepted file has
// named, distinct nodes.
func FuzzParseFile(f *testing.F) {
	f.Add([]byte(twoNodes))
	f.Add([]byte(`{"kind":"List","items":[{"kind":"Node","metadata":{"name":"a"},"spec":{"podCIDRs":["x"]}}]}`))
	f.Add([]byte("---\n---\nkind: Node\nmetadata:\n  name: n\n  annotations: {a: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseFile(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, n := range st.Nodes {
			if n.Name == "" || seen[n.Name] {
				t.Fatalf("accepted nodes %v", st.Nodes)
			}
			seen[n.Name] = true
		}
	})
}

// TestParserKeepsUnchangedItems: a List item that did not change comes
// back as the same object; a changed one is decoded anew.
func TestParserKeepsUnchangedItems(t *testing.T) {
	file := func(port int) []byte {
		return []byte(fmt.Sprintf(`{"kind":"List","items":[
{"kind":"Service","metadata":{"name":"a"},"spec":{"clusterIP":"10.96.0.1"}},
{"kind":"Service","metadata":{"name":"b"},"spec":{"clusterIP":"10.96.0.2","ports":[{"port":%d}]}}]}`, port))
	}
	var p Parser
	first, err := p.Parse(file(80))
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Parse(file(81))
	if err != nil {
		t.Fatal(err)
	}
	if first.Services[0] != second.Services[0] {
		t.Error("the unchanged Service was decoded again")
	}
	if first.Services[1] == second.Services[1] || second.Services[1].Spec.Ports[0].Port != 81 {
		t.Errorf("the changed Service is %+v", second.Services[1].Spec)
	}
	// A bad file changes nothing, and a duplicate from the cache is
	// still a duplicate.
	if _, err := p.Parse([]byte(`{"kind":"List","items":[{"kind":"Service","metadata":{"name":"a"}},{"kind":"Service","metadata":{"name":"a"}}]}`)); err == nil {
		t.Error("a Service twice was accepted")
	}
}

// TestReparse parses a List, then edits of it, with one Parser, and
// checks each against a parse from nothing: items changed, added and
// removed at the start, middle and end, space between items changed,
// the head changed, the file broken and mended.
func TestReparse(t *testing.T) {
	svc := func(i, port int) string {
		return fmt.Sprintf(`{"kind":"Service","metadata":{"name":"s%d","namespace":"n"},"spec":{"clusterIP":"10.96.0.%d","ports":[{"port":%d}]}}`, i, i, port)
	}
	list := func(kind string, items ...string) string {
		return `{"apiVersion":"v1","kind":"` + kind + `","items":[` + strings.Join(items, ",") + `]}`
	}
	base := []string{svc(1, 80), svc(2, 80), svc(3, 80), svc(4, 80)}
	edits := []string{
		list("List", base...),
		list("List", svc(1, 80), svc(2, 81), svc(3, 80), svc(4, 80)),             // one changed
		list("List", svc(1, 80), svc(2, 81), svc(5, 80), svc(3, 80), svc(4, 80)), // one added
		list("List", svc(0, 80), svc(1, 80), svc(2, 81), svc(5, 80), svc(3, 80), svc(4, 80)),
		list("List", svc(0, 80), svc(1, 80), svc(2, 81), svc(5, 80), svc(3, 80), svc(4, 80), svc(6, 80)),
		list("List", svc(1, 80), svc(2, 81), svc(5, 80), svc(3, 80), svc(4, 80)), // first and last gone
		list("List", svc(1, 80), svc(5, 80), svc(4, 80)),
		`{"apiVersion":"v1","kind":"List","items":[` + svc(1, 80) + ` , ` + svc(5, 80) + ",\n" + svc(4, 80) + `]}`,
		list("List", svc(1, 80), svc(5, 80), svc(4, 80)),
		// A comma gone, nothing moved: refused, at the front and the back.
		strings.Replace(list("List", svc(1, 80), svc(5, 80), svc(4, 80)), "}},{", "}} {", 1),
		list("List", svc(1, 80), svc(5, 80), svc(4, 80)),
		list("List", svc(1, 80), svc(5, 80)+` `+svc(4, 80)),
		list("List", svc(1, 80), svc(5, 80), svc(4, 80)),
		list("List", svc(1, 81), svc(5, 80)+` `+svc(4, 80)),
		list("List", svc(1, 80), svc(5, 80), svc(4, 80)),
		list("List", svc(1, 80), svc(5, 80), svc(4, 80)+`,`),      // a trailing comma: refused
		list("List", svc(1, 80), svc(5, 80)+`,,`+svc(4, 80)),      // an empty item: refused
		list("List", svc(1, 80), svc(5, 80)+svc(4, 80)),           // no comma: refused
		list("List", svc(1, 80), svc(5, 80), `{"kind":"Service"`), // cut short: refused
		list("List", svc(1, 80), svc(5, 80), `7`),
		list("List", svc(1, 80), svc(1, 80)), // twice: refused
		list("List"),
		list("List", svc(9, 80)),
		list("ServiceList", svc(9, 80), svc(8, 80)),
		list("List", svc(9, 80), svc(8, 80)),
		list("List", svc(9, 80), `{"kind":"Service","metadata":{"name":"q\"}{]"},"spec":{"clusterIP":"10.96.1.1"}}`, svc(8, 80)),
		list("List", svc(9, 80), `{"kind":"Service","metadata":{"name":"q\\"},"spec":{"clusterIP":"10.96.1.1"}}`, svc(8, 80)),
	}
	var p Parser
	for i, e := range edits {
		got, gerr := p.Parse([]byte(e))
		want, werr := ParseFile([]byte(e))
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("edit %d: reparsed, error %v; from nothing, %v", i, gerr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("edit %d: reparsed\n%+v\nfrom nothing\n%+v", i, got, want)
		}
	}
}

// FuzzReparse: a file parsed after another by the same Parser gives what
// it gives parsed from nothing.
func FuzzReparse(f *testing.F) {
	a := `{"kind":"List","items":[{"kind":"Service","metadata":{"name":"a"},"spec":{"clusterIP":"10.96.0.1"}},{"kind":"Node","metadata":{"name":"n"}}]}`
	f.Add([]byte(a), []byte(strings.Replace(a, "10.96.0.1", "10.96.0.2", 1)))
	f.Add([]byte(a), []byte(strings.Replace(a, `,{"kind":"Node"`, `,{"kind":"Node","metadata":{"name":"m"}},{"kind":"Node"`, 1)))
	f.Add([]byte(a), []byte(strings.Replace(a, `"}},{"kind":"Node","metadata":{"name":"n"}}`, `"}}`, 1)))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var p Parser
		_, _ = p.Parse(a)
		got, gerr := p.Parse(b)
		want, werr := ParseFile(b)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("reparsed, error %v; from nothing, %v", gerr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("reparsed\n%+v\nfrom nothing\n%+v", got, want)
		}
	})
}

// TestParseLargeList: a List large enough to be decoded on several CPUs
// gives what the one-by-one decoder of encoding/json gives, in the file's
// order, and a bad item far into it is reported by its index.
func TestParseLargeList(t *testing.T) {
	var items []string
	for i := 0; i < 3000; i++ {
		items = append(items, fmt.Sprintf(`{"kind":"Service","metadata":{"name":"s%d","namespace":"n"},"spec":{"clusterIP":"10.96.%d.%d"}}`, i, i/256, i%256))
	}
	file := `{"kind":"List","items":[` + strings.Join(items, ",") + `]}`
	got, err := (&Parser{}).Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := &State{}
	var raws struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(file), &raws); err != nil {
		t.Fatal(err)
	}
	if err := listRaw(want, raws.Items, map[string]bool{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("the List decoded differs from encoding/json's decoding")
	}
	items[2400] = `{"kind":"Service","metadata":{"namespace":"n"}}`
	_, err = (&Parser{}).Parse([]byte(`{"kind":"List","items":[` + strings.Join(items, ",") + `]}`))
	if err == nil || !strings.Contains(err.Error(), "item 2400:") {
		t.Errorf("a Service without a name at item 2400: %v", err)
	}
}

// TestParseKeepsNoBytes: the file source reads each version of the file
// into the same buffer, so nothing parsed may point into it.
func TestParseKeepsNoBytes(t *testing.T) {
	var items []string
	for i := 0; i < 1200; i++ {
		items = append(items, fmt.Sprintf(`{"kind":"Service","metadata":{"name":"s%d","namespace":"n","labels":{"a":"b"}},"spec":{"clusterIP":"10.96.%d.%d","ports":[{"name":"http","port":80}]}}`, i, i/256, i%256),
			fmt.Sprintf(`{"kind":"EndpointSlice","metadata":{"name":"s%d-1","namespace":"n","labels":{"kubernetes.io/service-name":"s%d"}},"addressType":"IPv4","endpoints":[{"addresses":["10.1.%d.%d"],"nodeName":"node1"}],"ports":[{"name":"http","port":8080}]}`, i, i, i/256, i%256))
	}
	for _, file := range []string{
		`{"kind":"List","items":[` + strings.Join(items, ",") + `]}`,
		"kind: List\nitems:\n- " + strings.Join(items, "\n- "),
	} {
		data := []byte(file)
		var p Parser
		got, err := p.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		want, err := (&Parser{}).Parse([]byte(file))
		if err != nil {
			t.Fatal(err)
		}
		for i := range data {
			data[i] = 'x'
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the parse changed with the bytes it came from (%.20s…)", file)
		}
	}
}

// TestReadLimited reads files into a buffer it is given and reuses,
// refusing one past the size limit.
func TestReadLimited(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	var buf []byte
	for _, size := range []int{0, 1, 4095, 4096, 100000, 10} {
		want := strings.Repeat("a", size)
		if err := os.WriteFile(path, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readLimited(path, buf)
		if err != nil || string(got) != want {
			t.Fatalf("size %d: %d bytes, %v", size, len(got), err)
		}
		buf = got
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if _, err := readLimited(path, buf); err == nil {
		t.Error("a file past the limit was read")
	}
}
