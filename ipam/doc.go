// Package ipam is skein's bridge IPAM. It owns the pod address pool of one
// network: a pure next-fit allocator over the configured ranges (alloc.go),
// the Store interface reservations live behind, the on-disk store (one
// record file per address under the network's data dir, guarded by a file
// lock, written atomically), and Pool, which runs each allocation, release
// and garbage collection as one locked transaction on a Store.
//
// A record stays locked (flock) by the ADD that made it until that ADD
// ends, so garbage collection can tell an attachment still being set up
// from one whose ADD died: the kernel drops the lock when the process does.
package ipam
