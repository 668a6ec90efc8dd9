package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"gslbd/dnsserver"
	"gslbd/zones"
	"gslbd/zones/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "gslbd.toml", "node config `file`")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gslbd check: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, snap, err := loadAll(*cfgPath)
	if err != nil {
		printErrors(stderr, err)
		return exitFail
	}
	for _, f := range snap.Files {
		fmt.Fprintf(stdout, "%s: %s\n", relPath(cfg.Dir, f.Path), f.Summary)
	}
	for _, w := range snap.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "ok: %d zones, %d pools, %d probe targets\n", len(snap.Zones), len(snap.PoolList), len(snap.Targets))
	return exitOK
}

// loadAll reads the node config and everything it names.
func loadAll(path string) (*config.NodeConfig, *zones.Snapshot, error) {
	cfg, err := config.LoadNodeConfig(path)
	if err != nil {
		return nil, nil, err
	}
	snap, err := config.Load(cfg)
	if err == nil {
		// What the DNS server would fail to pack fails the check too.
		err = dnsserver.Check(snap)
	}
	return cfg, snap, err
}

// printErrors prints every error of a joined error on a line of its own.
func printErrors(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			printErrors(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

// relPath shortens p relative to dir when p lies below it.
func relPath(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil && !filepath.IsAbs(r) && r != "" && r[0] != '.' {
		return r
	}
	return p
}
