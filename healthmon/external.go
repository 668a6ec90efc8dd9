package healthmon

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gslbd/zones"
)

// Feed is the external health input (docs/operations.md, "External
// health"): systems the operator
// trusts — an alert manager, a deploy pipeline, Consul — set addresses or
// whole sites up or down for a while, through a watched file (like
// gdnsd's extfile) or the admin API. What the feed says is this monitor's
// report on the targets it names (Monitor.SetOverrides): it is gossiped
// and counted in the quorum like a probe result, so an external "down"
// takes an address out only when a majority of the monitors say so — feed
// every monitor to act mesh-wide.
//
// Several entries may name one target (an address and its site, the file
// and the API): any entry saying down makes it down, else up.
type Feed struct {
	mon  *Monitor
	log  *slog.Logger
	file string
	poll time.Duration
	met  *feedMetrics

	mu        sync.Mutex
	snap      *zones.Snapshot
	fileList  []Entry
	fileStamp fileStamp
	api       map[string]Entry // by Entry.Target()
	nextWake  time.Time

	wake chan struct{}
}

// Entry is one external statement about an address or a site.
type Entry struct {
	// Addr is the address meant, every check of it; or, when not valid,
	// Pool and Site name a whole site.
	Addr       netip.Addr
	Pool, Site string

	Up     bool
	Reason string
	// Expires ends the entry; zero means it lasts until removed.
	Expires time.Time
	// Source is "file" or "api".
	Source string
}

// Target is how the entry names what it is about: "192.0.2.10" or
// "web/fra".
func (e Entry) Target() string {
	if e.Addr.IsValid() {
		return e.Addr.String()
	}
	return e.Pool + "/" + e.Site
}

// ParseTarget reads "ADDRESS" or "POOL/SITE".
func ParseTarget(s string) (Entry, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return Entry{}, fmt.Errorf("target %q: IPv6 zones are not supported", s)
		}
		return Entry{Addr: a.Unmap()}, nil
	}
	pool, site, ok := strings.Cut(s, "/")
	if !ok || pool == "" || site == "" || strings.Contains(site, "/") {
		return Entry{}, fmt.Errorf("target %q: want an address (192.0.2.10) or POOL/SITE (web/fra)", s)
	}
	return Entry{Pool: pool, Site: site}, nil
}

// ErrUnknownTarget is returned for an address or site no pool has.
var ErrUnknownTarget = errors.New("unknown target")

