// Package images builds the container images of the real-node test
// clusters without a registry or a container engine: an image is one
// layer of files from this machine (static binaries of ours, and for
// skein's own image the nftables and iptables userspace with the shared
// libraries they load), written as an image archive that
// `ctr images import` takes. Built on go-containerregistry.
package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one entry of an image's layer: a copy of a file of this
// machine (From), or a symbolic link (Link).
type File struct {
	Path string // in the image, absolute
	From string
	Link string
	Mode int64 // 0: the source's
}

// Image is what to build.
type Image struct {
	Ref        string   // e.g. localhost/skein/pause:1.0
	Also       []string // more references to the same image (tags)
	Files      []File
	Entrypoint []string
	Cmd        []string // the entry point's default arguments
	Env        []string
}

// Write writes the image archive to out.
func (im Image) Write(out string) error {
	tag, err := name.NewTag(im.Ref)
	if err != nil {
		return fmt.Errorf("image %q: %w", im.Ref, err)
	}
	data, err := im.layer()
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.Env = im.Entrypoint, im.Cmd, im.Env
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{tag: img}
	for _, r := range im.Also {
		t, err := name.NewTag(r)
		if err != nil {
			return fmt.Errorf("image %q: %w", r, err)
		}
		refs[t] = img
	}
	return tarball.MultiRefWriteToFile(out, refs)
}

// layer is the image's files as a tar stream, parent directories first.
func (im Image) layer() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{"/": true}
	files := slices.Clone(im.Files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("%q: not an absolute path", f.Path)
		}
		if err := parents(tw, dirs, path.Dir(f.Path)); err != nil {
			return nil, err
		}
		if err := entry(tw, f); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func parents(tw *tar.Writer, made map[string]bool, dir string) error {
	if made[dir] {
		return nil
	}
	if err := parents(tw, made, path.Dir(dir)); err != nil {
		return err
	}
	made[dir] = true
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(dir, "/") + "/", Mode: 0o755})
}

func entry(tw *tar.Writer, f File) error {
	name := strings.TrimPrefix(f.Path, "/")
	if f.Link != "" {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: f.Link, Mode: 0o777})
	}
	data, err := os.ReadFile(f.From)
	if err != nil {
		return err
	}
	mode := f.Mode
	if mode == 0 {
		st, err := os.Stat(f.From)
		if err != nil {
			return err
		}
		mode = int64(st.Mode().Perm())
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err = tw.Write(data)
	return err
}

// GoBinary builds a Go package of this module, static, into dir and
// returns the binary's path.
func GoBinary(pkg, dir string) (string, error) {
	out := filepath.Join(dir, path.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// WithLibraries returns the files of the dynamically linked programs
// given (image path -> this machine's path) with every shared library
// they load and the dynamic loader, at the paths they have here, as ldd
// names them.
func WithLibraries(programs map[string]string) ([]File, error) {
	var out []File
	seen := map[string]bool{}
	for dst, src := range programs {
		out = append(out, File{Path: dst, From: src})
		b, err := exec.Command("ldd", src).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", src, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			lib := ""
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "/") {
					lib = f
					break
				}
			}
			if lib == "" || seen[lib] {
				continue
			}
			seen[lib] = true
			real, err := filepath.EvalSymlinks(lib)
			if err != nil {
				return nil, err
			}
			out = append(out, File{Path: lib, From: real})
		}
	}
	return out, nil
}
