// Command provisioner runs the orgsync provisioner service; `provisioner --help` lists its flags.
package main

import (
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/provisioner"
)

func main() { service.Main(provisioner.Command()) }
