package provisioner

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orgsync/orgsync/pkg/natsx"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
)

// IntegrationPublisher hands a provisioned user to the CRM integration
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

// requestIntegration publishes the CRM sync request of a user whose core
// provisioning finished (changed or unchanged: a re-run retries a CRM sync
// that failed before; the CRM upsert is idempotent). A publish failure is
// logged, never returned: it must not fail or retry the core.
func (r *run) requestIntegration(ctx context.Context, u *userRun) {
	pub := r.e.deps.Integrations
	if pub == nil || r.dry || u.id == "" {
		return
	}
	req := &orgsyncv1.IntegrationRequest{
		RequestId: IntegrationRequestID(r.plan.GetPlanId(), u.ext), TargetOrg: r.org,
		UserExternalId: u.ext, TargetUserId: u.id, Email: u.d.GetEmail(), Name: u.d.GetName(),
		OriginRequestId: r.plan.GetRequestId(), PlanId: r.plan.GetPlanId(), SourceOrg: r.plan.GetSourceOrg(),
	}
	if err := pub(context.WithoutCancel(ctx), req); err != nil {
		r.e.log.Warn("CRM integration request not published; the user's core provisioning stands",
			"plan", r.plan.GetPlanId(), "user", u.ext, "err", err)
	}
}
