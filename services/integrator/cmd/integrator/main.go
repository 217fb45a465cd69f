// Command integrator runs the orgsync CRM integration service; `integrator --help` lists its flags.
package main

import (
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/integrator"
)

func main() { service.Main(integrator.Command()) }
