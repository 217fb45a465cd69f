// Command orgsync is the orgsync CLI; see `orgsync --help`.
package main

import (
	"context"
	"os"

	"github.com/orgsync/orgsync/services/orgsync"
)

func main() {
	os.Exit(orgsync.Main(context.Background(), os.Args[1:], orgsync.IO{Out: os.Stdout, Err: os.Stderr}))
}
