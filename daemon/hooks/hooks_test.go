package hooks

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeChains is one built-in chain, rules as iptables -S lists them.
type fakeChains struct {
	rules  []string // without the "-A CHAIN " prefix
	writes int
}

func (f *fakeChains) List(_, chain string) ([]string, error) {
	out := []string{"-P " + chain + " ACCEPT"}
	for _, r := range f.rules {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

func (f *fakeChains) Insert(_, _ string, pos int, spec ...string) error {
	if pos < 1 || pos > len(f.rules)+1 {
		return fmt.Errorf("position %d of %d", pos, len(f.rules))
	}
	f.rules = slices.Insert(f.rules, pos-1, strings.Join(spec, " "))
	f.writes++
	return nil
}

func (f *fakeChains) Delete(_, _ string, spec ...string) error {
	i := slices.Index(f.rules, strings.Join(spec, " "))
	if i < 0 {
		return fmt.Errorf("no rule %q", spec)
	}
	f.rules = slices.Delete(f.rules, i, i+1)
	f.writes++
	return nil
}

var (
	services = Jump{"filter", "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-j", "SKEIN-SERVICES"}}
	forward  = Jump{"filter", "FORWARD", []string{"-j", "SKEIN-FORWARD"}}
)

// TestEnsureOrder: whichever controller comes first, SKEIN-SERVICES
// ends above SKEIN-FORWARD, both above the host's own rules; a jump in
// its place is not written again; duplicates go.
func TestEnsureOrder(t *testing.T) {
	host := []string{"-s 192.0.2.0/24 -j DROP", "-j ACCEPT"}
	want := []string{"-m conntrack --ctstate NEW -j SKEIN-SERVICES", "-j SKEIN-FORWARD", "-s 192.0.2.0/24 -j DROP", "-j ACCEPT"}
	for _, tc := range []struct {
		name  string
		start []string
		first []Jump
	}{
		{"services first", host, []Jump{services, forward}},
		{"forward first", host, []Jump{forward, services}},
		{"forward above services", append([]string{"-j SKEIN-FORWARD", "-m conntrack --ctstate NEW -j SKEIN-SERVICES"}, host...), []Jump{services, forward}},
		{"duplicates", append([]string{"-j SKEIN-FORWARD", "-m conntrack --ctstate NEW -j SKEIN-SERVICES", "-j SKEIN-FORWARD"}, host...), []Jump{forward, services}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeChains{rules: slices.Clone(tc.start)}
			var o Owner
			for _, j := range tc.first {
				if err := o.Ensure(f, j); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(want, f.rules); diff != "" {
				t.Fatalf("FORWARD (-want +got):\n%s", diff)
			}
			f.writes = 0
			for _, j := range []Jump{services, forward} {
				if err := o.Ensure(f, j); err != nil {
					t.Fatal(err)
				}
			}
			if f.writes != 0 {
				t.Errorf("%d writes to a chain already in order", f.writes)
			}
			if err := o.Remove(f, forward); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(slices.Delete(slices.Clone(want), 1, 2), f.rules); diff != "" {
				t.Errorf("after Remove (-want +got):\n%s", diff)
			}
		})
	}
}
