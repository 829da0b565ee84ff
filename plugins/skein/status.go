package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

// cmdStatus answers whether an ADD could succeed now: the config is valid,
// the store can be written, and every family has a free address. The
// runtime uses it to decide whether the node's network is ready.
func cmdStatus(args *skel.CmdArgs) error {
	if err := status(args); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "skein cannot serve an ADD: "+err.Error(), "")
	}
	return nil
}

func status(args *skel.CmdArgs) error {
	n, err := conf.Load(args.StdinData)
	if err != nil {
		return err
	}
	store, err := ipam.OpenDisk(n.DataDir, 0)
	if err != nil {
		return err
	}
	defer store.Close()
	return ipam.New(n, store).Available()
}
