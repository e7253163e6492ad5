// Command ocisigner signs Oracle Cloud Infrastructure API requests for Envoy.
//
//	ocisigner serve    the ext_proc service Envoy calls (the container's default)
//	ocisigner probe    a signed GET /n/ to Object Storage: do these credentials work?
//	ocisigner token    what a profile's session token says, masked
//	ocisigner version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes, documented in the README.
const (
	exitOK          = 0
	exitFailure     = 1 // an unexpected answer, or an internal error
	exitUsage       = 2 // bad flags or arguments
	exitConfig      = 3 // configuration: profile, config file, key file unusable
	exitCredentials = 4 // credentials: expired or rejected by OCI (401)
	exitNetwork     = 5 // the endpoint could not be reached
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

// run is main without the process: tests call it with their own
// arguments, output and environment.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv environ) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "ocisigner: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(ctx, args[1:], stdout, stderr, getenv)
}
