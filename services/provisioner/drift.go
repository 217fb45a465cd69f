package provisioner

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/extid"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// DriftBucket is the JetStream KV bucket holding the current drift of every
// cloned user per target: key "<target org>.<base64url(user external id)>",
// value a JSON DriftRecord. A key exists while the user's target state
// differs from what orgsync applied (policy report, or an enforce that
// failed); it is deleted when a sweep finds the user converged or restored.
const DriftBucket = natsx.DriftBucket

// DriftRecord is the current drift of one user in one target org.
type DriftRecord struct {
	Org            string      `json:"org"`
	SourceOrg      string      `json:"source_org"`
	UserExternalID string      `json:"user_external_id"`
	TargetUserID   string      `json:"target_user_id,omitempty"`
	Policy         string      `json:"policy"`
	Diffs          []DriftDiff `json:"diffs"`
	// PlanID is the sweep plan that found it; DetectedAt when.
	PlanID     string    `json:"plan_id"`
	DetectedAt time.Time `json:"detected_at"`
}

// DriftDiff is one drifted field: Want what orgsync applied, Got what the
// target holds ("" = absent).
type DriftDiff struct {
	Field string `json:"field"`
	Want  string `json:"want"`
	Got   string `json:"got"`
}

// DriftRecorder keeps the current drift per target and user.
type DriftRecorder interface {
	// Put records rec as the user's current drift (replacing any earlier).
	Put(ctx context.Context, rec DriftRecord) error
	// Clear forgets the user's drift (converged); no error when there is none.
	Clear(ctx context.Context, org, userExtID string) error
}

// DriftKey is the KV key of a user's drift in org. External ids contain
// characters KV keys do not allow ("|", "@"), hence base64url.
func DriftKey(org, userExtID string) (string, error) {
	if err := natsx.ValidateOrgKey(org); err != nil {
		return "", fmt.Errorf("drift key: %w", err)
	}
	if userExtID == "" {
		return "", errors.New("drift key: empty user external id")
	}
	return org + "." + base64.RawURLEncoding.EncodeToString([]byte(userExtID)), nil
}

// DriftKV is the DriftRecorder on bucket DriftBucket; the CLI lists it.
type DriftKV struct {
	kv jetstream.KeyValue
}

// DriftBucketConfig is the bucket's configuration under topo.
func DriftBucketConfig(topo natsx.Topology) jetstream.KeyValueConfig {
	topo = topo.WithDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      DriftBucket,
		Description: "orgsync: current drift of cloned users per target (provisioner sweeps); listed by `orgsync drift`",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    topo.Replicas,
	}
}

// OpenDriftKV creates the bucket when missing (idempotent, safe against
// concurrent creators) and returns a DriftKV on it.
func OpenDriftKV(ctx context.Context, js jetstream.JetStream, topo natsx.Topology) (*DriftKV, error) {
	cfg := DriftBucketConfig(topo)
	var kv jetstream.KeyValue
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		if err == nil || !(errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)) {
			break
		}
		select { // lost a create race: the retry finds the bucket
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("provisioner: ensure KV bucket %s: %w", DriftBucket, err)
	}
	return &DriftKV{kv: kv}, nil
}

// LookupDriftKV opens the existing bucket without creating it (readers such
// as the CLI); ok is false when no provisioner ever created it.
func LookupDriftKV(ctx context.Context, js jetstream.JetStream) (d *DriftKV, ok bool, err error) {
	kv, err := js.KeyValue(ctx, DriftBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open KV bucket %s: %w", DriftBucket, err)
	}
	return &DriftKV{kv: kv}, true, nil
}

// Put implements DriftRecorder.
func (d *DriftKV) Put(ctx context.Context, rec DriftRecord) error {
	key, err := DriftKey(rec.Org, rec.UserExternalID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := d.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("drift: put %s/%s: %w", rec.Org, rec.UserExternalID, err)
	}
	return nil
}

// Clear implements DriftRecorder.
func (d *DriftKV) Clear(ctx context.Context, org, userExtID string) error {
	key, err := DriftKey(org, userExtID)
	if err != nil {
		return err
	}
	if err := d.kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("drift: clear %s/%s: %w", org, userExtID, err)
	}
	return nil
}

// List returns the current drift records of org ("" = every org), sorted by
// org and user.
func (d *DriftKV) List(ctx context.Context, org string) ([]DriftRecord, error) {
	filter := ">"
	if org != "" {
		if err := natsx.ValidateOrgKey(org); err != nil {
			return nil, fmt.Errorf("drift: list: %w", err)
		}
		filter = org + ".*"
	}
	lister, err := d.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("drift: list keys: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []DriftRecord
	for _, k := range keys {
		e, err := d.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // cleared meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("drift: read %s: %w", k, err)
		}
		var rec DriftRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return nil, fmt.Errorf("drift: decode %s: %w", k, err)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Org != out[j].Org {
			return out[i].Org < out[j].Org
		}
		return out[i].UserExternalID < out[j].UserExternalID
	})
	return out, nil
}

