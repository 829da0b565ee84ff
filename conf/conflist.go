package conf

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
)

// ConflistOptions is what skeind knows of a node when it writes the
// node's CNI configuration.
type ConflistOptions struct {
	Name          string // network name
	CNIVersion    string
	Bridge        string // empty: the plugin's default
	PodCIDRs      []netip.Prefix
	MTU           int
	DNS           types.DNS
	ClusterDomain string
	DataDir       string // empty: the plugin's default
	PortMap       bool   // chain the portmap plugin
}

// RenderConflist returns the node's conflist: the skein plugin with the
// node's pod CIDRs as ranges, then portmap. The same options always give
// the same bytes, so a writer can tell whether anything changed.
func RenderConflist(o ConflistOptions) ([]byte, error) {
	if len(o.PodCIDRs) == 0 {
		return nil, fmt.Errorf("conflist: the node has no pod CIDR")
	}
	plugin := map[string]any{"type": "skein", "mtu": o.MTU}
	if o.Bridge != "" {
		plugin["bridge"] = o.Bridge
	}
	var ranges []RangeFile
	for _, p := range o.PodCIDRs {
		ranges = append(ranges, RangeFile{Subnet: p.Masked().String()})
	}
	plugin["ranges"] = ranges
	if len(o.DNS.Nameservers) > 0 || len(o.DNS.Search) > 0 || len(o.DNS.Options) > 0 || o.DNS.Domain != "" {
		plugin["dns"] = o.DNS
	}
	if o.ClusterDomain != "" {
		plugin["clusterDomain"] = o.ClusterDomain
	}
	if o.DataDir != "" {
		plugin["dataDir"] = o.DataDir
	}
	plugins := []any{plugin}
	if o.PortMap {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}})
	}
	out, err := json.MarshalIndent(map[string]any{"cniVersion": o.CNIVersion, "name": o.Name, "plugins": plugins}, "", "  ")
	if err != nil {
		return nil, err
	}
	// What skeind writes must be what the plugin accepts.
	var check File
	first, _ := json.Marshal(plugins[0])
	if err := json.Unmarshal(first, &check); err != nil {
		return nil, err
	}
	check.CNIVersion, check.Name = o.CNIVersion, o.Name
	if _, err := check.Validate(); err != nil {
		return nil, fmt.Errorf("conflist: %w", err)
	}
	return append(out, '\n'), nil
}
