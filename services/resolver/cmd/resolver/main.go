// Command resolver runs the orgsync resolver service; `resolver --help` lists its flags.
package main

import (
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/resolver"
)

func main() { service.Main(resolver.Command()) }
