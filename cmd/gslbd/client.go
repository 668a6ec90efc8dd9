package main

// The client commands: status, explain, drain/undrain and keygen. All but
// keygen (and explain -config) talk to a node's admin API through
// admin.Client; they print tables for people by default and JSON with -json.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gslbd/admin"
	"gslbd/cluster"
	"gslbd/dnsserver"
	"gslbd/zones"
	"gslbd/zones/config"
)

// clientTimeout bounds one admin API call; a reload of a large
// configuration is the slowest.
const clientTimeout = 30 * time.Second

// clientFlags are the flags every admin API command takes.
type clientFlags struct {
	admin     string
	tokenFile string
	caFile    string
	json      bool
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.admin, "admin", admin.DefaultURL, "admin API `URL` of the node")
	fs.StringVar(&c.tokenFile, "token-file", "", "read the bearer token from `FILE` (default: $GSLBD_TOKEN)")
	fs.StringVar(&c.caFile, "ca-file", "", "trust the PEM certificates in `FILE` for an https:// admin URL (default: the system roots)")
	fs.BoolVar(&c.json, "json", false, "print JSON for scripts instead of tables")
}

// client builds the API client; the token comes from -token-file, else
// from $GSLBD_TOKEN, so it never has to appear on a command line.
func (c *clientFlags) client() (*admin.Client, error) {
	tok := os.Getenv("GSLBD_TOKEN")
	if c.tokenFile != "" {
		b, _, err := config.ReadFile(c.tokenFile, config.MaxSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		tok = string(b)
	}
	base := strings.TrimRight(c.admin, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base // "127.0.0.1:8053" is what people type
	}
	cl := &admin.Client{Base: base, Token: strings.TrimSpace(tok)}
	if c.caFile != "" {
		pem, _, err := config.ReadFile(c.caFile, config.MaxSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read -ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read -ca-file %s: no PEM certificate in it", c.caFile)
		}
		cl.HTTP = &http.Client{Timeout: clientTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	return cl, nil
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments ("gslbd drain web fra -admin URL"), which the flag
// package alone stops at. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag.Parse stops at the first non-flag, or after "--"; tell the
		// two apart by what precedes it.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlagSet makes a flag set that reports to stderr and shows the usage
// line of the command.
func newFlagSet(name, usageLine string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nflags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parseFailed maps a flag error to the exit code: -h is not a failure.
func parseFailed(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

func usageError(stderr io.Writer, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(stderr, "gslbd %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

func apiFailed(stderr io.Writer, cmd string, c *admin.Client, err error) int {
	fmt.Fprintf(stderr, "gslbd %s: %v\n", cmd, err)
	var ae *admin.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == 401:
		fmt.Fprintln(stderr, "hint: pass the node's admin token with -token-file FILE or $GSLBD_TOKEN")
	case !errors.As(err, &ae):
		fmt.Fprintf(stderr, "hint: is a node's admin API listening at %s? (-admin URL)\n", c.Base)
	}
	return exitFail
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// cmdStatus: gslbd status [-admin URL] [-json].
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	stdout, stderr = safeWriter{stdout}, safeWriter{stderr}
	var cf clientFlags
	fs := newFlagSet("status", "gslbd status [-admin URL] [-json]", stderr)
	cf.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return parseFailed(err)
	}
	if len(pos) > 0 {
		return usageError(stderr, fs, "unexpected argument %q", pos[0])
	}
	c, err := cf.client()
	if err != nil {
		fmt.Fprintf(stderr, "gslbd status: %v\n", err)
		return exitFail
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return apiFailed(stderr, "status", c, err)
	}
	if cf.json {
		printJSON(stdout, st)
		return exitOK
	}
	printStatus(stdout, st)
	return exitOK
}

// printStatus writes the status as tables: node, members, then one row per
// address.
func printStatus(w io.Writer, st *admin.Status) {
	fmt.Fprintf(w, "node %s  version %s", termSafe(st.Node), termSafe(st.Version))
	if !st.ConfigLoadedAt.IsZero() {
		fmt.Fprintf(w, "  config loaded %s", st.ConfigLoadedAt.Local().Format(time.DateTime))
	}
	if !st.LastReload.OK {
		fmt.Fprintf(w, "  LAST RELOAD FAILED %s", st.LastReload.At.Local().Format(time.DateTime))
	}
	fmt.Fprintln(w)
	for _, e := range st.LastReload.Errors {
		fmt.Fprintf(w, "  reload error: %s\n", termSafe(e))
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", termSafe(warn))
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tSTATE\tCONFIG")
	if len(st.Members) == 0 {
		fmt.Fprintln(tw, "-\t-\tno mesh\t-")
	}
	for _, m := range st.Members {
		cfg := termSafe(m.Config)
		if cfg == "" {
			cfg = "-"
		}
		if m.ConfigDiffers {
			cfg += " DIFFERS"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", termSafe(m.Name), termSafe(m.Address), termSafe(m.State), cfg)
	}
	tw.Flush()
	if len(st.ConfigDivergent) > 0 {
		fmt.Fprintf(w, "WARNING: %s serve a configuration different from this node's (%s): their answers may differ\n", termSafe(strings.Join(st.ConfigDivergent, ", ")), termSafe(st.Config))
	}
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if st.MonitorsPerTarget > 0 {
		fmt.Fprintf(w, "each target is probed by %d monitors (PROBED BY)\n\n", st.MonitorsPerTarget)
	}
	sharded := st.MonitorsPerTarget > 0
	if sharded {
		fmt.Fprintln(tw, "POOL\tSITE\tADDRESS\tVERDICT\tDRAINED\tVOTES\tPROBED BY\tREASON")
	} else {
		fmt.Fprintln(tw, "POOL\tSITE\tADDRESS\tVERDICT\tDRAINED\tVOTES\tREASON")
	}
	for _, p := range st.Pools {
		for _, s := range p.Sites {
			if len(s.Addresses) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t%s\t-\t-\n", p.Name, s.Name, siteDrain(s))
			}
			for _, a := range s.Addresses {
				drained := "-"
				switch {
				case s.Drained:
					drained = siteDrain(s)
				case a.Drained:
					drained = "yes"
				}
				reason := termSafe(a.Reason)
				if reason == "" {
					reason = "-"
				}
				if sharded {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, s.Name, a.Address, a.Verdict, drained, votesString(a.Votes), termSafe(strings.Join(a.Monitors, ",")), reason)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, s.Name, a.Address, a.Verdict, drained, votesString(a.Votes), reason)
			}
		}
	}
	tw.Flush()
	if len(st.Drains) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "DRAINS (mesh-wide)")
		for _, d := range st.Drains {
			fmt.Fprintf(w, "  %s\n", drainName(d.Pool, d.Site, d.Addr))
		}
	}
}

func siteDrain(s admin.SiteStatus) string {
	if !s.Drained {
		return "-"
	}
	return "site (" + s.DrainedBy + ")"
}

// votesString is "ns1=up ns2=down", sorted by monitor; "-" without votes.
func votesString(v map[string]string) string {
	if len(v) == 0 {
		return "-"
	}
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(termSafe(n) + "=" + termSafe(v[n]))
	}
	return b.String()
}

func drainName(pool, site string, addr netip.Addr) string {
	if addr.IsValid() {
		return pool + "/" + site + "/" + addr.String()
	}
	return pool + "/" + site
}

// cmdDrain: gslbd drain|undrain POOL SITE[/ADDRESS] [-admin URL].
func cmdDrain(args []string, on bool, stdout, stderr io.Writer) int {
	stdout, stderr = safeWriter{stdout}, safeWriter{stderr}
	name := "drain"
	if !on {
		name = "undrain"
	}
	var cf clientFlags
	fs := newFlagSet(name, "gslbd "+name+" POOL SITE[/ADDRESS] [-admin URL] [-token-file FILE] [-json]", stderr)
	cf.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return parseFailed(err)
	}
	if len(pos) != 2 {
		return usageError(stderr, fs, "want POOL and SITE[/ADDRESS], got %d arguments", len(pos))
	}
	pool, site := pos[0], pos[1]
	var addr netip.Addr
	if s, a, ok := strings.Cut(site, "/"); ok {
		site = s
		if addr, err = netip.ParseAddr(a); err != nil {
			return usageError(stderr, fs, "invalid address %q in %q: want SITE/ADDRESS with an IPv4 or IPv6 address", a, pos[1])
		}
	}
	if pool == "" || site == "" {
		return usageError(stderr, fs, "pool and site must not be empty")
	}
	c, err := cf.client()
	if err != nil {
		fmt.Fprintf(stderr, "gslbd %s: %v\n", name, err)
		return exitFail
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	res, err := c.Drain(ctx, pool, site, addr, on)
	if err != nil {
		return apiFailed(stderr, name, c, err)
	}
	if cf.json {
		printJSON(stdout, res)
		return exitOK
	}
	fmt.Fprintf(stdout, "%sed %s mesh-wide\n", name, drainName(res.Pool, res.Site, res.Address))
	return exitOK
}

// cmdExplain: gslbd explain NAME [TYPE] -client IP [-ecs BITS]
// [-admin URL | -config FILE]. With -config it answers from the files alone
// (every address up, only config drains); otherwise it asks the node, which
// knows the live verdicts and drains.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	stdout, stderr = safeWriter{stdout}, safeWriter{stderr}
	var cf clientFlags
	fs := newFlagSet("explain", "gslbd explain NAME [TYPE] -client IP [-ecs BITS] [-admin URL | -config FILE] [-json]", stderr)
	cf.register(fs)
	clientS := fs.String("client", "", "client `IP` address to explain the answer for (required)")
	ecs := fs.Int("ecs", -1, "treat the client as an EDNS Client Subnet with this source prefix length (`BITS`)")
	cfgPath := fs.String("config", "", "explain offline from this node config `FILE` instead of asking a node")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return parseFailed(err)
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError(stderr, fs, "want NAME and optionally TYPE, got %d arguments", len(pos))
	}
	qname, qtypeS := pos[0], "A"
	if len(pos) == 2 {
		qtypeS = pos[1]
	}
	qtype, err := admin.ParseType(qtypeS)
	if err != nil {
		return usageError(stderr, fs, "%v", err)
	}
	if *clientS == "" {
		return usageError(stderr, fs, "-client IP is required")
	}
	client, err := netip.ParseAddr(*clientS)
	if err != nil {
		return usageError(stderr, fs, "invalid -client %q: want an IPv4 or IPv6 address", *clientS)
	}
	client = client.Unmap()
	if *ecs < -1 || *ecs > client.BitLen() {
		return usageError(stderr, fs, "invalid -ecs %d: want 0..%d", *ecs, client.BitLen())
	}
	adminSet := false
	fs.Visit(func(f *flag.Flag) { adminSet = adminSet || f.Name == "admin" })
	if *cfgPath != "" && adminSet {
		return usageError(stderr, fs, "-admin and -config exclude each other")
	}

	var tr *zones.Trace
	if *cfgPath != "" {
		cfg, err := config.LoadNodeConfig(*cfgPath)
		if err == nil {
			var snap *zones.Snapshot
			if snap, err = config.Load(cfg); err == nil {
				tr, err = dnsserver.Explain(zones.NewView(snap, nil), qname, qtype, client, *ecs)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "gslbd explain: %v\n", err)
			return exitFail
		}
	} else {
		c, err := cf.client()
		if err != nil {
			fmt.Fprintf(stderr, "gslbd explain: %v\n", err)
			return exitFail
		}
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		defer cancel()
		if tr, err = c.Explain(ctx, qname, strings.ToUpper(qtypeS), client, *ecs); err != nil {
			return apiFailed(stderr, "explain", c, err)
		}
	}
	if cf.json {
		printJSON(stdout, tr)
		return exitOK
	}
	fmt.Fprint(stdout, tr.Text())
	return exitOK
}

// cmdKeygen: gslbd keygen [-json]. Prints a new random mesh key, base64.
func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen", "gslbd keygen [-json] | gslbd keygen -dnssec ZONE -out DIR [-role csk|ksk|zsk] [-algorithm 13|15]", stderr)
	asJSON := fs.Bool("json", false, `print {"key": "..."} instead of the bare key`)
	zone := fs.String("dnssec", "", "write a DNSSEC key pair for `ZONE` (BIND format) instead of a mesh key")
	out := fs.String("out", "", "with -dnssec: the `DIR` the key pair is written to")
	role := fs.String("role", "csk", "with -dnssec: csk (one key signs everything), ksk or zsk")
	alg := fs.Int("algorithm", 13, "with -dnssec: 13 (ECDSAP256SHA256) or 15 (ED25519)")
	ttl := fs.Uint("ttl", 3600, "with -dnssec: the TTL written in the .key file and its DS")
	times := map[string]string{}
	for _, name := range []string{"publish", "activate", "inactive", "delete"} {
		fs.Func(name, "with -dnssec: key `time` (YYYYMMDDHHMMSS UTC, RFC 3339, now or +DURATION)", func(v string) error { times[name] = v; return nil })
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return parseFailed(err)
	}
	if len(pos) > 0 {
		return usageError(stderr, fs, "unexpected argument %q", pos[0])
	}
	if *zone != "" {
		return dnssecKeygen(*zone, *out, *role, *alg, *ttl, times, stdout, stderr)
	}
	enc := cluster.GenerateKey()
	if *asJSON {
		printJSON(stdout, map[string]string{"key": enc})
		return exitOK
	}
	fmt.Fprintln(stdout, enc)
	return exitOK
}
