package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// MaxFileSize bounds the cluster file read into memory.
const MaxFileSize = 64 << 20

// ParseFile reads Kubernetes objects from YAML (one or more documents) or
// JSON: objects, or Lists of them. Nodes are kept; kinds skeind does not
// read yet are ignored. A document that does not parse fails the whole
// file, so a half-written file never becomes a snapshot.
func ParseFile(data []byte) (*State, error) {
	st := &State{}
	seen := map[string]bool{}
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
		if err := st.add(raw, seen, 0); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
	}
	return st, nil
}

func (st *State) add(raw json.RawMessage, seen map[string]bool, depth int) error {
	var meta struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return fmt.Errorf("not a Kubernetes object: %w", err)
	}
	switch meta.Kind {
	case "List", "NodeList":
		if depth > 0 {
			return fmt.Errorf("a %s inside a List", meta.Kind)
		}
		for i, item := range meta.Items {
			if err := st.add(item, seen, depth+1); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	case "Node":
		var n corev1.Node
		if err := json.Unmarshal(raw, &n); err != nil {
			return fmt.Errorf("Node: %w", err)
		}
		if n.Name == "" {
			return fmt.Errorf("a Node without metadata.name")
		}
		if seen[n.Name] {
			return fmt.Errorf("Node %q appears twice", n.Name)
		}
		seen[n.Name] = true
		st.Nodes = append(st.Nodes, n)
	case "":
		return fmt.Errorf("an object without kind")
	}
	return nil
}

// FileSource reads the cluster from a file, re-reading it as soon as the
// kernel reports a change in its directory (inotify; the directory, so
// that a file replaced by rename is seen) and, as a fallback, every
// Interval. A file that does not parse is logged and the last good
// snapshot stays.
type FileSource struct {
	Path     string
	Interval time.Duration // default 2s
	Log      *slog.Logger
}

// Run implements Source.
func (s *FileSource) Run(ctx context.Context, updates chan<- *State) error {
	interval := s.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err != nil {
		s.Log.Warn("no inotify; polling the cluster file", "every", interval, "err", err)
	} else {
		defer func() { _ = w.Close() }() // a watcher that will not close leaks nothing we could reclaim
		if err := w.Add(filepath.Dir(s.Path)); err != nil {
			s.Log.Warn("cannot watch the cluster file's directory; polling", "every", interval, "err", err)
		} else {
			events = w.Events
		}
	}
	var last [32]byte
	var lastErr string
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		data, err := readLimited(s.Path)
		if err == nil {
			sum := sha256.Sum256(data)
			if sum != last {
				st, perr := ParseFile(data)
				if perr != nil {
					err = perr
				} else {
					last, lastErr = sum, ""
					select {
					case updates <- st:
					case <-ctx.Done():
						return nil
					}
				}
			}
		}
		if err != nil && err.Error() != lastErr {
			lastErr = err.Error()
			s.Log.Error("cluster file not read; keeping the last good snapshot", "path", s.Path, "err", err)
		}
		if err := waitForChange(ctx, tick.C, events, s.Path); err != nil {
			return nil
		}
	}
}

// waitForChange returns at the next tick or event naming the file, or
// an error when ctx ends.
func waitForChange(ctx context.Context, tick <-chan time.Time, events <-chan fsnotify.Event, path string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == filepath.Clean(path) {
				return nil
			}
		}
	}
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}
