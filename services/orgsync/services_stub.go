package orgsync

import "github.com/orgsync/orgsync/pkg/service"

// ServiceCommands are the services `orgsync dev` runs. The pipeline
// services are wired in here as their packages land (see services.go.wip).
func ServiceCommands() []service.Command { return nil }
