package harness

import (
	"context"
	"fmt"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// Node is a namespace playing a Kubernetes node, with the CNI client a
// container runtime would run there.
type Node struct {
	NS       *NetNS
	CNI      *libcni.CNIConfig
	List     *libcni.NetworkConfigList
	cacheDir string
}

// NewNode makes the node's namespace and loads its conflist. pluginDir
// holds the plugin binaries (CNI_PATH).
func NewNode(name, pluginDir string, conflist []byte) (*Node, error) {
	netns, err := NewNetNS(name)
	if err != nil {
		return nil, err
	}
	nd, err := NewNodeIn(netns, pluginDir, conflist)
	if err != nil {
		netns.Delete()
		return nil, err
	}
	return nd, nil
}

// NewNodeIn runs a CNI client in an existing namespace.
func NewNodeIn(netns *NetNS, pluginDir string, conflist []byte) (*Node, error) {
	list, err := libcni.ConfListFromBytes(conflist)
	if err != nil {
		return nil, fmt.Errorf("conflist: %w", err)
	}
	cacheDir, err := os.MkdirTemp("", netns.Name+"-cnicache-")
	if err != nil {
		return nil, err
	}
	// An explicit exec: libcni makes its default one lazily, unlocked, and
	// concurrent first calls race on it.
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	return &Node{
		NS:       netns,
		CNI:      libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, cacheDir, exec),
		List:     list,
		cacheDir: cacheDir,
	}, nil
}

// Close deletes the node's namespace (and everything in it) and its cache.
func (nd *Node) Close() error {
	err := nd.NS.Delete()
	os.RemoveAll(nd.cacheDir)
	return err
}

// Pod is the runtime's view of one sandbox.
type Pod struct {
	NS  *NetNS
	RT  *libcni.RuntimeConf
	IPs []string
	// DNS is the plugin's result's: what the runtime writes into the
	// pod's resolv.conf.
	DNS types.DNS
}

// RuntimeConf is what containerd passes for a pod sandbox.
func RuntimeConf(containerID, netnsPath, namespace string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: containerID,
		NetNS:       netnsPath,
		IfName:      "eth0",
		Args:        [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", containerID}},
	}
}

// Add runs ADD for the pod through the conflist.
func (nd *Node) Add(ctx context.Context, rt *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := nd.NS.Do(func() error {
		var err error
		res, err = nd.CNI.AddNetworkList(ctx, nd.List, rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

// Del runs DEL for the pod.
func (nd *Node) Del(ctx context.Context, rt *libcni.RuntimeConf) error {
	return nd.NS.Do(func() error { return nd.CNI.DelNetworkList(ctx, nd.List, rt) })
}

// Check runs CHECK for the pod.
func (nd *Node) Check(ctx context.Context, rt *libcni.RuntimeConf) error {
	return nd.NS.Do(func() error { return nd.CNI.CheckNetworkList(ctx, nd.List, rt) })
}

// GC runs GC with the given valid attachments.
func (nd *Node) GC(ctx context.Context, valid []types.GCAttachment) error {
	return nd.NS.Do(func() error {
		return nd.CNI.GCNetworkList(ctx, nd.List, &libcni.GCArgs{ValidAttachments: valid})
	})
}

// Status runs STATUS.
func (nd *Node) Status(ctx context.Context) error {
	return nd.NS.Do(func() error { return nd.CNI.GetStatusNetworkList(ctx, nd.List) })
}

// AddPod makes a pod namespace and runs ADD for it.
func (nd *Node) AddPod(ctx context.Context, nsName, containerID string) (*Pod, error) {
	podNS, err := NewNetNS(nsName)
	if err != nil {
		return nil, err
	}
	rt := RuntimeConf(containerID, podNS.Path, "default")
	res, err := nd.Add(ctx, rt)
	if err != nil {
		podNS.Delete()
		return nil, err
	}
	p := &Pod{NS: podNS, RT: rt, DNS: res.DNS}
	for _, ip := range res.IPs {
		p.IPs = append(p.IPs, ip.Address.IP.String())
	}
	return p, nil
}
