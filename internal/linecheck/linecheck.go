// Package linecheck finds, in what the text and ladder writers print, what
// must never be there: a line wider than 80 columns, a raw state "change"
// to the same state (FIN_WAIT1 → FIN_WAIT1), a diagram row that says
// nothing or only repeats a state, a note that runs into the lines. Tests
// of the writers and of real programs share it: a golden file alone would
// take in any of these when rewritten.
package linecheck

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Width is the screen's width.
const Width = 80

// The diagram's lines are at these columns (0-based), 40 apart.
const (
	leftLine  = 23
	rightLine = 64
)

var sameState = regexp.MustCompile(`\b([A-Z][A-Z_0-9]*[A-Z0-9]) (→|->) ([A-Z][A-Z_0-9]*[A-Z0-9])\b`)

// Problems lists what is wrong in out, one entry per problem, each naming
// its line; none for good output. ANSI colour must be off.
func Problems(out string) []string {
	var probs []string
	bad := func(i int, format string, args ...any) {
		probs = append(probs, fmt.Sprintf("line %d: ", i+1)+fmt.Sprintf(format, args...))
	}
	var last [2]string // the last state written beside each line of a diagram
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > Width {
			bad(i, "%d columns wide: %q", n, line)
		}
		for _, m := range sameState.FindAllStringSubmatch(line, -1) {
			if m[1] == m[3] {
				bad(i, "a raw %s: %q", m[0], line)
			}
		}
		r := []rune(line)
		if !diagramRow(r) {
			last = [2]string{}
			continue
		}
		if j := strings.LastIndexFunc(line, isLine); utf8.RuneCountInString(line[:j]) != rightLine {
			bad(i, "a note runs into the lines (the right one is not at column %d): %q", rightLine+1, line)
			continue
		}
		middle := string(r[leftLine+1 : rightLine])
		labels := [2]string{strings.TrimSpace(string(r[10:leftLine])), strings.TrimSpace(string(r[rightLine+1:]))}
		arrow := strings.ContainsAny(middle, "▶◀<>")
		note := !arrow && strings.TrimSpace(middle) != ""
		switch {
		case !arrow && !note && labels == [2]string{}:
			bad(i, "an empty diagram row: %q", line)
		case note && (r[leftLine+1] != ' ' || r[rightLine-1] != ' '):
			bad(i, "a note runs into the lines: %q", line)
		}
		for s, l := range labels {
			if l == "" || strings.HasPrefix(l, "wait ") {
				continue
			}
			if !arrow && !note && l == last[s] {
				bad(i, "a row that only repeats the state %s: %q", l, line)
			}
			last[s] = l
		}
	}
	return probs
}

func isLine(r rune) bool { return strings.ContainsRune("│┆|:", r) }

// diagramRow says whether r is a row of a diagram: a time or blanks, a
// label right-aligned, the left line.
func diagramRow(r []rune) bool {
	if len(r) <= leftLine || r[10] != ' ' || r[leftLine-1] != ' ' || !isLine(r[leftLine]) {
		return false
	}
	t := strings.TrimSpace(string(r[:10]))
	return t == "" || t[0] == '+'
}
