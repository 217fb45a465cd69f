package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Redacted replaces the value of every secret-looking log attribute.
const Redacted = "[REDACTED]"

// secretKey matches attribute keys whose values must never be logged. It is
// deliberately broad (substring, case-insensitive): "clientSecret",
// "access_token", "Authorization", "db_password" all match. A false positive
// costs a hidden value in a log line; a false negative leaks a credential.
var secretKey = regexp.MustCompile(`(?i)secret|password|token|authorization|client_secret`)

// IsSecretKey reports whether values logged under key are redacted.
func IsSecretKey(key string) bool { return secretKey.MatchString(key) }

// ParseLevel parses "debug", "info", "warn"/"warning" or "error"
// (case-insensitive).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("telemetry: unknown log level %q (want debug, info, warn or error)", s)
}

// NewLogger returns a logger writing to w at level, in format "text"
// (default, logfmt-like) or "json". Attributes whose key matches
// IsSecretKey — including inside groups — are rendered as "[REDACTED]",
// whatever their value (strings, LogValuers, structs).
func NewLogger(w io.Writer, level slog.Leveler, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("telemetry: unknown log format %q (want text or json)", format)
	}
	return slog.New(h), nil
}

// redactAttr is the ReplaceAttr hook. slog calls it for every non-group
// attribute, with the enclosing group names in groups, after resolving
// LogValuers. A member of a group is redacted when its own key or any
// enclosing group name is secret-looking (slog.Group("token", "value", x)).
func redactAttr(groups []string, a slog.Attr) slog.Attr {
	if IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	for _, g := range groups {
		if IsSecretKey(g) {
			return slog.String(a.Key, Redacted)
		}
	}
	return a
}

// discardHandler drops every record; used by NopLogger.
type discardHandler struct{}

func (discardHandler) Enabled(context.Context, slog.Level) bool  { return false }
func (discardHandler) Handle(context.Context, slog.Record) error { return nil }
func (d discardHandler) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discardHandler) WithGroup(string) slog.Handler           { return d }

// NopLogger returns a logger that discards everything (tests, defaults).
func NopLogger() *slog.Logger { return slog.New(discardHandler{}) }
