package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tcptrace/tcptrace/tracer"
)

// errCannotRun is returned (exit 1) when the preflight finds a blocker; the
// report itself was already printed.
var errCannotRun = errors.New("cannot run here: see the problems above")

func newCheckCommand() *cobra.Command {
	var output string
	var noLoad, ownerIO bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that this host can run tcptrace, and what it will miss",
		Long: `check reports what tcptrace needs and what this host offers: the kernel,
BTF, the BPF ring buffer, each tracepoint tcptrace attaches to, the optional
data the kernel may lack (RST reasons, RSTs without a full socket), the BPF
iterators, and the process's capabilities. Unless --no-load is given, it then
loads and attaches the real programs and detaches them at once: the only proof
that the kernel's verifier takes them.

It ends with a verdict: ok, degraded (tcptrace runs but misses what is listed),
or cannot run (why, and what to do). Exit status 0 when tcptrace can run, even
degraded, 1 when it cannot, 2 for bad flags.`,
		Example: `  sudo tcptrace check
  tcptrace check -o json | jq .verdict`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("check takes no arguments, got %q", args)
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usagef("--output must be text or json, got %q", output)
			}
			p := tracer.RunPreflight(!noLoad, ownerIO)
			var err error
			if output == "json" {
				err = writeCheckJSON(cmd.OutOrStdout(), p)
			} else {
				err = writeCheckText(cmd.OutOrStdout(), p)
			}
			if err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
			if p.Verdict == tracer.VerdictCannotRun {
				return errCannotRun
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one object)")
	cmd.Flags().BoolVar(&noLoad, "no-load", false, "do not load and attach the programs (the rest is checked all the same)")
	cmd.Flags().BoolVar(&ownerIO, "owner-io", false, "check with the per-I/O owner programs of tcptrace --owner-io")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	return cmd
}

func writeCheckJSON(w io.Writer, p *tracer.Preflight) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // ">= 5.8" as written
	return enc.Encode(p)
}

// checkMark is the status column of the text report.
func checkMark(status string) string {
	switch status {
	case tracer.StatusOK:
		return "ok"
	case tracer.StatusMissing:
		return "MISSING"
	case tracer.StatusFailed:
		return "FAILED"
	case tracer.StatusSkipped:
		return "skipped"
	}
	return "unknown"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func writeCheckText(w io.Writer, p *tracer.Preflight) error {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	itemErr := func(e string) string {
		if e == "" {
			return ""
		}
		return " (" + e + ")"
	}

	line("kernel        %s %s", p.Kernel.Release, p.Kernel.Machine)
	if p.Kernel.Lockdown != "" {
		line("lockdown      %s", p.Kernel.Lockdown)
	}
	line("BTF           %-8s %s%s", checkMark(p.BTF.Status), p.BTF.Name, itemErr(p.BTF.Error))
	line("ring buffer   %-8s %s%s", checkMark(p.RingBuffer.Status), p.RingBuffer.Detail, itemErr(p.RingBuffer.Error))

	line("")
	line("tracepoints")
	for _, tp := range p.Tracepoints {
		what := "required"
		if !tp.Required {
			what = "optional; without it: " + tp.Lacking
		}
		line("  %-8s %-28s %s", checkMark(tp.Status), tp.Name, what)
	}

	line("")
	line("optional data")
	for _, o := range p.Optional {
		line("  %-8s %-28s %s", checkMark(o.Status), o.Name, o.Detail)
	}

	line("")
	line("iterators")
	for _, it := range p.Iterators {
		line("  %-8s %-28s %s%s", checkMark(it.Status), it.Name, it.Detail, itemErr(it.Error))
	}

	line("")
	c := p.Capabilities
	line("privileges    uid %d, euid %d: %s%s", c.UID, c.EUID,
		map[bool]string{true: "enough to load tcptrace's programs", false: "NOT enough to load tcptrace's programs"}[c.CanLoad],
		itemErr(c.Error))
	for _, ci := range c.Caps {
		line("  %-14s effective %-3s permitted %-3s %s", ci.Name, yesNo(ci.Effective), yesNo(ci.Permitted), ci.For)
	}

	line("")
	switch p.Load.Status {
	case tracer.StatusOK:
		line("load test     ok       loaded %d programs and attached to %d tracepoints, then detached (%.0f ms)",
			p.Load.Programs, len(p.Load.Attached), p.Load.Millis)
		line("events        %s", p.Load.Events)
		line("owners        %s", p.Load.Owners)
		line("host causes   %s", p.Load.Host)
	default:
		line("load test     %-8s %s", checkMark(p.Load.Status), p.Load.Error)
	}

	line("")
	switch p.Verdict {
	case tracer.VerdictOK:
		line("verdict: ok: tcptrace can run here, with every feature")
	case tracer.VerdictDegraded:
		line("verdict: degraded: tcptrace can run here, without:")
		for _, d := range p.Degraded {
			line("  - %s", d)
		}
	default:
		line("verdict: cannot run:")
		for _, pr := range p.Problems {
			line("  - %s", pr)
		}
		if len(p.Advice) > 0 {
			line("what to do:")
			for _, a := range p.Advice {
				line("  - %s", a)
			}
		}
		if len(p.Degraded) > 0 {
			line("and once it runs, it will lack:")
			for _, d := range p.Degraded {
				line("  - %s", d)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
