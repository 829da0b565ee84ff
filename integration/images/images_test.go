package images

import (
	"archive/tar"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestWrite: an image archive of a binary of ours reads back with its
// reference, entry point and files, the binary executable.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	bin, err := GoBinary("github.com/skein-net/skein/integration/images/pause", dir)
	if err != nil {
		t.Fatal(err)
	}
	im := Image{
		Ref:        "localhost/skein-test/pause:1.0",
		Files:      []File{{Path: "/pause", From: bin}, {Path: "/bin/pause", Link: "/pause"}},
		Entrypoint: []string{"/pause"},
	}
	out := filepath.Join(dir, "pause.tar")
	if err := im.Write(out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(im.Ref)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("the archive does not hold %s: %v", im.Ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, im.Entrypoint) || cfg.OS != "linux" {
		t.Errorf("config: entrypoint %v, os %q", cfg.Config.Entrypoint, cfg.OS)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e := h.Name
		switch {
		case h.Typeflag == tar.TypeSymlink:
			e += " -> " + h.Linkname
		case h.Typeflag == tar.TypeReg && h.Mode&0o111 != 0 && h.Size > 0:
			e += " (executable)"
		}
		got = append(got, e)
	}
	want := "bin/ bin/pause -> /pause pause (executable)"
	if strings.Join(got, " ") != want {
		t.Errorf("layer holds %q, want %q", strings.Join(got, " "), want)
	}
}

// TestWithLibraries: a dynamically linked program comes with the
// libraries it loads and the dynamic loader.
func TestWithLibraries(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	files, err := WithLibraries(map[string]string{"/bin/sh": sh})
	if err != nil {
		t.Fatal(err)
	}
	var libc, loader bool
	for _, f := range files {
		libc = libc || strings.Contains(f.Path, "libc.so")
		loader = loader || strings.Contains(f.Path, "ld-linux")
	}
	if !libc || !loader || files[0].Path != "/bin/sh" {
		t.Errorf("files of /bin/sh: %+v", files)
	}
}
