package healthmon

import "time"

// result is the outcome of one probe.
type result struct {
	ok      bool
	latency time.Duration
	class   string // failure class for metrics: refused, timeout, status, tls, other
	reason  string // short human reason, e.g. "status 503"
}

// machine is one target's rise/fall state. It is a value so a worker can
// copy it out from under the lock to log and report.
type machine struct {
	up      bool // current state; "up" is assumed until decided
	decided bool // a first decision was made
	succ    int  // consecutive successes
	fails   int  // consecutive failures
	reason  string
	last    time.Time
	latency time.Duration
}

func newMachine() machine { return machine{up: true} }

// record adds one probe result and reports whether it made a decision: the
// first one (a success confirms the assumed "up"; `fall` failures turn it
// down) or a change (`rise` successes while down, `fall` failures while up).
func (s *machine) record(r result, at time.Time, rise, fall int) bool {
	rise, fall = max(rise, 1), max(fall, 1)
	s.last, s.latency = at, r.latency
	if r.ok {
		s.succ++
		s.fails = 0
		switch {
		case !s.decided:
			s.decided = true
			return true
		case !s.up && s.succ >= rise:
			s.up = true
			return true
		}
		return false
	}
	s.fails++
	s.succ = 0
	s.reason = r.reason
	if s.up && s.fails >= fall {
		s.up, s.decided = false, true
		return true
	}
	return false
}

// downReason is the reason a report carries: the last failure while down.
func (s *machine) downReason() string {
	if s.up {
		return ""
	}
	return s.reason
}

// dueHeap orders entries by their next due time, soonest first.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *dueHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	e.index = -1
	*h = old[:n-1]
	return e
}
