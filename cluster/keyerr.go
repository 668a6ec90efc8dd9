package cluster

import (
	"strings"
	"sync"
	"time"
)

// A node whose mesh key (or label) differs from its peers' cannot open
// anything they send: memberlist logs an error for every packet and every
// stream, several a second, on every node, and the joining node only
// retries in silence. gslbd turns that into one ERROR that says what is
// wrong on the node that cannot join, and on the nodes it knocks at into
// one ERROR per keyErrEvery with the count of what was dropped meanwhile.

// keyErrEvery is how often the nodes being knocked at repeat the error.
const keyErrEvery = time.Minute

// keyCause names the likely cause of a memberlist message about traffic
// it could not open, or returns "" when msg is about something else.
func keyCause(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "no installed keys could decrypt"), strings.Contains(m, "decrypt packet failed"):
		return "the other node uses a different mesh key: cluster.secret_file must hold the same key on every node"
	case strings.Contains(m, "remote state is encrypted and encryption is not configured"):
		return "the other node encrypts the mesh and this one has no key: set cluster.secret_file to the mesh's key"
	case strings.Contains(m, "encryption is configured but remote state is not encrypted"):
		return "the other node does not encrypt the mesh: set its cluster.secret_file to this mesh's key"
	case strings.Contains(m, "unacceptable label"):
		return "the other node has a different cluster.label"
	}
	return ""
}

// keyLimiter rate-limits the per-packet errors of keyCause's kind.
type keyLimiter struct {
	mu         sync.Mutex
	since      time.Time // start of the current period; zero before the first error
	suppressed int
	last       string
}

// note records one such error and reports whether to log it now; when a
// period ended with errors left unlogged it returns their count too.
func (k *keyLimiter) note(now time.Time, line string) (logIt bool, suppressed int, last string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.since.IsZero() && now.Sub(k.since) < keyErrEvery {
		k.suppressed++
		k.last = line
		return false, 0, ""
	}
	suppressed, last = k.suppressed, k.last
	k.since, k.suppressed, k.last = now, 0, ""
	return true, suppressed, last
}

// logKeyError logs a memberlist error line about traffic that could not
// be opened, at most once per keyErrEvery, and counts it as dropped.
func (w *logWriter) logKeyError(cause, line string) {
	if w.stats != nil {
		w.stats.drop(dropKey)
	}
	logIt, suppressed, last := w.keys.note(time.Now(), line)
	if !logIt {
		w.log.Debug(line, "source", "memberlist")
		return
	}
	if suppressed > 0 {
		w.log.Warn("more gossip could not be opened meanwhile", "dropped", suppressed, "last", last, "cause", cause)
	}
	w.log.Error("gossip from another node could not be opened; dropped (repeated at most once a minute)", "cause", cause, "detail", line)
}

// joinKeyError logs, once per Mesh, why joining failed when the peers
// answered but could not be understood.
func (m *Mesh) joinKeyError(peers []string, err error) {
	cause := keyCause(err.Error())
	if cause == "" || m.keyErrLogged.Swap(true) {
		return
	}
	detail := strings.TrimSpace(err.Error())
	if i := strings.LastIndex(detail, "* "); i >= 0 {
		detail = strings.TrimSpace(detail[i+2:])
	}
	m.log.Error("cannot join the mesh: the peers answer but their gossip cannot be opened; retrying in the background",
		"cause", cause, "peers", peers, "detail", detail)
}
