// Command gslbd is a global server load balancer that works through DNS:
// an authoritative nameserver whose answers follow the health of the sites
// behind each name, as a gossip mesh of monitors sees it.
//
// This file only dispatches subcommands; each lives in a file of its own.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes: 0 success, 1 bad input or a failed check, 2 usage error.
const (
	exitOK    = 0
	exitFail  = 1 // bad input or a failed check
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "keygen":
		return cmdKeygen(rest, stdout, stderr)
	case "dnssec":
		return cmdDNSSEC(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "explain":
		return cmdExplain(rest, stdout, stderr)
	case "drain":
		return cmdDrain(rest, true, stdout, stderr)
	case "undrain":
		return cmdDrain(rest, false, stdout, stderr)
	case "version", "-version", "--version":
		return cmdVersion(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "gslbd: unknown command %q\n\n", cmd)
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: gslbd <command> [flags]

commands:
  serve   [-config FILE] [-log-format text|json] [-log-level LEVEL]
          run a node: DNS server, health monitor, mesh member, admin HTTP
  check   [-config FILE]
          validate the node config and every zone and pool file
  explain NAME [TYPE] -client IP [-ecs BITS] [-admin URL | -config FILE]
          show step by step how the answer for that client is chosen
  status  [-admin URL] [-json]
          members, pools, sites and address verdicts of a running node
  drain   POOL SITE[/ADDRESS] [-admin URL]
  undrain POOL SITE[/ADDRESS] [-admin URL]
          mesh-wide maintenance switch
  keygen  print a new random mesh encryption key
  keygen  -dnssec ZONE -out DIR [-role csk|ksk|zsk] [-algorithm 13|15]
          write a DNSSEC key pair in BIND format (K<zone>.+<alg>+<id>.key/.private)
  dnssec  ds ZONE [-config FILE]
          print the DS records of a signed zone for its parent
  version print version, commit and Go version

Run 'gslbd <command> -h' for the flags of a command.
`)
}
