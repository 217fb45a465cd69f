package orgsync

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Flag values that refuse a bad value where it is parsed, so the command
// line fails with a usage error (exit 2) before anything connects.

// choiceFlag is a string flag that takes one of a fixed set of values.
type choiceFlag struct {
	value   string
	choices []string
	// fold accepts any case and stores the value as its choice spells it.
	fold bool
}

func (c *choiceFlag) String() string { return c.value }
func (c *choiceFlag) Type() string   { return "string" }
func (c *choiceFlag) Set(v string) error {
	for _, ch := range c.choices {
		if v == ch || (c.fold && strings.EqualFold(v, ch)) {
			c.value = ch
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
}

// choice registers a choiceFlag on cmd with its choices as completions; the
// usage lists them.
func choice(cmd *cobra.Command, name, def, usage string, fold bool, choices ...string) *choiceFlag {
	c := &choiceFlag{value: def, choices: choices, fold: fold}
	listed := true
	for _, ch := range choices {
		listed = listed && strings.Contains(usage, ch)
	}
	if !listed {
		usage += " (" + strings.Join(choices, ", ") + ")"
	}
	cmd.Flags().Var(c, name, usage)
	_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(choices, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// outputFlag is the --output flag every listing command shares.
func outputFlag(cmd *cobra.Command, what string) *choiceFlag {
	return choice(cmd, "output", "text", "output: "+what, false, "text", "json")
}

// positiveDuration is a duration flag that refuses zero and negative values.
type positiveDuration struct{ d *time.Duration }

func (p positiveDuration) String() string { return p.d.String() }
func (p positiveDuration) Type() string   { return "duration" }
func (p positiveDuration) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("not a duration (e.g. 90s, 5m, 1h): %w", err)
	}
	if d <= 0 {
		return fmt.Errorf("must be positive")
	}
	*p.d = d
	return nil
}

func durationFlag(cmd *cobra.Command, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	cmd.Flags().Var(positiveDuration{p}, name, usage)
}

// listFlag is a repeatable flag that also accepts comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Type() string   { return "strings" }
func (l *listFlag) Set(v string) error {
	*l = append(*l, splitList(v)...)
	return nil
}

// addGoFlags adds flags a shared package registers on a standard library
// flag set (natsx.ClientAuth) to cmd.
func addGoFlags(cmd *cobra.Command, register func(*flag.FlagSet)) {
	fs := flag.NewFlagSet(cmd.Name(), flag.ContinueOnError)
	register(fs)
	cmd.Flags().AddGoFlagSet(fs)
}
