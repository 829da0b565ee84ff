// Package nftables is the Service proxy's nftables backend: the tables
// "ip skein" and "ip6 skein", built from the proxy's model as values
// (decl.go, stmt.go, elem.go) that render both as nft's text (text.go:
// the golden files) and as the kernel's messages (wire.go, through
// nftwire), written as one kernel transaction per family per sync. A
// change of endpoints-map elements alone skips rendering the chains.
package nftables
