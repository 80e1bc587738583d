package top

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// View is what the user chose to see: the state of the screen besides the
// data.
type View struct {
	Sort    int
	Reverse bool
	// Selected is the label of the selected row ("": the first); the
	// selection follows its group as rows move.
	Selected string
	Detail   bool // the selected group's records and a ladder
	Record   int  // the record selected in the detail view
	Paused   bool
	// NoSelection marks no row (a snapshot printed by --once).
	NoSelection bool
}

// Palette colours parts of the screen; the zero Palette colours nothing.
// Each function gets a whole line, already cut to the width.
type Palette struct {
	Title, Heading, Selected, Bad, Dim func(string) string
}

func paint(f func(string) string, s string) string {
	if f == nil {
		return s
	}
	return f(s)
}

// Screen is what Render needs besides the snapshot.
type Screen struct {
	Width, Height int
	Loc           *time.Location // times in the alerts and records (nil: local)
	Palette       Palette
	Output        output.Options // to name owners in the ladder
}

// Rows returns the snapshot's rows in the view's order.
func (v *View) Rows(s *Snapshot) []Row {
	rows := slices.Clone(s.Rows)
	SortRows(rows, v.Sort, v.Reverse)
	return rows
}

// SelectedIndex is the index of the selected row in rows (-1: none).
func (v *View) SelectedIndex(rows []Row) int {
	if v.NoSelection {
		return -1
	}
	for i := range rows {
		if rows[i].Key == v.Selected {
			return i
		}
	}
	return 0
}

// Render draws the screen: exactly sc.Height lines (or fewer when the
// snapshot is nil), none wider than sc.Width.
func Render(s *Snapshot, v *View, sc *Screen) string {
	w, h := max(sc.Width, 20), max(sc.Height, 6)
	var lines []string
	add := func(f func(string) string, s string) {
		lines = append(lines, paint(f, fit(s, w)))
	}
	if s == nil {
		add(sc.Palette.Title, "tcptrace top: starting…")
		return strings.Join(lines, "\n")
	}
	loc := sc.Loc
	if loc == nil {
		loc = time.Local
	}
	add(sc.Palette.Title, titleLine(s, v, loc))
	add(sc.Palette.Dim, countsLine(s))
	rows := v.Rows(s)
	sel := v.SelectedIndex(rows)
	alertLines := min(max(2, h/6), 6)
	body := h - len(lines) - 1 - alertLines - 1 // - footer
	if v.Detail && sel >= 0 && sel < len(rows) {
		lines = append(lines, detail(&rows[sel], v, sc, loc, w, body+alertLines+1)...)
	} else {
		lines = append(lines, table(rows, sel, sc, w, body)...)
		lines = append(lines, alertPane(s, loc, sc, w, alertLines+1)...)
	}
	add(sc.Palette.Dim, footer(v))
	return strings.Join(lines, "\n")
}

func titleLine(s *Snapshot, v *View, loc *time.Location) string {
	var b strings.Builder
	b.WriteString("tcptrace top  " + s.Time.In(loc).Format("15:04:05"))
	if v.Paused {
		b.WriteString("  PAUSED")
	}
	b.WriteString("  by " + s.GroupBy + "  sort " + SortName(v.Sort))
	if v.Reverse {
		b.WriteString(" (reversed)")
	}
	b.WriteString("  rates over " + strconv.FormatFloat(s.RateWindowS, 'f', -1, 64) + "s")
	return b.String()
}

func countsLine(s *Snapshot) string {
	c := &s.Counts
	tw := "?"
	if c.TimeWaitKnown {
		tw = strconv.FormatUint(c.TimeWait, 10)
	}
	line := "open " + strconv.Itoa(c.Open) + "  time_wait " + tw + "  records " + u(c.Records) + "  alerts " + u(c.Alerts) +
		"  events " + u(c.Events) + "  lost " + u(c.Lost) + "  evicted " + u(c.Evicted)
	if s.GroupsDropped > 0 {
		line += "  groups dropped " + u(s.GroupsDropped)
	}
	return line
}

func u(n uint64) string { return strconv.FormatUint(n, 10) }

// shown picks the columns that fit in w, by priority, in display order;
// and the width left for the label.
func shown(w int) ([]*column, int) {
	const minKey = 12
	byPrio := make([]*column, len(columns))
	for i := range columns {
		byPrio[i] = &columns[i]
	}
	slices.SortFunc(byPrio, func(a, b *column) int { return a.prio - b.prio })
	left := w - 1 - minKey
	keep := map[*column]bool{}
	for _, c := range byPrio {
		if c.width <= left {
			keep[c] = true
			left -= c.width
		}
	}
	var cols []*column
	for i := range columns {
		if keep[&columns[i]] {
			cols = append(cols, &columns[i])
		}
	}
	return cols, minKey + left
}

