package provisioner

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// Changes of equal source version (skills, queues, ... do not move
// User.version) are ordered by the time of the source change that
// triggered their extraction, never by dateModified (the real User has none).
func TestStaleReasonOrdersByVersionThenSourceChangeTime(t *testing.T) {
	t.Parallel()
	at := func(min int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, 3, 1, 10, min, 0, 0, time.UTC))
	}
	cfg := func(version int64, changed *timestamppb.Timestamp) *orgsyncv1.UserConfig {
		return &orgsyncv1.UserConfig{SourceVersion: version, SourceChangedAt: changed}
	}
	for _, tc := range []struct {
		name             string
		desired, applied *orgsyncv1.UserConfig
		want             string
	}{
		{"first apply", cfg(3, at(1)), nil, ""},
		{"newer version", cfg(4, at(1)), cfg(3, at(5)), ""},
		{"older version", cfg(2, at(9)), cfg(3, at(5)), "stale: source version 2 < applied 3"},
		{"same version, later change", cfg(3, at(6)), cfg(3, at(5)), ""},
		{"same version, earlier change", cfg(3, at(4)), cfg(3, at(5)), "stale: source changed 2026-03-01T10:04:00.000Z < applied 2026-03-01T10:05:00.000Z (version 3)"},
		{"same version, no time on one side", cfg(3, nil), cfg(3, at(5)), ""},
		{"no version", cfg(0, at(1)), cfg(3, at(5)), ""},
		// The user was deleted in the source and created again: a new
		// source user id, whose versions start again.
		{"source user created again", &orgsyncv1.UserConfig{SourceUserId: "new", SourceVersion: 1, SourceChangedAt: at(9)},
			&orgsyncv1.UserConfig{SourceUserId: "old", SourceVersion: 3, SourceChangedAt: at(5)}, ""},
		{"same source user, older version", &orgsyncv1.UserConfig{SourceUserId: "old", SourceVersion: 2, SourceChangedAt: at(9)},
			&orgsyncv1.UserConfig{SourceUserId: "old", SourceVersion: 3, SourceChangedAt: at(5)}, "stale: source version 2 < applied 3"},
		// A baseline stored by an earlier release carries only the
		// deprecated date_modified: it no longer decides anything.
		{"deprecated date_modified ignored", &orgsyncv1.UserConfig{SourceVersion: 3, DateModified: at(1)},
			&orgsyncv1.UserConfig{SourceVersion: 3, DateModified: at(5)}, ""},
	} {
		if got := staleReason(tc.desired, tc.applied); got != tc.want {
			t.Errorf("%s: staleReason = %q, want %q", tc.name, got, tc.want)
		}
	}
}
