package provisioner

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/events"
	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// IntegrationPublisher hands provisioned users (a plan's batch) to the CRM integration
// workflow (services/integrator). It must not wait for the sync: the core
// provisioning is done when it is called, and a sync failure never changes
// the core's outcome.
type IntegrationPublisher func(ctx context.Context, req *orgsyncv1.IntegrationRequest) error

// NATSIntegrationPublisher publishes on orgsync.integration.<target>
// (stream INTEGRATIONS) with Nats-Msg-Id = request id, so a redelivered
// plan publishes no duplicate.
func NATSIntegrationPublisher(js jetstream.JetStream) IntegrationPublisher {
	return func(ctx context.Context, req *orgsyncv1.IntegrationRequest) error {
		subj, err := natsx.IntegrationSubject(req.GetTargetOrg())
		if err != nil {
			return err
		}
		return natsx.Publish(ctx, js, subj, req.GetRequestId(), req)
	}
}

// IntegrationRequestID is the deterministic id of a user's CRM sync
// request within a plan.
func IntegrationRequestID(planID, userExtID string) string {
	return planID + "|" + userExtID + "|crm"
}

// IntegrationBatchID is the id of a batch of a plan's CRM sync requests:
// the same users are the same message (a redelivered plan publishes no
// duplicate), another set — a resumed plan's remaining users — another.
func IntegrationBatchID(planID string, rows []*orgsyncv1.IntegrationRequest) string {
	ids := make([]string, len(rows)) // each names the plan already
	for i, r := range rows {
		ids[i] = r.GetRequestId()
	}
	return planID + "|crm|" + events.ID(ids...)
}

// requestIntegrations publishes the CRM sync requests of users whose core
// provisioning finished (changed or unchanged: a re-run retries a CRM sync
// that failed before; the CRM upsert is idempotent), as one batch message
// for the plan. A publish failure is logged, never returned: it must not
// fail or retry the core.
func (r *run) requestIntegrations(ctx context.Context, users []*userRun) {
	pub := r.e.deps.Integrations
	if pub == nil || r.dry {
		return
	}
	rows := make([]*orgsyncv1.IntegrationRequest, 0, len(users))
	for _, u := range users {
		if u.id == "" {
			continue
		}
		rows = append(rows, &orgsyncv1.IntegrationRequest{RequestId: IntegrationRequestID(r.plan.GetPlanId(), u.ext),
			UserExternalId: u.ext, TargetUserId: u.id, Email: u.d.GetEmail(), Name: u.d.GetName()})
	}
	if len(rows) == 0 {
		return
	}
	req := &orgsyncv1.IntegrationRequest{RequestId: IntegrationBatchID(r.plan.GetPlanId(), rows), TargetOrg: r.org,
		OriginRequestId: r.plan.GetRequestId(), PlanId: r.plan.GetPlanId(), SourceOrg: r.plan.GetSourceOrg(), Users: rows}
	if err := pub(context.WithoutCancel(ctx), req); err != nil {
		r.e.log.Warn("CRM integration requests not published; the users' core provisioning stands",
			"plan", r.plan.GetPlanId(), "users", len(rows), "err", err)
	}
}
