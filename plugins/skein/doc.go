// Command skein is the skein CNI plugin. The container runtime runs it for
// every pod: it attaches the pod's network namespace to the node bridge
// (cni0) with a veth pair and gives it addresses from the node's pod
// subnets with skein's own IPAM (package ipam).
//
// main.go wires the CNI verbs; each verb parses its input, plans, applies
// and, on ADD, rolls back everything it did when a step fails. CNI error
// codes are chosen in one place, errors.go.
package main
