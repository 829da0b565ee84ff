package conf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults applied by Load when a field is absent.
const (
	DefaultBridge  = "cni0"
	DefaultMTU     = 1500
	DefaultDataDir = "/var/lib/cni/skein"
)

// MaxIfNameLen is the kernel's limit on an interface name (IFNAMSIZ - 1).
const MaxIfNameLen = 15

// File is the JSON shape of skein's network configuration, as written in a
// conflist by skeind or by hand.
type File struct {
	types.NetConf

	Bridge        string      `json:"bridge,omitempty"`
	MTU           int         `json:"mtu,omitempty"`
	HairpinMode   *bool       `json:"hairpinMode,omitempty"`
	Ranges        []RangeFile `json:"ranges"`
	Exclude       []string    `json:"exclude,omitempty"`
	Routes        []RouteFile `json:"routes,omitempty"`
	ClusterDomain string      `json:"clusterDomain,omitempty"`
	DataDir       string      `json:"dataDir,omitempty"`

	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	// ValidAttachments is set by the runtime on GC.
	ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
}

// RangeFile is one subnet the IPAM hands addresses out of.
type RangeFile struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

// RouteFile is an extra route installed in the pod.
type RouteFile struct {
	Dst string `json:"dst"`
	GW  string `json:"gw,omitempty"`
}

// Network is a validated network configuration with every default applied.
type Network struct {
	CNIVersion    string
	Name          string
	Bridge        string
	MTU           int
	Hairpin       bool
	Ranges        []Range
	Exclude       []netip.Prefix
	Routes        []Route
	DNS           types.DNS
	ClusterDomain string
	// DataDir is the directory holding this network's reservations:
	// <dataDir>/<name>.
	DataDir          string
	RequestedIPs     []netip.Addr
	ValidAttachments []types.GCAttachment
	// RawPrevResult is the previous plugin's result, when chained or on CHECK.
	RawPrevResult map[string]interface{}
}

// Range is one validated subnet. Start and End bound the addresses handed
// out; the network, gateway and (IPv4) broadcast addresses never are.
type Range struct {
	Subnet  netip.Prefix
	Start   netip.Addr
	End     netip.Addr
	Gateway netip.Addr
}

// Route is one validated extra pod route. A zero GW means "via the gateway
// of the route's family".
type Route struct {
	Dst netip.Prefix
	GW  netip.Addr
}

// Error is a configuration that parsed but is not valid. Field names the
// JSON field at fault.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// DecodeError is input that is not the JSON it should be.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return "decode network config: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

func invalid(field, format string, a ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// SupportedVersions are the CNI spec versions a config may declare.
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// The patterns compile on first use: the plugin runs once per call, and
// most calls never need them.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`) })

// Load parses and validates a skein network configuration.
func Load(data []byte) (*Network, error) {
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, &DecodeError{Err: err}
	}
	return f.Validate()
}

// Validate checks every field and returns the network with defaults applied.
func (f *File) Validate() (*Network, error) {
	n := &Network{
		CNIVersion:       f.CNIVersion,
		Name:             f.Name,
		Bridge:           f.Bridge,
		MTU:              f.MTU,
		Hairpin:          true,
		DNS:              f.DNS,
		ClusterDomain:    strings.TrimSuffix(f.ClusterDomain, "."),
		ValidAttachments: f.ValidAttachments,
		RawPrevResult:    f.RawPrevResult,
	}
	if f.CNIVersion == "" {
		return nil, invalid("cniVersion", "required; one of %s", strings.Join(SupportedVersions, ", "))
	}
	if !supported(f.CNIVersion) {
		return nil, invalid("cniVersion", "%q is not supported; use one of %s", f.CNIVersion, strings.Join(SupportedVersions, ", "))
	}
	if f.Name == "" {
		return nil, invalid("name", "required")
	}
	if !nameRE().MatchString(f.Name) || len(f.Name) > 128 {
		return nil, invalid("name", "%q: use letters, digits, '_', '.' and '-' (at most 128), starting with a letter or digit", f.Name)
	}
	if n.Bridge == "" {
		n.Bridge = DefaultBridge
	}
	if err := ValidateIfName(n.Bridge); err != nil {
		return nil, invalid("bridge", "%v", err)
	}
	if f.HairpinMode != nil {
		n.Hairpin = *f.HairpinMode
	}
	dataDir := f.DataDir
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	if !filepath.IsAbs(dataDir) {
		return nil, invalid("dataDir", "%q must be an absolute path", dataDir)
	}
	n.DataDir = filepath.Join(filepath.Clean(dataDir), f.Name)

	var err error
	if n.Ranges, err = parseRanges(f.Ranges); err != nil {
		return nil, err
	}
	if n.Exclude, err = parseExclude(f.Exclude, n.Ranges); err != nil {
		return nil, err
	}
	for i, r := range n.Ranges {
		if !hasUsable(r, n.Exclude) {
			return nil, invalid(fmt.Sprintf("ranges[%d]", i), "%s holds no address for a pod once the network, gateway, broadcast and excluded addresses are set aside", r.Subnet)
		}
	}
	if err := n.validateMTU(); err != nil {
		return nil, err
	}
	if n.Routes, err = parseRoutes(f.Routes, n.Ranges); err != nil {
		return nil, err
	}
	if n.ClusterDomain != "" && !dnsNameRE().MatchString(n.ClusterDomain) {
		return nil, invalid("clusterDomain", "%q is not a DNS domain name", f.ClusterDomain)
	}
	if n.RequestedIPs, err = ParseRequestedIPs(f.RuntimeConfig.IPs); err != nil {
		return nil, invalid("runtimeConfig.ips", "%v", err)
	}
	return n, nil
}

func supported(v string) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

func (n *Network) validateMTU() error {
	if n.MTU == 0 {
		n.MTU = DefaultMTU
	}
	lo := 68 // RFC 791's minimum
	if n.HasFamily(6) {
		lo = 1280 // RFC 8200's minimum
	}
	if n.MTU < lo || n.MTU > 65535 {
		return invalid("mtu", "%d is out of range %d-65535", n.MTU, lo)
	}
	return nil
}

var dnsNameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
})

// ValidateIfName applies the kernel's rules for an interface name.
func ValidateIfName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > MaxIfNameLen:
		return fmt.Errorf("interface name %q is longer than %d characters", name, MaxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is reserved", name)
	case strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

// HasFamily reports whether a range of the family (4 or 6) is configured.
func (n *Network) HasFamily(family int) bool {
	for _, r := range n.Ranges {
		if Family(r.Subnet.Addr()) == family {
			return true
		}
	}
	return false
}

// Family returns 4 or 6.
func Family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// ParseRequestedIPs reads addresses as the "ips" capability and CNI_ARGS IP=
// give them: bare or with a prefix length, at most one per family.
func ParseRequestedIPs(list []string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[int]bool{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		addr, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				return nil, fmt.Errorf("%q is not an IP address", s)
			}
			addr = p.Addr()
		}
		addr = addr.Unmap()
		if seen[Family(addr)] {
			return nil, fmt.Errorf("more than one IPv%d address requested", Family(addr))
		}
		seen[Family(addr)] = true
		out = append(out, addr)
	}
	return out, nil
}
