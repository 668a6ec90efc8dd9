package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process the harness started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // file with its stdout and stderr
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// procSet owns every process the harness starts and stops exactly those:
// by their process id, never by name, so a system gdnsd or another
// engineer's gslbd on the same machine is never touched.
type procSet struct {
	log   *slog.Logger
	mu    sync.Mutex
	procs []*proc
}

// start runs argv (pinned to the taskset CPU list cpus unless it is ""
// or "-1") with its output in logFile.
func (s *procSet) start(name string, cpus string, dir, logFile string, argv ...string) (*proc, error) {
	if cpus != "" && cpus != "-1" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	f, err := os.Create(logFile)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a Ctrl-C on make reaches the harness,
	// which then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// exited reports whether p has ended, with the tail of its log.
func (p *proc) exited() (bool, string) {
	select {
	case <-p.done:
		return true, fmt.Sprintf("%s exited (%v): %s", p.name, p.err, tail(p.log, 15))
	default:
		return false, ""
	}
}

// stop sends SIGTERM, then SIGKILL after 5 s; both to p's pid only (taskset
// execs the program, so the pid is the server itself).
func (s *procSet) stop(p *proc) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		s.log.Warn("did not stop on SIGTERM, killing", "proc", p.name, "pid", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (s *procSet) stopAll() {
	s.mu.Lock()
	ps := s.procs
	s.procs = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop(p) }()
	}
	wg.Wait()
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime is the CPU time (user + system) pid and its descendants have
// used so far. /proc/PID/stat of a process counts all its threads, live
// and exited; descendants are added so a server that forks helpers is
// charged for them too.
func cpuTime(pid int) (time.Duration, error) {
	pids := append([]int{pid}, descendants(pid)...)
	var ticks int64
	for i, p := range pids {
		u, s, err := statTicks(p)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // a helper that just exited
		}
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

func statTicks(pid int) (utime, stime int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return utime, stime, nil
}

func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	var out []int
	frontier := []int{pid}
	for len(frontier) > 0 && len(out) < 1000 {
		next := frontier[0]
		frontier = frontier[1:]
		for c, pp := range parent {
			if pp == next {
				out = append(out, c)
				frontier = append(frontier, c)
			}
		}
	}
	return out
}

// tail is the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// memory is a process's resident set from /proc/PID/status, in bytes:
// VmRSS now and VmHWM, the most it ever held.
type memory struct {
	rss, peak int64
}

func memStatus(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	var m memory
	for line := range strings.Lines(string(b)) {
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &m.rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &m.peak
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			return memory{}, fmt.Errorf("parse /proc/%d/status: %q", pid, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse /proc/%d/status: %w", pid, err)
		}
		*dst = kb << 10
	}
	if m.rss == 0 || m.peak == 0 {
		return memory{}, fmt.Errorf("parse /proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return m, nil
}
