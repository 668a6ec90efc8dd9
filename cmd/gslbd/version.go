package main

import (
	"fmt"
	"io"
	"runtime"
)

// Stamped by the Makefile: -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: gslbd version")
		return exitUsage
	}
	fmt.Fprintf(stdout, "gslbd %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
