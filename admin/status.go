package admin

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"gslbd/zones"
)

// Status is the answer to GET /api/v1/status (docs/operations.md, Admin API) and what the status
// page and `gslbd status` show.
type Status struct {
	Node      string    `json:"node"`
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"`
	Time      time.Time `json:"time"`
	// ConfigLoadedAt is when the snapshot in service was loaded.
	ConfigLoadedAt time.Time    `json:"config_loaded_at,omitzero"`
	LastReload     ReloadResult `json:"last_reload"`
	Warnings       []string     `json:"warnings,omitempty"`
	// Zones are the origins served; Geo the client location database.
	Zones []string   `json:"zones"`
	Geo   *GeoStatus `json:"geo,omitempty"`

	// Config is the digest of the zones and pools this node serves (equal
	// on nodes that load the same files); ConfigDivergent lists the alive
	// members that announce another.
	Config          string   `json:"config,omitempty"`
	ConfigDivergent []string `json:"config_divergent,omitempty"`
	// MonitorsPerTarget is health.monitors_per_target (0: all monitors).
	MonitorsPerTarget int `json:"monitors_per_target"`

	Members []Member     `json:"members"`
	Drains  []Drain      `json:"drains"`
	Pools   []PoolStatus `json:"pools"`
}

// GeoStatus describes the GeoIP database in service.
type GeoStatus struct {
	Path      string    `json:"path,omitempty"`
	Type      string    `json:"type,omitempty"`
	BuildTime time.Time `json:"build_time,omitzero"`
	Networks  int       `json:"networks"`
	Locations int       `json:"locations"`
	Overrides int       `json:"overrides"`
}

// PoolStatus is one pool with its sites.
type PoolStatus struct {
	Name    string `json:"name"`
	Policy  string `json:"policy"`
	Answers int    `json:"answers"`
	TTL     uint32 `json:"ttl"`
	// CurrentTTL is the TTL answers carry now: min_ttl while an address
	// is down or its monitors disagree (health-aware TTL), else ttl.
	CurrentTTL  uint32       `json:"current_ttl"`
	Affinity    string       `json:"affinity"`
	WhenAllDown string       `json:"when_all_down"`
	Fallback    string       `json:"fallback,omitempty"`
	Check       string       `json:"check"`
	Sites       []SiteStatus `json:"sites"`
}

// SiteStatus is one site of a pool.
type SiteStatus struct {
	Name string `json:"name"`
	// Drained is true when the whole site is drained; DrainedBy says how:
	// "config" (drained = true in the pool file) or "mesh" (the admin API).
	Drained    bool            `json:"drained"`
	DrainedBy  string          `json:"drained_by,omitempty"`
	Lat        float64         `json:"lat"`
	Lon        float64         `json:"lon"`
	HasCoords  bool            `json:"has_coords"`
	Weight     int             `json:"weight"`
	Priority   int             `json:"priority"`
	Countries  []string        `json:"countries,omitempty"`
	Continents []string        `json:"continents,omitempty"`
	Check      string          `json:"check"`
	Addresses  []AddressStatus `json:"addresses"`
}

