package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
)

// startUnbound runs a real unbound in the foreground as a resolver whose
// only way out is a stub-zone for gslb.test. to the gslbd at gslbdDNS
// (host:port): the root is forwarded to a closed loopback port, so it
// never queries the internet. server holds extra lines for its server:
// section (modules, ECS, trust anchors, cache limits), each starting with
// a tab. It returns the port unbound listens on (UDP and TCP on
// 127.0.0.1); the process ends with the test, and its log is shown when
// the test fails.
func startUnbound(t *testing.T, gslbdDNS, server string) int {
	t.Helper()
	unbound := requireTool(t, "unbound")
	dir := t.TempDir()
	port := freePort(t, "127.0.0.1", true)
	_, gslbdPort, err := net.SplitHostPort(gslbdDNS)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`server:
	interface: 127.0.0.1@%d
	port: %d
	access-control: 127.0.0.0/8 allow
	do-daemonize: no
	use-syslog: no
	logfile: ""
	chroot: ""
	username: ""
	directory: %q
	pidfile: %q
	verbosity: 1
	# test. is a special-use name unbound answers itself unless told not to.
	local-zone: "test." nodefault
	do-ip6: no
	do-not-query-localhost: no
	qname-minimisation: no
	harden-referral-path: no
	target-fetch-policy: "0 0 0 0 0"
%sstub-zone:
	name: "gslb.test."
	stub-addr: 127.0.0.1@%s
forward-zone:
	name: "."
	forward-addr: 127.0.0.1@1
remote-control:
	control-enable: no
`, port, port, dir, filepath.Join(dir, "unbound.pid"), server, gslbdPort)
	confPath := filepath.Join(dir, "unbound.conf")
	writeFile(t, confPath, conf)
	ctx, cancel := context.WithCancel(context.Background())
	ub := exec.CommandContext(ctx, unbound, "-d", "-c", confPath)
	log := &syncBuffer{}
	ub.Stdout, ub.Stderr = log, log
	if err := ub.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = ub.Wait()
		if t.Failed() {
			t.Logf("unbound log:\n%s", tail(log.String(), 40))
		}
	})
	return port
}
