package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

type flags struct {
	nodeName      string
	clusterFile   string
	kubeconfig    string
	nodeIP        string
	iface         string
	vni           int
	port          int
	conflist      string
	networkName   string
	cniVersion    string
	cniDataDir    string
	bridge        string
	clusterDomain string
	dnsServers    string
	healthAddr    string
	profiling     bool
	proxyHealth   string
	minInterval   time.Duration
	costFactor    float64
	resync        time.Duration
	masquerade    bool
	proxy         string
	nodePortAddrs []string
	serviceCIDRs  []netip.Prefix
	staleAfter    time.Duration
	dns           dnsFlags
}

// dnsFlags are the cluster DNS server's settings.
type dnsFlags struct {
	on          bool
	addr        string
	clusterIP   string
	upstreams   string
	resolvConf  string
	upstreamTCP bool
	ttl         time.Duration
	pods        bool
	cacheSize   int
	cacheBytes  int
	minTTL      time.Duration
	maxTTL      time.Duration
	maxInflight int
}

// parseFlags reads skeind's settings from args and, for every flag args
// leave unset, from the environment variable SKEIN_<FLAG> (upper case,
// dashes as underscores: SKEIN_PROXY, SKEIN_VXLAN_PORT), which is how the
// DaemonSet hands over its ConfigMap. The command line wins. A SKEIN_
// variable that names no flag is returned in unknown, for a warning: a
// mistyped ConfigMap key must not go unnoticed.
func parseFlags(args, environ []string) (f *flags, unknown []string, err error) {
	f = &flags{}
	fs := flag.NewFlagSet("skeind", flag.ContinueOnError)
	fs.StringVar(&f.nodeName, "node-name", lookup(environ, "NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.StringVar(&f.clusterFile, "cluster-file", "", "read the cluster from this YAML or JSON file of Node objects (re-read when it changes) instead of the API server")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the API server (default: the in-cluster service account)")
	fs.StringVar(&f.nodeIP, "node-ip", "", "underlay address of this node (default: the Node's InternalIP)")
	fs.StringVar(&f.iface, "iface", "", "take the underlay address from this interface")
	fs.IntVar(&f.vni, "vni", 1, "VXLAN network identifier")
	fs.IntVar(&f.port, "vxlan-port", 8472, "VXLAN UDP port")
	fs.StringVar(&f.conflist, "conflist", "/etc/cni/net.d/10-skein.conflist", "where to write the node's CNI conflist")
	fs.StringVar(&f.networkName, "network-name", "skein", "CNI network name")
	fs.StringVar(&f.cniVersion, "cni-version", "1.0.0", "cniVersion of the conflist (1.1.0 enables STATUS and GC)")
	fs.StringVar(&f.cniDataDir, "cni-data-dir", "", "the plugin's data dir (default: the plugin's, /var/lib/cni/skein)")
	fs.StringVar(&f.bridge, "bridge", "", "the node bridge (default: the plugin's, cni0)")
	fs.StringVar(&f.clusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain for the pods' search list")
	fs.StringVar(&f.dnsServers, "dns-servers", "", "comma-separated nameservers for pods (default, with --dns: --cluster-dns-ip, else --dns-address)")
	fs.StringVar(&f.healthAddr, "health-addr", "127.0.0.1:9897", "address of /healthz, /readyz and /metrics")
	fs.BoolVar(&f.profiling, "profiling", false, "serve Go's CPU, heap and goroutine profiles under /debug/pprof/ on --health-addr")
	fs.StringVar(&f.proxyHealth, "proxy-health-addr", ":10256", "address of the Service proxy's /healthz and /livez for load balancers, as kube-proxy's (empty: none)")
	fs.DurationVar(&f.minInterval, "min-sync-interval", time.Second, "one sync per interval on average; two may run back to back after a quiet spell (the Service proxy's follows its syncs' cost, up to this: see --proxy-sync-cost-factor)")
	fs.Float64Var(&f.costFactor, "proxy-sync-cost-factor", 10, "the Service proxy waits this many times its last sync's duration between syncs (at least 50ms, at most --min-sync-interval); 0: always --min-sync-interval")
	fs.DurationVar(&f.resync, "resync", time.Minute, "how often every controller reconciles unasked (the service proxy checks its rules and rewrites them if changed; whole every hour)")
	fs.BoolVar(&f.masquerade, "masquerade", true, "traffic from pods to outside the cluster leaves with the node's address")
	fs.StringVar(&f.proxy, "proxy", "", "Service proxy backend: nftables, iptables or none (default nftables, iptables where nft is missing)")
	fs.DurationVar(&f.staleAfter, "source-stale-after", 5*time.Minute, "/readyz fails once the cluster source has failed for this long (the dataplane keeps the last good snapshot)")
	f.dns.register(fs)
	nodePorts := fs.String("nodeport-addresses", "", "comma-separated CIDRs of the node addresses NodePorts answer on (default every local address)")
	serviceCIDRs := fs.String("service-cidr", "", "comma-separated Service ranges (the API server's --service-cluster-ip-range), beside its ServiceCIDR objects: a new connection to an address in one that no Service holds is refused")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if unknown, err = setFromEnv(fs, environ); err != nil {
		return nil, nil, err
	}
	switch f.proxy {
	case "", "nftables", "iptables", "none":
	default:
		return nil, nil, fmt.Errorf("--proxy %q: want nftables, iptables or none", f.proxy)
	}
	nodePortPrefixes, err := prefixes("nodeport-addresses", *nodePorts)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range nodePortPrefixes {
		f.nodePortAddrs = append(f.nodePortAddrs, p.String())
	}
	if f.serviceCIDRs, err = prefixes("service-cidr", *serviceCIDRs); err != nil {
		return nil, nil, err
	}
	if f.nodeName == "" {
		return nil, nil, errors.New("--node-name (or $NODE_NAME) is required")
	}
	if f.clusterFile != "" && f.kubeconfig != "" {
		return nil, nil, errors.New("--cluster-file and --kubeconfig name two sources; give one")
	}
	if f.vni < 1 || f.vni > 1<<24-1 {
		return nil, nil, fmt.Errorf("--vni %d is out of range 1-16777215", f.vni)
	}
	if f.costFactor < 0 {
		return nil, nil, fmt.Errorf("--proxy-sync-cost-factor %g must not be negative", f.costFactor)
	}
	if f.staleAfter <= 0 {
		return nil, nil, fmt.Errorf("--source-stale-after %s must be positive", f.staleAfter)
	}
	if f.port < 1 || f.port > 65535 {
		return nil, nil, fmt.Errorf("--vxlan-port %d is out of range", f.port)
	}
	if err := f.dns.check(); err != nil {
		return nil, nil, err
	}
	if f.proxyHealth != "" {
		if _, port, err := net.SplitHostPort(f.proxyHealth); err != nil || port == "" {
			return nil, nil, fmt.Errorf("--proxy-health-addr %q is not host:port", f.proxyHealth)
		}
	}
	if f.nodeIP != "" {
		if _, err := netip.ParseAddr(f.nodeIP); err != nil {
			return nil, nil, fmt.Errorf("--node-ip %q is not an IP address", f.nodeIP)
		}
	}
	return f, unknown, nil
}

// prefixes parses a flag's comma-separated CIDRs, masked.
func prefixes(flag, list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range splitList(list) {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("--%s: %q is not a CIDR", flag, c)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// register adds the DNS server's flags to fs.
func (d *dnsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&d.on, "dns", true, "answer the cluster's names (and forward the rest) on this node, in place of CoreDNS")
	fs.StringVar(&d.addr, "dns-address", "169.254.20.10", "node-local address the DNS server answers on (put on the device skein.dns)")
	fs.StringVar(&d.clusterIP, "cluster-dns-ip", "", "the kube-dns Service's ClusterIP (kubelet's clusterDNS): answered on the node too, never sent to another node")
	fs.StringVar(&d.upstreams, "dns-upstream", "", "comma-separated resolvers for names outside the cluster (default: those of --dns-resolv-conf)")
	fs.StringVar(&d.resolvConf, "dns-resolv-conf", "/etc/resolv.conf", "the node's resolv.conf, whose nameservers are the upstreams")
	fs.BoolVar(&d.upstreamTCP, "dns-upstream-tcp", false, "ask upstreams over TCP only")
	fs.DurationVar(&d.ttl, "dns-ttl", 5*time.Second, "TTL of the cluster's records, and of its negative answers")
	fs.BoolVar(&d.pods, "dns-pod-records", true, "answer <a-b-c-d>.<namespace>.pod.<domain> with the address it spells (CoreDNS's pods insecure)")
	fs.IntVar(&d.cacheSize, "dns-cache-size", 10000, "answers from upstream the cache holds at most")
	fs.IntVar(&d.cacheBytes, "dns-cache-bytes", 8<<20, "bytes the cached answers take at most")
	fs.DurationVar(&d.minTTL, "dns-cache-min-ttl", 0, "an upstream answer is kept at least this long")
	fs.DurationVar(&d.maxTTL, "dns-cache-max-ttl", time.Hour, "an upstream answer is kept at most this long")
	fs.IntVar(&d.maxInflight, "dns-max-inflight", 1000, "questions waiting on an upstream at once; past it, REFUSED (the cluster's names are not bounded)")
}

// check refuses DNS settings that cannot work.
func (d *dnsFlags) check() error {
	if !d.on {
		return nil
	}
	usable := func(v string) bool {
		a, err := netip.ParseAddr(v)
		return err == nil && !a.IsUnspecified() && !a.IsMulticast()
	}
	switch {
	case !usable(d.addr):
		return fmt.Errorf("--dns-address %q is not a usable IP address", d.addr)
	case d.clusterIP != "" && !usable(d.clusterIP):
		return fmt.Errorf("--cluster-dns-ip %q is not a usable IP address", d.clusterIP)
	case d.ttl < time.Second || d.ttl%time.Second != 0:
		return fmt.Errorf("--dns-ttl %s: want whole seconds, at least 1s", d.ttl)
	case d.cacheSize < 1 || d.cacheBytes < 4096:
		return fmt.Errorf("--dns-cache-size %d / --dns-cache-bytes %d: want at least 1 answer and 4096 bytes", d.cacheSize, d.cacheBytes)
	case d.minTTL < 0 || d.maxTTL < d.minTTL:
		return fmt.Errorf("--dns-cache-min-ttl %s and --dns-cache-max-ttl %s: want 0 <= min <= max", d.minTTL, d.maxTTL)
	case d.maxInflight < 1:
		return fmt.Errorf("--dns-max-inflight %d: want at least 1", d.maxInflight)
	}
	return nil
}

// envPrefix marks the environment variables that set skeind's flags.
const envPrefix = "SKEIN_"

// setFromEnv sets every flag the command line left alone from its
// SKEIN_ variable, and lists the SKEIN_ variables that name no flag.
func setFromEnv(fs *flag.FlagSet, environ []string) ([]string, error) {
	onCommandLine := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { onCommandLine[fl.Name] = true })
	var unknown []string
	for _, kv := range environ {
		key, val, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(key, envPrefix)
		if !ok {
			continue
		}
		name = strings.ReplaceAll(strings.ToLower(name), "_", "-")
		if fs.Lookup(name) == nil {
			unknown = append(unknown, key)
			continue
		}
		if onCommandLine[name] {
			continue
		}
		if err := fs.Set(name, val); err != nil {
			return nil, fmt.Errorf("%s=%q: %w", key, val, err)
		}
	}
	return unknown, nil
}

// lookup returns key's value in environ, "" when it is missing.
func lookup(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}
