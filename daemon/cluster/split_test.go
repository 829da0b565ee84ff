package cluster

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// reference splits the way encoding/json does.
func reference(data []byte) ([]string, bool) {
	var head struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &head); err != nil || head.Items == nil {
		return nil, false
	}
	var out []string
	for _, it := range head.Items {
		out = append(out, string(bytes.TrimSpace(it)))
	}
	return out, true
}

func TestSplitItems(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string // nil: not split
	}{
		{"list", `{"kind":"List","items":[{"a":1}, {"b":[2,3]} ,"x",4]}`, []string{`{"a":1}`, `{"b":[2,3]}`, `"x"`, `4`}},
		{"empty", `{"items":[]}`, []string{}},
		{"quotes and brackets in strings", `{"items":[{"s":"a \"]\" b\\"},{"t":"}{"}]}`, []string{`{"s":"a \"]\" b\\"}`, `{"t":"}{"}`}},
		{"items key nested is not the list", `{"x":{"items":[1]},"items":[2]}`, []string{`2`}},
		{"items as a value", `{"k":"items","items":[1]}`, []string{`1`}},
		{"truncated", `{"items":[{"a":1},`, nil},
		{"unterminated string", `{"items":["a]}`, nil},
		{"trailing garbage", `{"items":[1]} x`, nil},
		{"no items", `{"kind":"Node"}`, nil},
		{"empty element", `{"items":[1,,2]}`, nil},
		{"trailing comma", `{"items":[{"a":1},]}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, items, ok := splitItems([]byte(tc.data))
			if tc.want == nil {
				if ok {
					t.Fatalf("split %q into %q, want a refusal", tc.data, items)
				}
				return
			}
			got := []string{}
			for _, it := range items {
				got = append(got, string(it))
			}
			if !ok {
				t.Fatalf("refused %q", tc.data)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzSplitItems: on valid JSON the splitter finds what encoding/json
// finds; on invalid JSON it may split (it does not validate items), but
// the file is still refused.
func FuzzSplitItems(f *testing.F) {
	f.Add([]byte(`{"kind":"List","items":[{"kind":"Node","metadata":{"name":"a\"]"}},{"b":[1,{"c":"}"}]}]}`))
	f.Add([]byte(`{"items":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, items, ok := splitItems(data)
		if !ok {
			return
		}
		if !json.Valid(data) {
			if _, err := ParseFile(data); err == nil {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			return
		}
		want, _ := reference(data)
		got := []string{}
		for _, it := range items {
			got = append(got, string(it))
		}
		if len(want) == 0 {
			want = []string{}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("items of %q (-encoding/json +split):\n%s", data, diff)
		}
	})
}

// splitItems is splitSpans on a file as read, giving the items' bytes.
func splitItems(data []byte) (rest []byte, items []json.RawMessage, ok bool) {
	data = bytes.TrimSpace(data)
	rest, spans, _, ok := splitSpans(data)
	for _, sp := range spans {
		items = append(items, data[sp.start:sp.end])
	}
	return rest, items, ok
}
