package natsx

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Environment variables of ClientAuth (the flags' defaults).
const (
	EnvCreds     = "ORGSYNC_NATS_CREDS"
	EnvUser      = "ORGSYNC_NATS_USER"
	EnvPassword  = "ORGSYNC_NATS_PASSWORD"
	EnvNkeySeed  = "ORGSYNC_NATS_NKEY_SEED"
	EnvTLSCA     = "ORGSYNC_NATS_TLS_CA"
	EnvTLSCert   = "ORGSYNC_NATS_TLS_CERT"
	EnvTLSKey    = "ORGSYNC_NATS_TLS_KEY"
	credsJWTMark = "-----BEGIN NATS USER JWT-----"
)

// ClientAuth is how a process proves who it is to NATS and checks the
// server: the standard NATS options, shared by every service binary and the
// CLI. Secrets (password, seed) come from files or the environment, never
// from flags, so they do not show in process listings.
type ClientAuth struct {
	// Creds is a file holding an nkey seed (`nk -gen user`, what `orgsync
	// dev` writes) or a NATS credentials file (user JWT + seed, nsc).
	Creds string
	// User and Password: user/password authentication.
	User, Password string
	// NkeySeed is an nkey user seed ("SU...") given through the environment.
	NkeySeed string
	// TLS: CA bundle to verify the server, client certificate and key for
	// mutual TLS (optional).
	TLSCA, TLSCert, TLSKey string
}

// Register adds --creds, --nats-user and --tls-ca/--tls-cert/--tls-key to
// fs, with defaults from the environment; the password and a raw seed are
// read from the environment only.
func (a *ClientAuth) Register(fs *flag.FlagSet) {
	fs.StringVar(&a.Creds, "creds", os.Getenv(EnvCreds), "NATS credentials: an nkey seed file or a .creds file (user JWT + seed) (env "+EnvCreds+")")
	fs.StringVar(&a.User, "nats-user", os.Getenv(EnvUser), "NATS user name; the password comes from env "+EnvPassword+" (env "+EnvUser+")")
	fs.StringVar(&a.TLSCA, "tls-ca", os.Getenv(EnvTLSCA), "CA bundle (PEM) that signed the NATS server certificate (env "+EnvTLSCA+")")
	fs.StringVar(&a.TLSCert, "tls-cert", os.Getenv(EnvTLSCert), "client certificate (PEM) for mutual TLS with NATS (env "+EnvTLSCert+")")
	fs.StringVar(&a.TLSKey, "tls-key", os.Getenv(EnvTLSKey), "client key (PEM) of --tls-cert (env "+EnvTLSKey+")")
	a.Password = os.Getenv(EnvPassword)
	a.NkeySeed = os.Getenv(EnvNkeySeed)
}

// Configured reports whether any credential is set.
func (a ClientAuth) Configured() bool {
	return a.Creds != "" || a.User != "" || a.NkeySeed != ""
}

// Options are the nats.go options of a; role selects the inbox prefix the
// server lets that identity subscribe to (InboxPrefix).
func (a ClientAuth) Options(role string) ([]nats.Option, error) {
	opts := []nats.Option{nats.CustomInboxPrefix(InboxPrefix(role))}
	if (a.Creds != "") && (a.User != "" || a.NkeySeed != "") || (a.User != "" && a.NkeySeed != "") {
		return nil, errors.New("NATS credentials: give one of --creds, --nats-user, env " + EnvNkeySeed)
	}
	if a.Creds != "" {
		o, err := credsOption(a.Creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if a.NkeySeed != "" {
		o, err := seedOption([]byte(a.NkeySeed), "env "+EnvNkeySeed)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if a.User != "" {
		if a.Password == "" {
			return nil, fmt.Errorf("NATS user %q: no password (set env %s)", a.User, EnvPassword)
		}
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	switch {
	case a.TLSCert != "" && a.TLSKey == "", a.TLSCert == "" && a.TLSKey != "":
		return nil, errors.New("NATS TLS: --tls-cert and --tls-key go together")
	case a.TLSCert != "":
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	return opts, nil
}

// credsOption reads path: a NATS creds file (JWT + seed) or an nkey seed.
func credsOption(path string) (nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("NATS credentials: %w", err)
	}
	// Group read stays allowed: Kubernetes mounts Secrets for the pod's fsGroup.
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("NATS credentials %s: mode %04o lets every user read the key; chmod 600 it", path, st.Mode().Perm())
	}
	if bytes.Contains(b, []byte(credsJWTMark)) {
		return nats.UserCredentials(path), nil
	}
	return seedOption(b, path)
}

// seedOption authenticates with the nkey seed in b (the file's only key).
func seedOption(b []byte, from string) (nats.Option, error) {
	seed, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, fmt.Errorf("NATS credentials %s: no nkey seed: %w", from, err)
	}
	pub, err := seed.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("NATS credentials %s: %w", from, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("NATS credentials %s: the seed is not a user key", from)
	}
	return nats.Nkey(pub, seed.Sign), nil
}

// Connect connects to url as role with auth, plus opts (name, reconnect
// policy). Permission violations the server reports are logged (without
// secrets) and fail the Guard-ed operation that caused them. Errors name the
// URL redacted.
func Connect(url, role string, auth ClientAuth, logger *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	authOpts, err := auth.Options(role)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	all := append(authOpts, nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if perr := AsPermissionError(err); perr != nil {
			perr.User = role
			logger.Error("NATS permission denied", "user", role, "op", perr.Op, "subject", perr.Subject)
			reportViolation(nc, perr)
			return
		}
		if sub != nil {
			logger.Warn("NATS error", "subject", sub.Subject, "err", err)
			return
		}
		logger.Warn("NATS error", "err", err)
	}), nats.ClosedHandler(func(nc *nats.Conn) { watches.Delete(nc) }))
	nc, err := nats.Connect(url, append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s as %s: %w", RedactURL(url), role, redactedError{err, url})
	}
	watches.Store(nc, &connWatch{guards: map[*guard]struct{}{}})
	return nc, nil
}

// redactedError hides the URLs' user info should the wrapped error quote them.
type redactedError struct {
	err error
	url string
}

func (e redactedError) Error() string {
	msg := e.err.Error()
	for _, p := range strings.Split(e.url, ",") {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at && at > scheme+3 {
				msg = strings.ReplaceAll(msg, p[scheme+3:at], "[REDACTED]")
			}
		}
	}
	return msg
}

