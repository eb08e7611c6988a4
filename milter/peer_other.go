//go:build !linux

package milter

import (
	"errors"
	"net"
)

// errNoPeerCred: the peer checks use Linux interfaces (SO_PEERCRED,
// NETLINK_SOCK_DIAG); elsewhere the listener refuses to start rather than
// accept every local process.
var errNoPeerCred = errors.New("milter peer credential checks need Linux (SO_PEERCRED, sock_diag)")

func unixPeerUID(*net.UnixConn) (uint32, error) { return 0, errNoPeerCred }

func newOwnerLookup() (ownerLookup, error) { return nil, errNoPeerCred }
