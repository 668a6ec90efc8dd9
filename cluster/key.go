package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
)

// GenerateKey returns a new random 32-byte mesh key, base64-encoded, as
// `gslbd keygen` prints it.
func GenerateKey() string {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand panics on a broken source)
	return base64.StdEncoding.EncodeToString(key)
}

// ReadKeyFile reads a base64 mesh key (16, 24 or 32 bytes once decoded)
// from path, as cluster.secret_file names it.
func ReadKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read mesh key: %w", err)
	}
	key, err := ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("read mesh key %s: %w", path, err)
	}
	return key, nil
}

// ParseKey decodes a mesh key file's content: base64 of 16, 24 or 32
// bytes, blanks around it ignored.
func ParseKey(raw []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(raw)))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%d bytes, want 16, 24 or 32 (use `gslbd keygen`)", n)
	}
	return key, nil
}
