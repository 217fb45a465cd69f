package natsx

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// CredsFile is where EnsureCreds keeps role's nkey seed in dir.
func CredsFile(dir, role string) string { return filepath.Join(dir, role+".nk") }

// EnsureCreds makes sure dir holds an nkey user seed per role (mode 0600,
// created on first use, kept across restarts) and returns the public keys
// by role: what `orgsync dev` gives its embedded server and its services,
// and `orgsync nats-creds` writes for a deployment.
func EnsureCreds(dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("NATS credentials dir: %w", err)
	}
	pubs := map[string]string{}
	for _, role := range Roles() {
		path := CredsFile(dir, role)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return nil, fmt.Errorf("NATS credentials of %s: %w", role, err)
			}
			if b, err = kp.Seed(); err != nil {
				return nil, fmt.Errorf("NATS credentials of %s: %w", role, err)
			}
			if err := writeSecret(path, append(b, '\n')); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, fmt.Errorf("NATS credentials of %s: %w", role, err)
		}
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return nil, fmt.Errorf("NATS credentials %s: %w", path, err)
		}
		if pubs[role], err = kp.PublicKey(); err != nil {
			return nil, fmt.Errorf("NATS credentials %s: %w", path, err)
		}
		if err := os.Chmod(path, 0o600); err != nil { // a copied file keeps its mode otherwise
			return nil, fmt.Errorf("NATS credentials %s: %w", path, err)
		}
	}
	return pubs, nil
}

// EnsureKeyFile returns the JetStream encryption key kept in path, creating
// a random one (256 bits, hex, mode 0600) on first use.
func EnsureKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) > 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("JetStream key %s: %w", path, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("JetStream key: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("JetStream key: %w", err)
	}
	key := hex.EncodeToString(raw[:])
	if err := writeSecret(path, []byte(key+"\n")); err != nil {
		return "", err
	}
	return key, nil
}

// writeSecret writes b to path with mode 0600, atomically.
func writeSecret(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
