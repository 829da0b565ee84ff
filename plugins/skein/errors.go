package main

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skein-net/skein/conf"
	"github.com/skein-net/skein/ipam"
)

// skein's own CNI error codes (the spec leaves 100 and up to plugins).
const (
	ErrPoolExhausted      uint = 100 // no free address in a family's ranges
	ErrAddressUnavailable uint = 101 // a requested address cannot be given
	ErrStore              uint = 102 // the reservation store cannot be read or written
	ErrBridge             uint = 103 // the bridge conflicts with the config
	ErrCheck              uint = 104 // CHECK found the attachment broken
	ErrKernel             uint = 105 // a netlink or sysctl operation failed
)

// envError is input from the runtime's environment that is not usable.
type envError struct{ msg string }

func (e *envError) Error() string { return e.msg }

func envErrorf(format string, a ...any) error { return &envError{fmt.Sprintf(format, a...)} }

// bridgeError is a bridge that cannot serve this network.
type bridgeError struct{ msg string }

func (e *bridgeError) Error() string { return e.msg }

// checkError is a CHECK that found the attachment not as ADD left it.
type checkError struct{ problems []string }

func (e *checkError) Error() string {
	s := "attachment is broken:"
	for i, p := range e.problems {
		if i > 0 {
			s += ";"
		}
		s += " " + p
	}
	return s
}

// cniError turns any error into the CNI error the runtime sees. It is the
// one place error codes are chosen.
func cniError(err error) error {
	if err == nil {
		return nil
	}
	var (
		te  *types.Error
		de  *conf.DecodeError
		ce  *conf.Error
		ee  *envError
		ue  *ipam.UnavailableError
		se  *ipam.StoreError
		be  *bridgeError
		che *checkError
	)
	switch {
	case errors.As(err, &te):
		return te
	case errors.As(err, &de):
		return types.NewError(types.ErrDecodingFailure, err.Error(), "")
	case errors.As(err, &ce):
		return types.NewError(types.ErrInvalidNetworkConfig, "invalid network config: "+err.Error(), "")
	case errors.As(err, &ee):
		return types.NewError(types.ErrInvalidEnvironmentVariables, err.Error(), "")
	case errors.Is(err, ipam.ErrLockTimeout), errors.Is(err, ipam.ErrBusy):
		return types.NewError(types.ErrTryAgainLater, err.Error(), "another skein call holds the reservation store; retry")
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(ErrPoolExhausted, err.Error(),
			"every address is reserved: if pods were removed without a CNI DEL, the runtime's CNI GC (or removing their records from the data dir) frees them")
	case errors.As(err, &ue):
		return types.NewError(ErrAddressUnavailable, err.Error(), "")
	case errors.As(err, &se):
		hint := "check the data dir's permissions and the disk holding it"
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			hint = "the disk holding the data dir is full: free space on it; nothing was reserved"
		}
		return types.NewError(ErrStore, err.Error(), hint)
	case errors.As(err, &be):
		return types.NewError(ErrBridge, err.Error(), "")
	case errors.As(err, &che):
		return types.NewError(ErrCheck, err.Error(), "")
	default:
		return types.NewError(ErrKernel, err.Error(), "")
	}
}
