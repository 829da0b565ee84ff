package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/skein-net/skein/conf"
)

// Version is set at build time.
var Version = "dev"

func main() {
	if err := precheck(); err != nil {
		if perr := err.Print(); perr != nil {
			fmt.Fprintln(os.Stderr, perr)
		}
		os.Exit(1)
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, version.PluginSupports(conf.SupportedVersions...), "skein CNI plugin "+Version)
}

// precheck catches a config without cniVersion before skel does: skel
// reads a missing version as the legacy "0.1.0" and answers with a
// version mismatch that does not say the field is missing. The config is
// handed back to skel through a pipe.
func precheck() *types.Error {
	switch os.Getenv("CNI_COMMAND") {
	case "ADD", "DEL", "CHECK", "GC", "STATUS":
	default:
		return nil
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "read network config from stdin: "+err.Error(), "")
	}
	var v struct {
		CNIVersion *string `json:"cniVersion"`
	}
	if json.Unmarshal(data, &v) == nil && (v.CNIVersion == nil || *v.CNIVersion == "") {
		return types.NewError(types.ErrInvalidNetworkConfig, "cniVersion: required; one of "+strings.Join(conf.SupportedVersions, ", "), "")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return types.NewError(types.ErrIOFailure, "pipe: "+err.Error(), "")
	}
	go func() {
		_, err := io.Copy(w, bytes.NewReader(data))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			// skel then reads a short config and says it cannot decode it.
			fmt.Fprintln(os.Stderr, "skein: pass the network config on:", err)
		}
	}()
	os.Stdin = r
	return nil
}