// FeedOptions configure a Feed.
type FeedOptions struct {
	// File is the watched file ("" for none). See ParseFeedFile.
	File string
	// Poll is how often the file's modification time and size are looked
	// at (default 1s: cheap, and soon enough for a deploy script).
	Poll       time.Duration
	Monitor    *Monitor
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewFeed returns a feed acting on opts.Monitor; Run watches the file and
// ends entries when they expire.
func NewFeed(opts FeedOptions) *Feed {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	poll := opts.Poll
	if poll <= 0 {
		poll = time.Second
	}
	return &Feed{
		mon:  opts.Monitor,
		log:  log.With("component", "external"),
		file: opts.File,
		poll: poll,
		met:  newFeedMetrics(opts.Registerer),
		api:  map[string]Entry{},
		wake: make(chan struct{}, 1),
	}
}

// SetSnapshot resolves entries against s from now on (after a reload, an
// entry may name more, fewer or other targets).
func (f *Feed) SetSnapshot(s *zones.Snapshot) {
	f.mu.Lock()
	f.snap = s
	f.mu.Unlock()
	f.apply()
}

// Set adds or replaces the API entry for e's target. The target must be in
// the current configuration.
func (f *Feed) Set(e Entry) error {
	e.Source = "api"
	f.mu.Lock()
	if len(f.keys(e)) == 0 {
		f.mu.Unlock()
		return fmt.Errorf("external %s: %w", e.Target(), ErrUnknownTarget)
	}
	f.api[e.Target()] = e
	f.mu.Unlock()
	f.apply()
	return nil
}

// Clear removes the API entry for target; false when there was none.
func (f *Feed) Clear(target Entry) bool {
	f.mu.Lock()
	_, ok := f.api[target.Target()]
	delete(f.api, target.Target())
	f.mu.Unlock()
	if ok {
		f.apply()
	}
	return ok
}

// Entries lists the entries in force, file ones first, each sorted by
// target.
func (f *Feed) Entries() []Entry {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Entry
	for _, e := range f.fileList {
		if live(e, now) {
			out = append(out, e)
		}
	}
	var api []Entry
	for _, e := range f.api {
		if live(e, now) {
			api = append(api, e)
		}
	}
	slices.SortFunc(api, func(a, b Entry) int { return cmp.Compare(a.Target(), b.Target()) })
	return append(out, api...)
}

func live(e Entry, now time.Time) bool { return e.Expires.IsZero() || now.Before(e.Expires) }

// keys are the target keys e names in the current snapshot. Called with
// f.mu held.
func (f *Feed) keys(e Entry) []string {
	s := f.snap
	if s == nil {
		return nil
	}
	var out []string
	if e.Addr.IsValid() {
		for _, t := range s.Targets {
			if t.Addr == e.Addr {
				out = append(out, t.Key)
			}
		}
		return out
	}
	p := s.Pools[e.Pool]
	if p == nil {
		return nil
	}
	for _, site := range p.Sites {
		if site.Name != e.Site {
			continue
		}
		for _, a := range site.Addrs {
			out = append(out, s.Targets[a.Target].Key)
		}
	}
	return out
}

// apply computes the overrides in force and hands them to the monitor,
// dropping expired API entries and noting when the next one expires.
func (f *Feed) apply() {
	now := time.Now()
	f.mu.Lock()
	over := map[string]Override{}
	var next time.Time
	add := func(e Entry) {
		if !live(e, now) {
			return
		}
		if !e.Expires.IsZero() && (next.IsZero() || e.Expires.Before(next)) {
			next = e.Expires
		}
		reason := "external (" + e.Source + ")"
		if e.Reason != "" {
			reason += ": " + e.Reason
		}
		for _, k := range f.keys(e) {
			if o, ok := over[k]; ok && !o.Up {
				continue // down wins
			}
			over[k] = Override{Up: e.Up, Reason: reason}
		}
	}
	for _, e := range f.fileList {
		add(e)
	}
	for t, e := range f.api {
		if !live(e, now) {
			delete(f.api, t)
			continue
		}
		add(e)
	}
	f.nextWake = next
	f.met.entries.WithLabelValues("file").Set(float64(countLive(f.fileList, now)))
	f.met.entries.WithLabelValues("api").Set(float64(len(f.api)))
	f.mu.Unlock()
	f.met.targets.Set(float64(len(over)))
	if f.mon != nil {
		f.mon.SetOverrides(over)
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func countLive(es []Entry, now time.Time) int {
	n := 0
	for _, e := range es {
		if live(e, now) {
			n++
		}
	}
	return n
}

// Run watches the file and re-applies when an entry expires, until ctx
// ends. It reads the file once before its first wait.
func (f *Feed) Run(ctx context.Context) {
	f.reloadFile(true)
	poll := time.NewTicker(f.poll)
	defer poll.Stop()
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		f.mu.Lock()
		next := f.nextWake
		f.mu.Unlock()
		if next.IsZero() {
			expiry.Reset(time.Hour)
		} else {
			expiry.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			f.reloadFile(false)
		case <-expiry.C:
			f.apply()
		case <-f.wake:
		}
	}
}

// fileStamp tells a changed file from an unchanged one.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
	ok   bool
}

// maxFeedFile bounds the watched file.
const maxFeedFile = 1 << 20

// reloadFile reads the file when it changed (or when force is set). A
// file that does not parse changes nothing: its errors are logged and
// the entries read last stay in force. A missing file means no entries.
func (f *Feed) reloadFile(force bool) {
	if f.file == "" {
		return
	}
	st, err := os.Stat(f.file)
	var stamp fileStamp
	if err == nil {
		stamp = fileStamp{mod: st.ModTime(), size: st.Size(), ok: true}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			stamp.ino = sys.Ino
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		f.log.Warn("external file unreadable; keeping its last entries", "file", f.file, "err", err)
		f.met.loadOK.Set(0)
		return
	}
	f.mu.Lock()
	same := f.fileStamp == stamp
	f.mu.Unlock()
	if same && !force {
		return
	}
	var list []Entry
	if stamp.ok {
		list, err = readFeedFile(f.file, stamp.mod)
		if err != nil {
			f.log.Error("external file rejected; keeping its last entries", "file", f.file, "err", err)
			f.met.loadOK.Set(0)
			f.mu.Lock()
			f.fileStamp = stamp // not again until it changes
			f.mu.Unlock()
			return
		}
	}
	f.mu.Lock()
	var unknown []string
	for _, e := range list {
		if len(f.keys(e)) == 0 {
			unknown = append(unknown, e.Target())
		}
	}
	f.fileList, f.fileStamp = list, stamp
	f.mu.Unlock()
	f.met.loadOK.Set(1)
	if len(unknown) > 0 {
		f.log.Warn("external file names targets no pool has", "file", f.file, "targets", strings.Join(unknown, " "))
	}
	f.log.Info("external file loaded", "file", f.file, "entries", len(list))
	f.apply()
}

func readFeedFile(path string, mod time.Time) ([]Entry, error) {
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	if st, err := fd.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(fd, maxFeedFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFeedFile {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxFeedFile)
	}
	return ParseFeedFile(path, string(data), mod)
}

// ParseFeedFile reads the external file format, one entry per line:
//
//	# TARGET        STATE  [TTL]  [REASON...]
//	192.0.2.10      down   10m    deploy of build 4711
//	web/fra         down   1h     fiber cut, ticket 1234
//	2001:db8::1     up
//
// TARGET is an address or POOL/SITE; STATE is up or down; TTL, a Go
// duration, counts from the file's modification time (mod), so an entry
// written by a script that then died still ends; without TTL an entry
// lasts while it is in the file. Blank lines and # comments are ignored.
// Every malformed line is reported, as path:line: message.
func ParseFeedFile(path, data string, mod time.Time) ([]Entry, error) {
	var out []Entry
	var errs []error
	seen := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxFeedFile)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...)))
		}
		if len(fields) < 2 {
			bad("want TARGET STATE [TTL] [REASON], e.g. \"192.0.2.10 down 10m deploy\"")
			continue
		}
		e, err := ParseTarget(fields[0])
		if err != nil {
			bad("%v", err)
			continue
		}
		switch strings.ToLower(fields[1]) {
		case "up":
			e.Up = true
		case "down":
		default:
			bad("state %q: want up or down", fields[1])
			continue
		}
		rest := fields[2:]
		if len(rest) > 0 {
			if d, err := time.ParseDuration(rest[0]); err == nil {
				if d <= 0 {
					bad("ttl %q: want a positive duration", rest[0])
					continue
				}
				e.Expires = mod.Add(d)
				rest = rest[1:]
			}
		}
		e.Reason = strings.Join(rest, " ")
		e.Source = "file"
		if prev, dup := seen[e.Target()]; dup {
			bad("%s is already on line %d", e.Target(), prev)
			continue
		}
		seen[e.Target()] = n
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

type feedMetrics struct {
	entries *prometheus.GaugeVec
	targets prometheus.Gauge
	loadOK  prometheus.Gauge
}

func newFeedMetrics(reg prometheus.Registerer) *feedMetrics {
	m := &feedMetrics{
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gslbd_health_external_entries",
			Help: "External health entries in force, by source: file or api.",
		}, []string{"source"}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gslbd_health_external_targets",
			Help: "Targets whose report from this monitor is set by the external feed.",
		}),
		loadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gslbd_health_external_file_ok",
			Help: "1 when the external health file was read without errors (or is absent), 0 when its last version was rejected.",
		}),
	}
	m.loadOK.Set(1)
	if reg != nil {
		reg.MustRegister(m.entries, m.targets, m.loadOK)
	}
	return m
}