func table(rows []Row, sel int, sc *Screen, w, n int) []string {
	cols, kw := shown(w)
	var lines []string
	var b strings.Builder
	heading := func(key string, cell func(c *column) string) string {
		b.Reset()
		b.WriteString(" " + padRight(fit(key, kw), kw))
		for _, c := range cols {
			b.WriteString(padLeft(cell(c), c.width))
		}
		return b.String()
	}
	lines = append(lines, paint(sc.Palette.Heading, fit(heading("GROUP", func(c *column) string { return c.name }), w)))
	// Scroll so that the selected row is on screen.
	first := 0
	if n-1 > 0 && sel >= n-1 {
		first = sel - (n - 2)
	}
	for i := first; i < len(rows) && len(lines) < n; i++ {
		r := &rows[i]
		line := heading(r.Key, func(c *column) string { return c.cell(r) })
		f := rowColour(r, sc)
		if i == sel {
			line = ">" + line[1:]
			f = sc.Palette.Selected
		}
		lines = append(lines, paint(f, fit(line, w)))
	}
	if len(rows) == 0 && len(lines) < n {
		lines = append(lines, "  (no connections yet)")
	}
	for len(lines) < n {
		lines = append(lines, "")
	}
	return lines
}

func rowColour(r *Row, sc *Screen) func(string) string {
	if r.Stuck > 0 || r.Failures() > 0 {
		return sc.Palette.Bad
	}
	return nil
}

func alertPane(s *Snapshot, loc *time.Location, sc *Screen, w, n int) []string {
	title := "ALERTS  " + u(s.AlertsTotal) + " so far"
	lines := []string{paint(sc.Palette.Heading, fit(title, w))}
	for i := 0; i < len(s.Alerts) && len(lines) < n; i++ {
		a := &s.Alerts[i]
		line := a.Time.In(loc).Format("15:04:05") + " " + a.Kind + " " + a.Owner + " " + a.Local + " → " + a.Remote
		if a.Ended != "" {
			line += " " + a.Ended
		} else {
			line += " for " + Age(a.For)
		}
		lines = append(lines, paint(sc.Palette.Bad, fit(line, w)))
	}
	if len(s.Alerts) == 0 {
		lines = append(lines, "  (none)")
	}
	for len(lines) < n {
		lines = append(lines, "")
	}
	return lines[:n]
}

// detail lists the row's recent records, newest first, and draws the
// selected one as a ladder, in n lines.
func detail(r *Row, v *View, sc *Screen, loc *time.Location, w, n int) []string {
	lines := []string{paint(sc.Palette.Heading, fit("RECENT RECORDS of "+r.Key+"  (↑↓ choose, esc back)", w))}
	if len(r.Records) == 0 {
		lines = append(lines, "  (no connection of this group has ended yet)")
	}
	sel := min(max(v.Record, 0), len(r.Records)-1)
	for i, c := range r.Records {
		if len(lines) >= n/3 {
			break
		}
		line := " " + recordLine(c, loc)
		var f func(string) string
		if i == sel {
			line = ">" + line[1:]
			f = sc.Palette.Selected
		}
		lines = append(lines, paint(f, fit(line, w)))
	}
	if sel >= 0 {
		var buf bytes.Buffer
		l := output.NewLadder(&buf, loc, sc.Output, output.LadderOptions{})
		_ = l.Connection(r.Records[sel])
		_ = l.Flush()
		for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
			if len(lines) >= n {
				break
			}
			lines = append(lines, fit(line, w))
		}
	}
	for len(lines) < n {
		lines = append(lines, "")
	}
	return lines[:n]
}

func recordLine(c *timeline.Connection, loc *time.Location) string {
	var b []byte
	b = time.Unix(0, c.Start).In(loc).AppendFormat(b, "15:04:05.000")
	b = append(b, ' ')
	b = append(b, processLabel(c.PID, c.Comm)...)
	b = append(b, ' ')
	b = timeline.AppendAddrPort(b, c.LAddr, c.LPort)
	b = append(b, " → "...)
	b = timeline.AppendAddrPort(b, c.RAddr, c.RPort)
	b = append(b, ' ')
	b = append(b, c.Role.String()...)
	b = append(b, ' ')
	b = append(b, c.Outcome.String()...)
	b = append(b, ' ')
	b = append(b, Age(time.Duration(c.Duration()))...)
	return string(b)
}

func footer(v *View) string {
	if v.Detail {
		return "↑↓ record  esc back  p pause  q quit"
	}
	return "q quit  g group  s/S sort  r reverse  ↑↓ select  enter records  p pause"
}

// fit cuts s to w cells (ANSI-aware, wide characters counted).
func fit(s string, w int) string {
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}

func padRight(s string, w int) string {
	return s + strings.Repeat(" ", max(0, w-ansi.StringWidth(s)))
}

func padLeft(s string, w int) string {
	return strings.Repeat(" ", max(0, w-ansi.StringWidth(s))) + s
}
