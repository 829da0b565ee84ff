package main

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

// cmdDel removes the attachment. It needs neither the netns nor any part
// of the attachment to still exist: the runtime calls it on stop with the
// netns and again on removal without it, and after crashes.
func cmdDel(args *skel.CmdArgs) error {
	n, err := conf.Load(args.StdinData)
	if err != nil {
		return cniError(err)
	}
	key := ipam.Key{ContainerID: args.ContainerID, IfName: args.IfName}
	var errs []error
	h, err := netlinksafe.NewHandle()
	if err != nil {
		errs = append(errs, fmt.Errorf("open netlink: %w", err))
	} else {
		errs = append(errs, deleteHostVeth(h, hostVethName(n.Name, key)))
		h.Close()
	}
	store, err := ipam.OpenDisk(n.DataDir, 0)
	if err != nil {
		return cniError(errors.Join(append(errs, err)...))
	}
	defer store.Close()
	_, err = ipam.New(n, store).Release(key)
	return cniError(errors.Join(append(errs, err)...))
}
