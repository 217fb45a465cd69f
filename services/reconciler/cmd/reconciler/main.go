// Command reconciler runs orgsync's change-source service.
package main

import (
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/reconciler"
)

func main() { service.Main(reconciler.Command()) }
