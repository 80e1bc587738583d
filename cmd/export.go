package cmd

import "github.com/spf13/cobra"

// NewRootCommand returns tcptrace's command tree, the one Execute runs, for
// tools that describe it without running it: tools/gendocs writes the man
// pages and shell completions that `make install` installs from it.
func NewRootCommand() *cobra.Command {
	return newRootCommand()
}
