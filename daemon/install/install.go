package install

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/skein-net/skein/daemon/conflist"
)

// Options say what to install where.
type Options struct {
	From  string   // directory holding the binaries (the image's)
	To    string   // the runtime's plugin directory, e.g. /opt/cni/bin
	Names []string // binaries to install, e.g. skein and portmap
}

// Result says what Install did with each binary.
type Result struct {
	Installed []string // written (new or changed)
	Unchanged []string // already in place with the same content
}

// Install copies every named binary from o.From into o.To atomically. It
// checks that every source exists before writing anything, and stops at
// the first failure, leaving that binary's previous version in place.
func Install(o Options) (Result, error) {
	var res Result
	for _, name := range o.Names {
		if name == "" || filepath.Base(name) != name {
			return res, fmt.Errorf("install %q: not a plain file name", name)
		}
		if _, err := os.Stat(filepath.Join(o.From, name)); err != nil {
			return res, fmt.Errorf("install %s: %w", name, err)
		}
	}
	if err := os.MkdirAll(o.To, 0o755); err != nil {
		return res, fmt.Errorf("make the plugin directory: %w", err)
	}
	for _, name := range o.Names {
		src, dst := filepath.Join(o.From, name), filepath.Join(o.To, name)
		same, err := sameContent(src, dst)
		if err != nil {
			return res, fmt.Errorf("install %s: %w", name, err)
		}
		if same {
			res.Unchanged = append(res.Unchanged, name)
			continue
		}
		if err := copyAtomic(src, dst); err != nil {
			return res, fmt.Errorf("install %s into %s: %w", name, o.To, err)
		}
		res.Installed = append(res.Installed, name)
	}
	return res, nil
}

// copyAtomic writes src's content to a temporary file next to dst,
// executable, syncs it and renames it over dst, then syncs the directory
// so the rename survives a crash. On any failure the temporary file is
// removed and dst is untouched.
func copyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dir := filepath.Dir(dst)
	out, err := renameio.NewPendingFile(dst, renameio.WithTempDir(dir), renameio.WithStaticPermissions(0o755))
	if err != nil {
		return err
	}
	// After a successful replace Cleanup does nothing; after a failure it
	// removes the temporary file, and the failure is what gets reported.
	defer func() { _ = out.Cleanup() }()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("write %s: %w", out.Name(), err)
	}
	if err := out.CloseAtomicallyReplace(); err != nil {
		return err
	}
	return conflist.SyncDir(dir)
}

// sameContent reports whether dst exists, is executable and holds what
// src holds.
func sameContent(src, dst string) (bool, error) {
	st, err := os.Stat(dst)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Mode().Perm()&0o111 == 0 {
		return false, nil
	}
	a, err := digest(src)
	if err != nil {
		return false, err
	}
	b, err := digest(dst)
	if err != nil {
		return false, err
	}
	return bytes.Equal(a, b), nil
}

func digest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return h.Sum(nil), nil
}
