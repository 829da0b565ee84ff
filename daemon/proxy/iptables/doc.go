// Package iptables is the Service proxy's iptables backend: skein's own
// chains (SKEIN-SERVICES, SKEIN-SVC-…, …) in the nat and filter tables,
// rendered from the proxy's model and written with iptables-restore
// --noflush, one transaction per family per sync; the jumps from the
// built-in chains go through the hooks owner.
package iptables
