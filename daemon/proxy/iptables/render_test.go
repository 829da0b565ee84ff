package iptables

import (
	"reflect"
	"strings"
	"testing"

	"github.com/skein-net/skein/daemon/cluster"
	"github.com/skein-net/skein/daemon/cluster/clustertest"
	"github.com/skein-net/skein/daemon/proxy"
	"github.com/skein-net/skein/daemon/proxy/proxytest"
	"github.com/skein-net/skein/internal/golden"
)

var (
	node1 = proxy.Config{NodeName: "node1", Families: []int{4, 6}}
	opts  = proxy.RuleOptions{Bridge: "cni0"}
)

// load is the golden cluster's model, edited first when edit is set.
func load(t testing.TB, edit func(string) string) *proxy.Model {
	t.Helper()
	m := proxy.Build(proxytest.State(t, edit), node1)
	return &m
}

func iptText(fam int, prev, cur *proxy.Model) string {
	f := newIPTRenderer(fam, opts)
	if prev == nil {
		_, cache := f.desired(cur, nil, false)
		return string(restoreText(nil, f.whole(cache), nil))
	}
	_, cache := f.desired(prev, nil, false)
	ch, _ := f.desired(cur, cache, true)
	return string(restoreText(ch.before, ch.after, nil))
}

// TestRulesets renders the golden cluster for both families: full syncs,
// then the partial sync of one change (an endpoint of shop/web leaves its
// slice), as the nftables backend's test does.
func TestRulesets(t *testing.T) {
	m := load(t, nil)
	changed := load(t, proxytest.RemoveEndpoint)
	for _, fam := range []int{4, 6} {
		golden.Check(t, "full"+string(rune('0'+fam))+".iptables", iptText(fam, nil, m))
	}
	golden.Check(t, "partial4.iptables", iptText(4, m, changed))
	if got := iptText(4, m, m); got != "" {
		t.Errorf("an unchanged model writes:\n%s", got)
	}
}

// TestPartialMatchesWhole drives 30 Services through 80 random changes
// and checks after each partial sync that the chains iptables-restore
// would hold are what a full sync writes, counted right, and what a
// render from nothing gives.
func TestPartialMatchesWhole(t *testing.T) {
	churn := proxytest.NewChurn(3, 4, 30)
	cfg := proxy.Config{NodeName: "node1", Families: []int{4}}
	var memo proxy.Memo
	fi := newIPTRenderer(4, opts)
	var icache *iptCache
	kernel := iptRules{} // what iptables-restore would have made of the texts
	for step := range 80 {
		churn.Change()
		m := memo.Build(churn.State(), cfg)
		var ich iptChange
		ich, icache = fi.desired(&m, icache, true)
		if step == 0 {
			applyRestore(t, kernel, restoreText(nil, fi.whole(icache), nil))
		} else {
			applyRestore(t, kernel, restoreText(ich.before, ich.after, nil))
		}
		icount := icache.count
		if whole := fi.whole(icache); !reflect.DeepEqual(kernel, whole) || icount != whole.count() {
			t.Fatalf("step %d: after partial syncs iptables holds (%d rules counted)\n%v\nbut a full sync writes (%d)\n%v", step, icount, kernel, whole.count(), whole)
		}
		_, ifresh := fi.desired(&m, nil, false)
		if got, want := fi.whole(icache), fi.whole(ifresh); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: iptables rules from the cache\n%v\nfrom nothing\n%v", step, got, want)
		}
	}
}

// FuzzRender renders any cluster file the model takes, for both
// families, without a panic.
func FuzzRender(f *testing.F) {
	f.Add([]byte(proxytest.ClusterYAML))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := cluster.ParseFile(data)
		if err != nil {
			return
		}
		m := proxy.Build(st, node1)
		for _, fam := range []int{4, 6} {
			_ = iptText(fam, nil, &m)
		}
	})
}

// applyRestore plays iptables-restore --noflush text onto kernel: a chain
// declared is emptied (made if new), -A appends, -X deletes.
func applyRestore(t *testing.T, kernel iptRules, text []byte) {
	t.Helper()
	var table string
	for _, l := range strings.Split(string(text), "\n") {
		switch {
		case l == "" || l == "COMMIT":
		case strings.HasPrefix(l, "*"):
			table = l[1:]
			if kernel[table] == nil {
				kernel[table] = map[string][]string{}
			}
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			kernel[table][name] = nil
		case strings.HasPrefix(l, "-A "):
			name, rule, _ := strings.Cut(l[3:], " ")
			if _, ok := kernel[table][name]; !ok {
				t.Fatalf("-A to %s, which does not exist", name)
			}
			kernel[table][name] = append(kernel[table][name], rule)
		case strings.HasPrefix(l, "-X "):
			name := l[3:]
			if len(kernel[table][name]) > 0 {
				t.Fatalf("-X %s, which is not empty", name)
			}
			delete(kernel[table], name)
		default:
			t.Fatalf("restore line %q", l)
		}
	}
}

// BenchmarkPartialSync is the CPU side of one endpoint change at 10,000
// Services in this backend: the rules from the cached chunks, the diff
// and its text.
func BenchmarkPartialSync(b *testing.B) {
	st := clustertest.BigSnapshot(10000, 10)
	cfg := proxy.Config{NodeName: "node1", Families: []int{4}}
	var memo proxy.Memo
	prev := memo.Build(st, cfg)
	f := newIPTRenderer(4, opts)
	_, cache := f.desired(&prev, nil, false)
	i := 0
	for b.Loop() {
		i++
		st = clustertest.MoveEndpoint(st, i)
		m := memo.Build(st, cfg)
		var ch iptChange
		ch, cache = f.desired(&m, cache, true)
		restoreText(ch.before, ch.after, nil)
	}
}
