// Command auth runs the orgsync auth service; `auth --help` lists its flags.
package main

import (
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/auth"
)

func main() { service.Main(auth.Command()) }
