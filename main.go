// Command tcptrace shows what TCP is doing on this host, connection by
// connection, from the kernel's TCP tracepoints.
package main

import (
	"os"

	"github.com/tcptrace/tcptrace/cmd"
)

func main() {
	os.Exit(cmd.Execute())
}
