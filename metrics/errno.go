package metrics

import "syscall"

// The bind errors Listen explains.
var (
	errAddrInUse    error = syscall.EADDRINUSE
	errAddrNotAvail error = syscall.EADDRNOTAVAIL
	errAccess       error = syscall.EACCES
)