func (e redactedError) Unwrap() error { return e.err }

// PermissionError is a publish or subscription the NATS server refused.
type PermissionError struct {
	Op      string // "publish" or "subscribe"
	Subject string
	User    string // the orgsync role, when known
}

func (e *PermissionError) Error() string {
	who := "this NATS user"
	if e.User != "" {
		who = "NATS user " + e.User
	}
	return fmt.Sprintf("permission denied: %s may not %s %q (server authorization)", who, e.Op, e.Subject)
}

// Unwrap makes errors.Is(err, nats.ErrPermissionViolation) hold.
func (e *PermissionError) Unwrap() error { return nats.ErrPermissionViolation }

var violationPattern = regexp.MustCompile(`(?i)permissions violation for (publish|subscription) to "([^"]*)"`)

// AsPermissionError parses a nats.go permission violation (nil for any
// other error).
func AsPermissionError(err error) *PermissionError {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	var perr *PermissionError
	if errors.As(err, &perr) {
		return perr
	}
	m := violationPattern.FindStringSubmatch(err.Error())
	if m == nil {
		return &PermissionError{Op: "use", Subject: "?"}
	}
	op := "publish to"
	if strings.EqualFold(m[1], "subscription") {
		op = "subscribe to"
	}
	return &PermissionError{Op: op, Subject: m[2]}
}

// watches are the Guards waiting on each connection's violations.
var watches sync.Map // *nats.Conn → *connWatch

type connWatch struct {
	mu     sync.Mutex
	guards map[*guard]struct{}
}

type guard struct {
	match  func(subject string) bool
	cancel context.CancelCauseFunc
}

func reportViolation(nc *nats.Conn, perr *PermissionError) {
	v, ok := watches.Load(nc)
	if !ok {
		return
	}
	w := v.(*connWatch)
	w.mu.Lock()
	defer w.mu.Unlock()
	for g := range w.guards {
		if g.match == nil || g.match(perr.Subject) {
			g.cancel(perr)
		}
	}
}

// Guard returns a context that is cancelled, with the *PermissionError as
// its cause, when the server refuses a publish or subscription of nc on a
// subject match accepts (nil: any subject) — nats.go reports violations
// asynchronously, so without it a refused request just times out. Only
// connections made by Connect report. stop releases the guard.
func Guard(ctx context.Context, nc *nats.Conn, match func(subject string) bool) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	v, ok := watches.Load(nc)
	if !ok { // not made by Connect: it reports no violation to watch for
		return ctx, func() { cancel(nil) }
	}
	w := v.(*connWatch)
	g := &guard{match: match, cancel: cancel}
	w.mu.Lock()
	w.guards[g] = struct{}{}
	w.mu.Unlock()
	return ctx, func() {
		w.mu.Lock()
		delete(w.guards, g)
		w.mu.Unlock()
		cancel(nil)
	}
}

// Refused returns the permission error that cancelled a Guard context, or nil.
func Refused(ctx context.Context) *PermissionError {
	var perr *PermissionError
	if errors.As(context.Cause(ctx), &perr) {
		return perr
	}
	return nil
}

// SubjectPrefix matches subjects starting with one of prefixes (for Guard).
func SubjectPrefix(prefixes ...string) func(string) bool {
	return func(s string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
		return false
	}
}

// RedactURL replaces the user info of every URL in a comma-separated NATS
// URL list ("nats://admin:pw@host") with [REDACTED], for logs and errors.
// The one rule shared by the services and the CLI.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "[REDACTED]@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}
