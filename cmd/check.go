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

// checkText writes the report of `tcptrace check` a line at a time.
type checkText struct{ strings.Builder }

func (b *checkText) line(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }

// itemErr is an item's error in parentheses, if any.
func itemErr(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

func writeCheckText(w io.Writer, p *tracer.Preflight) error {
	var b checkText
	b.kernel(p)
	b.tracepoints(p)
	b.privileges(p.Capabilities)
	b.load(p.Load)
	b.verdict(p)
	_, err := io.WriteString(w, b.String())
	return err
}

// kernel writes the kernel, its BTF and ring buffer.
func (b *checkText) kernel(p *tracer.Preflight) {
	b.line("kernel        %s %s", p.Kernel.Release, p.Kernel.Machine)
	if p.Kernel.Lockdown != "" {
		b.line("lockdown      %s", p.Kernel.Lockdown)
	}
	b.line("BTF           %-8s %s%s", checkMark(p.BTF.Status), p.BTF.Name, itemErr(p.BTF.Error))
	b.line("ring buffer   %-8s %s%s", checkMark(p.RingBuffer.Status), p.RingBuffer.Detail, itemErr(p.RingBuffer.Error))
}

// tracepoints writes the tracepoints, the optional data and the iterators.
func (b *checkText) tracepoints(p *tracer.Preflight) {
	b.line("")
	b.line("tracepoints")
	for _, tp := range p.Tracepoints {
		what := "required"
		if !tp.Required {
			what = "optional; without it: " + tp.Lacking
		}
		b.line("  %-8s %-28s %s", checkMark(tp.Status), tp.Name, what)
	}
	b.line("")
	b.line("optional data")
	for _, o := range p.Optional {
		b.line("  %-8s %-28s %s", checkMark(o.Status), o.Name, o.Detail)
	}
	b.line("")
	b.line("iterators")
	for _, it := range p.Iterators {
		b.line("  %-8s %-28s %s%s", checkMark(it.Status), it.Name, it.Detail, itemErr(it.Error))
	}
}

// privileges writes the process's capabilities.
func (b *checkText) privileges(c tracer.Capabilities) {
	b.line("")
	b.line("privileges    uid %d, euid %d: %s%s", c.UID, c.EUID,
		map[bool]string{true: "enough to load tcptrace's programs", false: "NOT enough to load tcptrace's programs"}[c.CanLoad],
		itemErr(c.Error))
	for _, ci := range c.Caps {
		b.line("  %-14s effective %-3s permitted %-3s %s", ci.Name, yesNo(ci.Effective), yesNo(ci.Permitted), ci.For)
	}
}

// load writes the load test's result.
func (b *checkText) load(l tracer.LoadCheck) {
	b.line("")
	if l.Status != tracer.StatusOK {
		b.line("load test     %-8s %s", checkMark(l.Status), l.Error)
		return
	}
	b.line("load test     ok       loaded %d programs and attached to %d tracepoints, then detached (%.0f ms)",
		l.Programs, len(l.Attached), l.Millis)
	b.line("events        %s", l.Events)
	b.line("owners        %s", l.Owners)
	b.line("host causes   %s", l.Host)
}

// verdict writes the verdict, with the problems, the advice and what is
// degraded.
func (b *checkText) verdict(p *tracer.Preflight) {
	b.line("")
	switch p.Verdict {
	case tracer.VerdictOK:
		b.line("verdict: ok: tcptrace can run here, with every feature")
	case tracer.VerdictDegraded:
		b.line("verdict: degraded: tcptrace can run here, without:")
		b.list(p.Degraded)
	default:
		b.line("verdict: cannot run:")
		b.list(p.Problems)
		if len(p.Advice) > 0 {
			b.line("what to do:")
			b.list(p.Advice)
		}
		if len(p.Degraded) > 0 {
			b.line("and once it runs, it will lack:")
			b.list(p.Degraded)
		}
	}
}

// list writes items, one a line.
func (b *checkText) list(items []string) {
	for _, s := range items {
		b.line("  - %s", s)
	}
}
