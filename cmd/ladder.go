package cmd

import (
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/output"
)

// checkLadder validates --ladder, --ascii and --absolute-seq.
func (o *options) checkLadder() error {
	if o.ladder && o.output == "json" {
		return usagef("--ladder draws diagrams for people; -o json is for programs: choose one")
	}
	if o.ascii && !o.ladder {
		return usagef("--ascii only changes how --ladder diagrams are drawn: add --ladder")
	}
	if o.absoluteSeq && !o.ladder {
		return usagef("--absolute-seq only changes the numbers on --ladder diagrams: add --ladder")
	}
	return nil
}

// newLadder returns the ladder writer, in colour only on a terminal and
// only if NO_COLOR (https://no-color.org) is not set.
func newLadder(stdout io.Writer, o *options, opts output.Options) output.Writer {
	_, noColor := os.LookupEnv("NO_COLOR")
	return output.NewLadder(stdout, nil, opts, output.LadderOptions{
		ASCII:       o.ascii,
		Color:       !noColor && isTerminal(stdout),
		AbsoluteSeq: o.absoluteSeq,
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
