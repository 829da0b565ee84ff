// Package nftables is the Service proxy's nftables backend: the tables
// "ip skein" and "ip6 skein", rendered from the proxy's model as nft's
// text (what the golden files hold, and what nft is given when the
// encoder meets something it does not know) and written to the kernel
// over netlink as one transaction per family per sync (wire.go,
// rule.go, socket.go). A change of endpoints-map elements alone skips the
// text.
package nftables
