package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

// cmdGC releases every reservation, and removes every host veth of this
// network, whose attachment is not in cni.dev/valid-attachments. An
// attachment whose ADD still runs is left alone: its record is held. A
// request without the list collects nothing and fails.
func cmdGC(args *skel.CmdArgs) error {
	n, err := conf.Load(args.StdinData)
	if err != nil {
		return cniError(err)
	}
	// The runtime must say which attachments live: the spec requires the
	// list, and libcni always sends it (null or [] when no pod runs). A
	// request without it knows of none, and collecting on it would take
	// every live pod's address and veth: the safe reading is to collect
	// nothing.
	if !hasKey(args.StdinData, validAttachmentsKey) {
		return cniError(&conf.Error{Field: validAttachmentsKey, Msg: "missing from the GC request: without the list of live attachments nothing can be collected safely; nothing was collected"})
	}
	return cniError(collect(n))
}

const validAttachmentsKey = "cni.dev/valid-attachments"

// hasKey tells whether the JSON object holds key, whatever its value.
func hasKey(data []byte, key string) bool {
	var keys map[string]json.RawMessage
	if json.Unmarshal(data, &keys) != nil {
		return false
	}
	_, ok := keys[key]
	return ok
}

func collect(n *conf.Network) error {
	valid := map[ipam.Key]bool{}
	validLinks := map[string]bool{}
	for _, a := range n.ValidAttachments {
		k := ipam.Key{ContainerID: a.ContainerID, IfName: a.IfName}
		valid[k] = true
		validLinks[hostVethName(n.Name, k)] = true
	}
	h, err := netlinksafe.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	store, err := ipam.OpenDisk(n.DataDir, 0)
	if err != nil {
		return err
	}
	defer store.Close()

	var removed []string
	sweep := func(keep, drop map[string]bool) error {
		links, err := h.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		var errs []error
		for _, l := range links {
			// Ours: named in a released record, or marked with this
			// network's alias (a veth whose record is already gone).
			name := l.Attrs().Name
			_, isVeth := l.(*netlink.Veth)
			ours := drop[name] || l.Attrs().Alias == linkAlias(n.Name)
			if !isVeth || !ours || !strings.HasPrefix(name, hostVethPrefix) || keep[name] || validLinks[name] {
				continue
			}
			if err := deleteHostVeth(h, name); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, name)
		}
		return errors.Join(errs...)
	}
	pool := ipam.New(n, store)
	if boot, err := bootTime(); err == nil {
		pool = pool.WithBootTime(boot)
	}
	rep, err := pool.Collect(valid, sweep)
	for _, r := range rep.Released {
		fmt.Fprintf(os.Stderr, "skein: GC released %s (container %s, %s)\n", r.IP, r.Key.ContainerID, r.Key.IfName)
	}
	if len(removed) > 0 {
		fmt.Fprintf(os.Stderr, "skein: GC removed %s\n", strings.Join(removed, " "))
	}
	for _, r := range rep.NotFile {
		fmt.Fprintf(os.Stderr, "skein: GC left alone %s/%s: not a regular file, so not a record skein wrote; its address stays taken until it is removed by hand\n", n.DataDir, r.IP)
	}
	for _, r := range rep.Corrupt {
		fmt.Fprintf(os.Stderr, "skein: GC kept unreadable record %s/%s: remove it once no pod uses %s\n", n.DataDir, r.IP, r.IP)
	}
	return err
}

// bootTime reads when the node booted from /proc/stat.
func bootTime() (time.Time, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("parse btime %q: %w", v, err)
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("no btime in /proc/stat")
}
