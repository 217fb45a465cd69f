package orgsync

import (
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/auth"
	"github.com/orgsync/orgsync/services/extractor"
	"github.com/orgsync/orgsync/services/integrator"
	"github.com/orgsync/orgsync/services/provisioner"
	"github.com/orgsync/orgsync/services/reconciler"
	"github.com/orgsync/orgsync/services/resolver"
)

// ServiceCommands are the services `orgsync dev` runs, in start order: the
// auth service first (everyone needs tokens), the provisioner before the
// resolver so plans find their consumer, the integrator next to the
// provisioner whose CRM sync requests it takes, the reconciler last (it
// follows the users the pipeline has cloned).
func ServiceCommands() []service.Command {
	return []service.Command{auth.Command(), extractor.Command(), provisioner.Command(), integrator.Command(), resolver.Command(), reconciler.Command()}
}
