// Command extractor runs the orgsync extractor service; `extractor --help` lists its flags.
package main

import (
	"github.com/orgsync/orgsync/pkg/service"
	"github.com/orgsync/orgsync/services/extractor"
)

func main() { service.Main(extractor.Command()) }