// afterUser runs once a user of the plan reached a final state (not in a
// dry run): it reports orphaned resources and, in a sweep, the user's drift.
func (r *run) afterUser(ctx context.Context, u *userRun) {
	if r.dry || u.skipped != "" {
		return
	}
	if u.failed == nil {
		r.reportOrphans(ctx, u)
	}
	if !u.dx.verify || u.baseline == nil {
		return
	}
	drift := u.driftDiffs()
	rec := r.e.deps.Drift
	if len(drift) == 0 {
		if rec != nil {
			if err := rec.Clear(ctx, r.org, u.ext); err != nil {
				r.e.log.Warn("clear drift record", "org", r.org, "user", u.ext, "err", err)
			}
		}
		return
	}
	policy := r.policy()
	restored := policy == DriftEnforce && u.failed == nil
	ev := &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_DRIFT, UserExternalId: u.ext, TargetUserId: u.id,
		Diffs: drift, Attributes: map[string]string{"policy": policy}}
	fields := make([]string, len(drift))
	for i, d := range drift {
		fields[i] = d.GetField()
	}
	switch {
	case restored:
		ev.Status = orgsyncv1.Status_STATUS_CHANGED
		ev.Message = fmt.Sprintf("drift of %s in %s restored to the source configuration: %s", u.d.GetEmail(), r.org, strings.Join(fields, ", "))
	case policy == DriftReport:
		ev.Status = orgsyncv1.Status_STATUS_SKIPPED
		ev.Message = fmt.Sprintf("drift of %s in %s left in place: %s", u.d.GetEmail(), r.org, strings.Join(fields, ", "))
		ev.Reason = "drift policy of " + r.org + " is report"
	default:
		ev.Status = orgsyncv1.Status_STATUS_FAILED
		ev.Message = fmt.Sprintf("drift of %s in %s could not be restored: %s", u.d.GetEmail(), r.org, strings.Join(fields, ", "))
		ev.Reason = u.failed.Error()
	}
	r.emit(ctx, ev)
	if rec == nil {
		return
	}
	var err error
	if restored {
		err = rec.Clear(ctx, r.org, u.ext)
	} else {
		dr := DriftRecord{Org: r.org, SourceOrg: r.plan.GetSourceOrg(), UserExternalID: u.ext, TargetUserID: u.id,
			Policy: policy, PlanID: r.plan.GetPlanId(), DetectedAt: time.Now().UTC()}
		for _, d := range drift {
			dr.Diffs = append(dr.Diffs, DriftDiff{Field: d.GetField(), Want: d.GetWant(), Got: d.GetGot()})
		}
		err = rec.Put(ctx, dr)
	}
	if err != nil {
		r.e.log.Warn("record drift", "org", r.org, "user", u.ext, "err", err)
	}
}

// reportOrphans reports the skills, languages and teams orgsync created in
// the target that this user stopped referencing and no baseline of the org
// references any more (AUDIT event "orphaned resource"). They are never
// deleted: other users may have been given them by hand.
func (r *run) reportOrphans(ctx context.Context, u *userRun) {
	if u.baseline == nil {
		return
	}
	dropped := droppedSharedRefs(u.baseline, u.d)
	if len(dropped) == 0 {
		return
	}
	baselines, err := r.e.deps.Store.Baselines(r.org)
	if err != nil {
		r.e.log.Warn("orphan check: read baselines", "org", r.org, "err", err)
		return
	}
	used := map[string]bool{}
	for _, b := range baselines {
		for _, ref := range sharedRefs(b) {
			used[ref] = true
		}
	}
	for _, ref := range dropped {
		if used[ref] {
			continue
		}
		id, created, err := r.e.deps.Store.Created(r.org, ref)
		if err != nil {
			r.e.log.Warn("orphan check: read created", "org", r.org, "ref", ref, "err", err)
			continue
		}
		if !created {
			continue // found in the target, not made by orgsync: not ours to report
		}
		typ := "resource"
		if p, err := extid.Parse(ref); err == nil {
			typ = typeWord(p.Type)
		}
		r.emit(ctx, &orgsyncv1.Event{Kind: orgsyncv1.EventKind_EVENT_KIND_AUDIT, Status: orgsyncv1.Status_STATUS_UNCHANGED,
			UserExternalId: u.ext, Step: "orphan:" + ref,
			Message: fmt.Sprintf("orphaned resource: %s %q (%s), created by orgsync in %s, is referenced by no cloned user any more; not deleted",
				typ, refName(ref), id, r.org),
			Reason:     "orphaned resource",
			Attributes: map[string]string{"resource": ref, "type": typ, "target_id": id}})
	}
}

// sharedRefs are the skill, language and team references of a configuration.
func sharedRefs(c *orgsyncv1.UserConfig) []string {
	var out []string
	for _, p := range c.GetSkills() {
		out = append(out, p.GetRef())
	}
	for _, p := range c.GetLanguages() {
		out = append(out, p.GetRef())
	}
	if c.GetTeamRef() != "" {
		out = append(out, c.GetTeamRef())
	}
	return out
}

// droppedSharedRefs are the shared references of before that after lacks.
func droppedSharedRefs(before, after *orgsyncv1.UserConfig) []string {
	keep := map[string]bool{}
	for _, ref := range sharedRefs(after) {
		keep[ref] = true
	}
	var out []string
	for _, ref := range sharedRefs(before) {
		if !keep[ref] {
			out = append(out, ref)
		}
	}
	sort.Strings(out)
	return out
}
