package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gslbd/dnssec"
)

// loadKeys reads the key pairs a zone file's [dnssec] table names (paths
// relative to the zone file's directory) and gives the zone its signing
// material. Every problem is reported at its key_files entry: a missing,
// unreadable or mismatched file, an algorithm gslbd does not sign with,
// keys that cannot sign together, and keys none of which signs now. A
// private key that group or others may read is a warning.
func loadKeys(zs *zoneSrc, dir string, warns *[]string) {
	if !zs.signed || len(zs.keyFiles) == 0 {
		return
	}
	z := zs.zone
	var keys []*dnssec.Key
	ok := true
	for _, ref := range zs.keyFiles {
		path := ref.file
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		shown := ref.file
		if !filepath.IsAbs(shown) {
			shown = filepath.Join(filepath.Dir(z.File), shown)
		}
		k, err := dnssec.ReadKey(path, z.Origin)
		if err != nil {
			zs.d.errf(ref.at, "%s", keyProblem(shown, err))
			ok = false
			continue
		}
		if fi, err := os.Stat(dnssec.PrivatePath(path)); err == nil && fi.Mode().Perm()&0o077 != 0 {
			*warns = append(*warns, fmt.Sprintf("%s: private key %s is readable by group or others (mode %04o): chmod 600 it",
				z.File, dnssec.PrivatePath(shown), fi.Mode().Perm()))
		}
		keys = append(keys, k)
	}
	if !ok {
		return
	}
	at := []string{"dnssec", "key_files"}
	dz, err := dnssec.NewZone(z.Origin, keys, z.TTL)
	if err != nil {
		zs.d.errf(at, "%v", err)
		return
	}
	st := dz.At(time.Now())
	if len(st.ZSKs) == 0 {
		zs.d.errf(at, "no key signs now: each is retired (Inactive), deleted, or not yet published or active (Publish, Activate); the zone would serve answers no validator accepts")
		return
	}
	z.DNSSEC = dz
}

// keyProblem says what is wrong with a key pair in an operator's words;
// file is the .key file as the operator sees it.
func keyProblem(file string, err error) string {
	var ke *dnssec.KeyError
	if !errors.As(err, &ke) {
		return "key " + file + ": " + err.Error()
	}
	if strings.HasSuffix(ke.Path, ".private") {
		file = dnssec.PrivatePath(file)
	}
	what := map[dnssec.KeyErrorKind]string{
		dnssec.KeyMissing:    "missing key file",
		dnssec.KeyUnreadable: "unreadable key file",
		dnssec.KeyMismatch:   "mismatched key",
		dnssec.KeyAlgorithm:  "wrong key algorithm",
	}[ke.Kind]
	return what + ": " + file + ": " + ke.Err.Error()
}
