// Package conf owns skein's configuration types: the CNI network
// configuration the skein plugin receives on stdin (loading, defaults,
// validation). It is pure: bytes in, structs out, no side effects.
package conf
