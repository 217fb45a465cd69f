package natsx

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures an in-process nats-server with JetStream.
type EmbeddedConfig struct {
	// StoreDir is where JetStream keeps streams and KV (required). Tests
	// pass t.TempDir(); `orgsync dev` a directory under the user's state dir
	// so data survives restarts.
	StoreDir string
	// Host to listen on; default "127.0.0.1" (never exposed by default).
	Host string
	// Port to listen on; -1 (the default when 0) picks a free random port.
	Port int
	// ServerName; default "orgsync-embedded".
	ServerName string
	// ClusterName names the (single-node) cluster; empty leaves it unset.
	ClusterName string
	// ReadyTimeout bounds how long StartEmbedded waits for the server to
	// accept connections; default 10s.
	ReadyTimeout time.Duration
	// Logging turns on the server's own log output (stderr); off by default
	// because tests and `orgsync dev` have their own logs.
	Logging bool
	// Users are the public nkeys of the NATS identities by role
	// (EnsureCreds); each gets Permissions(role), as deploy/nats configures
	// them. Empty: no authorization (unit tests of single packages only;
	// `orgsync dev` always sets them).
	Users map[string]string
	// JetStreamKey turns on JetStream encryption at rest (ChaCha20-Poly1305)
	// with this key, as `jetstream { cipher: chacha, key: ... }` does.
	JetStreamKey string
	// TLS, when set, makes the client port TLS-only (verifying client
	// certificates when TLS.ClientCAs is set).
	TLS *tls.Config
}

func (c EmbeddedConfig) withDefaults() EmbeddedConfig {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = -1
	}
	if c.ServerName == "" {
		c.ServerName = "orgsync-embedded"
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 10 * time.Second
	}
	return c
}

// Validate reports the first invalid field of c (after defaults).
func (c EmbeddedConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.StoreDir == "":
		return errors.New("natsx: embedded server: StoreDir is required")
	case c.Port < -1 || c.Port > 65535:
		return fmt.Errorf("natsx: embedded server: Port must be -1 (random) or 0..65535, got %d", c.Port)
	case c.ReadyTimeout < 0:
		return fmt.Errorf("natsx: embedded server: ReadyTimeout must be >= 0, got %v", c.ReadyTimeout)
	}
	return nil
}

// StartEmbedded starts a nats-server with JetStream inside this process and
// waits until it accepts connections. The caller owns the server: call
// Shutdown (and WaitForShutdown) when done. s.ClientURL() is the URL to
// connect to.
func StartEmbedded(cfg EmbeddedConfig) (*server.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoLog:      !cfg.Logging,
		NoSigs:     true, // the host process owns signal handling
	}
	if cfg.ClusterName != "" {
		opts.Cluster.Name = cfg.ClusterName
	}
	if cfg.JetStreamKey != "" {
		opts.JetStreamKey, opts.JetStreamCipher = cfg.JetStreamKey, server.ChaCha
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLS = cfg.TLS, true
		opts.TLSVerify = cfg.TLS.ClientCAs != nil
	}
	roles := make([]string, 0, len(cfg.Users))
	for role := range cfg.Users {
		roles = append(roles, role)
	}
	sort.Strings(roles)
	for _, role := range roles {
		perms, err := Permissions(role)
		if err != nil {
			return nil, err
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: cfg.Users[role], Permissions: perms})
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsx: create embedded nats-server (store %s): %w", cfg.StoreDir, err)
	}
	if cfg.Logging {
		s.ConfigureLogger()
	}
	s.Start()
	if !s.ReadyForConnections(cfg.ReadyTimeout) {
		s.Shutdown()
		return nil, fmt.Errorf("natsx: embedded nats-server (store %s) not ready after %v", cfg.StoreDir, cfg.ReadyTimeout)
	}
	return s, nil
}
