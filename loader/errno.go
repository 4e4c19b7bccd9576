package loader

import "golang.org/x/sys/unix"

// errBusy is what the kernel returns when an XDP program is already
// attached to the interface through another link.
var errBusy = unix.EBUSY
