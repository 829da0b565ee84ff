package conflist

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteOnlyOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.d", "10-skein.conflist")
	for i, tc := range []struct {
		data    string
		changed bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		before, _ := os.Stat(path)
		time.Sleep(10 * time.Millisecond)
		changed, err := Write(path, []byte(tc.data))
		if err != nil || changed != tc.changed {
			t.Fatalf("write %d: changed=%v err=%v, want changed=%v", i, changed, err, tc.changed)
		}
		got, _ := os.ReadFile(path)
		if string(got) != tc.data {
			t.Fatalf("file holds %q, want %q", got, tc.data)
		}
		after, _ := os.Stat(path)
		if !tc.changed && !after.ModTime().Equal(before.ModTime()) {
			t.Fatal("an unchanged conflist was rewritten")
		}
		if after.Mode().Perm() != 0o644 {
			t.Fatalf("mode %v", after.Mode())
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want only the conflist", len(entries))
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path); err != nil {
		t.Fatal("removing twice:", err)
	}
}
