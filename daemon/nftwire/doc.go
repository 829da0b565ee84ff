// Package nftwire writes nftables transactions to the kernel over
// netlink: tables, chains, sets and maps, their elements, and rules given
// as encoded expressions, in one batch the kernel applies whole or not at
// all, on a socket kept open between transactions; and reads a table
// back in outline (its handle, how many chains and sets it holds, how
// many rules a chain holds), so that its owner can tell cheaply whether
// someone else changed it.
//
// It knows nft's vocabulary (hooks, datatypes, the user data nft reads
// back to print a set as declared) and nothing of the objects a caller
// writes: the table is named when a batch is made, every other name comes
// with the operation.
//
// Written here rather than with github.com/google/nftables: that
// library's Conn.Flush waits for one acknowledgement per message, which
// at a hundred thousand map elements costs more than encoding them; a
// batch here asks the kernel for the outcome of the last message only,
// and names the message an error is about.
package nftwire
