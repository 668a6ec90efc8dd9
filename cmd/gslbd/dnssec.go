package main

// The DNSSEC commands: `gslbd keygen -dnssec ZONE -out DIR` writes a BIND
// key pair, `gslbd dnssec ds ZONE -config FILE` prints the DS records
// the parent zone needs.

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gslbd/dnssec"
)

// dnssecKeygen writes a new key pair for zone into dir and prints the
// .key path (for key_files) and, for a SEP key, its DS record.
func dnssecKeygen(zone, dir, role string, alg int, ttl uint, times map[string]string, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "gslbd keygen: "+format+"\n", args...)
		return exitFail
	}
	if alg != int(dnssec.ECDSAP256SHA256) && alg != int(dnssec.ED25519) {
		return fail("-algorithm %d: want 13 (ECDSAP256SHA256) or 15 (ED25519)", alg)
	}
	var ksk bool
	switch role {
	case "csk", "ksk":
		ksk = true
	case "zsk":
	default:
		return fail("-role %q: want csk (one key signs everything), ksk or zsk", role)
	}
	if dir == "" {
		return fail("-out DIR is required with -dnssec: the directory the key pair is written to")
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fail("-out %s: not a directory", dir)
	}
	now := time.Now().UTC().Truncate(time.Second)
	tm := dnssec.Timing{Created: now, Publish: now, Activate: now}
	for name, dst := range map[string]*time.Time{"publish": &tm.Publish, "activate": &tm.Activate, "inactive": &tm.Inactive, "delete": &tm.Delete} {
		if v := times[name]; v != "" {
			t, err := parseKeyTime(v, now)
			if err != nil {
				return fail("-%s %q: %v", name, v, err)
			}
			*dst = t
		}
	}
	k, err := dnssec.Generate(zone, uint8(alg), ksk, uint32(ttl), tm)
	if err != nil {
		return fail("%v", err)
	}
	if err := k.Write(dir); err != nil {
		return fail("%v", err)
	}
	fmt.Fprintln(stdout, k.Path)
	if k.SEP() {
		fmt.Fprintf(stderr, "DS record for the parent zone of %s:\n", k.DNSKEY.Hdr.Name)
		fmt.Fprintln(stdout, k.DS(uint32(ttl)).String())
	}
	return exitOK
}

// parseKeyTime reads a key timing flag: YYYYMMDDHHMMSS (UTC, as BIND
// writes it), RFC 3339, "now", or now plus a Go duration ("+720h").
func parseKeyTime(v string, now time.Time) (time.Time, error) {
	if v == "now" {
		return now, nil
	}
	if d, ok := strings.CutPrefix(v, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return time.Time{}, fmt.Errorf("want +DURATION such as +720h: %w", err)
		}
		return now.Add(dur), nil
	}
	if len(v) == 14 {
		if _, err := strconv.Atoi(v); err == nil {
			return time.ParseInLocation("20060102150405", v, time.UTC)
		}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("want YYYYMMDDHHMMSS, RFC 3339, now or +DURATION")
	}
	return t, nil
}

// cmdDNSSEC: gslbd dnssec ds ZONE [-config FILE].
func cmdDNSSEC(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "ds" {
		fmt.Fprintln(stderr, "usage: gslbd dnssec ds ZONE [-config FILE]")
		return exitUsage
	}
	fs := newFlagSet("dnssec ds", "gslbd dnssec ds ZONE [-config FILE]", stderr)
	cfgPath := fs.String("config", "gslbd.toml", "node config `file`")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return parseFailed(err)
	}
	if len(pos) != 1 {
		return usageError(stderr, fs, "want one zone name")
	}
	zone := strings.ToLower(dns.Fqdn(pos[0]))
	_, snap, err := loadAll(*cfgPath)
	if err != nil {
		printErrors(stderr, err)
		return exitFail
	}
	var keys *dnssec.Zone
	found := false
	for _, z := range snap.Zones {
		if z.Origin == zone {
			keys, found = z.DNSSEC, true
		}
	}
	switch {
	case !found:
		fmt.Fprintf(stderr, "gslbd dnssec ds: no zone %s in %s\n", zone, *cfgPath)
		return exitFail
	case keys == nil:
		fmt.Fprintf(stderr, "gslbd dnssec ds: zone %s is not signed: its zone file has no [dnssec] table\n", zone)
		return exitFail
	}
	// The DS set the parent should hold now is what CDS publishes: the
	// SEP keys that are published and not retired.
	st := keys.At(time.Now())
	for _, tail := range st.CDS.Tails {
		rr, _, err := dns.UnpackRRWithHeader(dns.RR_Header{Name: zone, Rrtype: dns.TypeDS, Class: dns.ClassINET, Ttl: keys.TTL, Rdlength: uint16(len(tail) - 10)}, tail, 10)
		if err != nil {
			fmt.Fprintf(stderr, "gslbd dnssec ds: %v\n", err)
			return exitFail
		}
		fmt.Fprintln(stdout, rr.String())
	}
	return exitOK
}