// AddressStatus is one address of a site: the mesh verdict, whether it is
// drained, and every monitor's vote.
type AddressStatus struct {
	Address netip.Addr `json:"address"`
	// Verdict is the mesh verdict, "up" or "down" (README, Health checks and the mesh), whatever the
	// drains say.
	Verdict string `json:"verdict"`
	Drained bool   `json:"drained"`
	// Eligible is whether the address can be in an answer now: up and not
	// drained (README, How an answer is chosen).
	Eligible bool `json:"eligible"`
	// Votes maps each monitor with a fresh report to "up" or "down".
	Votes map[string]string `json:"votes"`
	// Monitors are the monitors that probe this target now (all of them
	// unless health.monitors_per_target is set).
	Monitors []string `json:"monitors,omitempty"`
	// Reason, LatencyMS and CheckedAt are this node's own last probe.
	Reason    string    `json:"reason,omitempty"`
	LatencyMS float64   `json:"latency_ms,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	Target    string    `json:"target"`
}

func (s *Server) view() *zones.View {
	if s.opts.Source == nil {
		return nil
	}
	return s.opts.Source.View()
}

// Status gathers the node's state now.
func (s *Server) Status() *Status {
	st := &Status{
		Node:       s.opts.NodeName,
		Version:    s.opts.Version,
		GoVersion:  runtime.Version(),
		Time:       time.Now().UTC(),
		LastReload: s.lastReload(),
		Members:    []Member{},
		Drains:     []Drain{},
		Pools:      []PoolStatus{},
		Zones:      []string{},
	}
	if m := s.opts.Mesh; m != nil {
		st.Members = append(st.Members, m.Members()...)
		slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
		st.Drains = append(st.Drains, m.Drains()...)
	}
	v := s.view()
	if v == nil {
		return st
	}
	st.ConfigLoadedAt = v.Snap.LoadedAt
	st.Warnings = v.Snap.Warnings
	st.Config = v.Snap.ConfigDigest
	for i := range st.Members {
		m := &st.Members[i]
		if m.Name != st.Node && m.State == "alive" && m.Config != st.Config {
			m.ConfigDiffers = true
			st.ConfigDivergent = append(st.ConfigDivergent, m.Name)
		}
	}
	if asg, ok := s.opts.Mesh.(Assigner); ok {
		st.MonitorsPerTarget = asg.MonitorsPerTarget()
	}
	for _, z := range v.Snap.Zones {
		st.Zones = append(st.Zones, z.Origin)
	}
	slices.Sort(st.Zones)
	gi := v.Snap.Geo.Info()
	st.Geo = &GeoStatus{Path: gi.Path, Type: gi.Type, BuildTime: gi.BuildTime.UTC(), Networks: gi.Networks, Locations: gi.Locations, Overrides: gi.Overrides}
	if gi.BuildTime.IsZero() {
		st.Geo.BuildTime = time.Time{}
	}
	var probes map[string]ProbeState
	if s.opts.Monitor != nil {
		probes = s.opts.Monitor.Probes()
	}
	meshDrained := map[[2]string]bool{}
	for _, d := range st.Drains {
		if !d.Addr.IsValid() {
			meshDrained[[2]string{d.Pool, d.Site}] = true
		}
	}
	for _, p := range v.Snap.PoolList {
		ps := PoolStatus{
			Name:        p.Name,
			Policy:      policyName(p.Policy),
			Answers:     p.Answers,
			TTL:         p.TTL,
			CurrentTTL:  v.TTL(p),
			Affinity:    affinityName(p.Affinity),
			WhenAllDown: allDownName(p.WhenAllDown),
			Check:       checkString(p.Check),
			Sites:       make([]SiteStatus, 0, len(p.Sites)),
		}
		if p.Fallback != nil {
			ps.Fallback = p.Fallback.Name
		}
		for _, site := range p.Sites {
			ss := SiteStatus{
				Name:       site.Name,
				Lat:        site.Lat,
				Lon:        site.Lon,
				HasCoords:  site.HasCoords,
				Weight:     site.Weight,
				Priority:   site.Priority,
				Countries:  site.Countries,
				Continents: site.Continents,
				Check:      checkString(site.Check),
				Addresses:  make([]AddressStatus, 0, len(site.Addrs)),
			}
			switch {
			case site.Drained:
				ss.Drained, ss.DrainedBy = true, "config"
			case meshDrained[[2]string{p.Name, site.Name}]:
				ss.Drained, ss.DrainedBy = true, "mesh"
			}
			for i := range site.Addrs {
				a := &site.Addrs[i]
				key := v.Snap.Targets[a.Target].Key
				as := AddressStatus{
					Address:  a.Addr,
					Verdict:  verdict(v.Up(a)),
					Drained:  v.IsDrained(a),
					Eligible: v.Up(a) && !v.IsDrained(a),
					Votes:    map[string]string{},
					Target:   key,
				}
				if s.opts.Mesh != nil {
					for mon, up := range s.opts.Mesh.Votes(key) {
						as.Votes[mon] = verdict(up)
					}
				}
				if asg, ok := s.opts.Mesh.(Assigner); ok {
					as.Monitors = asg.Monitors(key)
				}
				if ps, ok := probes[key]; ok {
					as.Reason = ps.Reason
					as.LatencyMS = float64(ps.Latency.Microseconds()) / 1000
					as.CheckedAt = ps.At.UTC()
				}
				ss.Addresses = append(ss.Addresses, as)
			}
			ps.Sites = append(ps.Sites, ss)
		}
		st.Pools = append(st.Pools, ps)
	}
	return st
}

func verdict(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func policyName(p zones.Policy) string {
	switch p {
	case zones.PolicyGeo:
		return "geo"
	case zones.PolicyWeighted:
		return "weighted"
	case zones.PolicyFailover:
		return "failover"
	}
	return "policy(" + strconv.Itoa(int(p)) + ")"
}

func affinityName(a zones.Affinity) string {
	switch a {
	case zones.AffinityNone:
		return "none"
	case zones.AffinityClientSubnet:
		return "client-subnet"
	}
	return "affinity(" + strconv.Itoa(int(a)) + ")"
}

func allDownName(a zones.AllDown) string {
	switch a {
	case zones.AllDownAnswerAll:
		return "answer-all"
	case zones.AllDownFallback:
		return "fallback"
	case zones.AllDownNoData:
		return "nodata"
	}
	return "when_all_down(" + strconv.Itoa(int(a)) + ")"
}

// checkString is a one-line summary of a check for people: "http :80
// /healthz every 5s".
func checkString(c zones.Check) string {
	var b strings.Builder
	switch c.Type {
	case zones.CheckNone:
		return "none"
	case zones.CheckHTTP:
		b.WriteString("http")
	case zones.CheckHTTPS:
		b.WriteString("https")
	case zones.CheckTCP:
		b.WriteString("tcp")
	case zones.CheckDNS:
		b.WriteString("dns")
	default:
		fmt.Fprintf(&b, "check(%d)", c.Type)
	}
	fmt.Fprintf(&b, " :%d", c.Port)
	if c.Type == zones.CheckHTTP || c.Type == zones.CheckHTTPS {
		b.WriteString(" ")
		if c.Host != "" {
			b.WriteString(c.Host)
		}
		b.WriteString(c.Path)
		if c.BodyMatch != "" {
			fmt.Fprintf(&b, " body~%q", c.BodyMatch)
		}
	}
	if c.Type == zones.CheckDNS {
		fmt.Fprintf(&b, " %s %s → %s", c.QName, dns.TypeToString[c.QType], dns.RcodeToString[c.RCode])
		if c.Answer != "" {
			fmt.Fprintf(&b, " %s", c.Answer)
		}
	}
	if c.Interval > 0 {
		fmt.Fprintf(&b, " every %s", c.Interval)
	}
	return b.String()
}
