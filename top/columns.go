package top

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// column is one column of the table: its heading, width (with the space
// before it), priority (what a narrow terminal keeps: lowest first), cell
// and sort order (descending: the most first).
type column struct {
	name  string
	width int
	prio  int
	cell  func(r *Row) string
	less  func(a, b *Row) int // > 0: a sorts after b
}

// Columns in display order. A narrow terminal keeps those of the lowest
// priority that fit: at 80 columns, all but TIMEW, SYNR, FINW2 and the
// handshake times.
var columns = []column{
	{"EST", 5, 1, func(r *Row) string { return count(r.Established) }, byInt(func(r *Row) int { return r.Established })},
	{"SYNS", 5, 3, func(r *Row) string { return count(r.SynSent) }, byInt(func(r *Row) int { return r.SynSent })},
	{"SYNR", 5, 12, func(r *Row) string { return count(r.SynRecv) }, byInt(func(r *Row) int { return r.SynRecv })},
	{"CLOSW", 6, 2, func(r *Row) string { return count(r.CloseWait) }, byInt(func(r *Row) int { return r.CloseWait })},
	{"FINW2", 6, 13, func(r *Row) string { return count(r.FinWait2) }, byInt(func(r *Row) int { return r.FinWait2 })},
	{"TIMEW", 6, 11, func(r *Row) string { return count(r.TimeWait) }, byInt(func(r *Row) int { return r.TimeWait })},
	{"OLDEST", 12, 4, oldestCell, byInt(func(r *Row) int { return int(r.OldestMS) })},
	{"NEW/s", 6, 5, func(r *Row) string { return rate(r.New) }, byRate(func(r *Row) float64 { return r.New })},
	{"REF/s", 6, 6, func(r *Row) string { return rate(r.Refused) }, byRate(func(r *Row) float64 { return r.Refused })},
	{"TMO/s", 6, 7, func(r *Row) string { return rate(r.Timeout) }, byRate(func(r *Row) float64 { return r.Timeout })},
	{"RSET/s", 7, 8, func(r *Row) string { return rate(r.Reset) }, byRate(func(r *Row) float64 { return r.Reset })},
	{"RTX/s", 6, 9, func(r *Row) string { return rate(r.Retrans) }, byRate(func(r *Row) float64 { return r.Retrans })},
	{"RST/s", 6, 10, func(r *Row) string { return rate(r.RST) }, byRate(func(r *Row) float64 { return r.RST })},
	{"HS p50", 7, 14, func(r *Row) string { return hsCell(r, r.P50MS) }, byRate(func(r *Row) float64 { return r.P50MS })},
	{"HS p99", 7, 15, func(r *Row) string { return hsCell(r, r.P99MS) }, byRate(func(r *Row) float64 { return r.P99MS })},
}

// Sort orders: SortWorst, then the columns by index + SortFirstColumn;
// SortKey sorts by the group's label.
const (
	SortWorst       = 0
	SortKey         = 1
	SortFirstColumn = 2
)

// NumSorts is how many sort orders there are, for cycling.
func NumSorts() int { return SortFirstColumn + len(columns) }

// SortName names a sort order.
func SortName(s int) string {
	switch s {
	case SortWorst:
		return "worst"
	case SortKey:
		return "name"
	}
	return strings.ToLower(columns[s-SortFirstColumn].name)
}

// ParseSort reads a sort order's name (as SortName gives it).
func ParseSort(name string) (int, bool) {
	for s := range NumSorts() {
		if SortName(s) == strings.ToLower(name) {
			return s, true
		}
	}
	return 0, false
}

// SortNames lists the sort orders, for help texts.
func SortNames() []string {
	var names []string
	for s := range NumSorts() {
		names = append(names, SortName(s))
	}
	return names
}

func byInt(f func(*Row) int) func(a, b *Row) int {
	return func(a, b *Row) int { return cmp.Compare(f(b), f(a)) }
}

func byRate(f func(*Row) float64) func(a, b *Row) int {
	return func(a, b *Row) int { return cmp.Compare(f(b), f(a)) }
}

// worst puts first the groups with connections stuck past the alerts'
// threshold, then those failing connections, then resets, then
// retransmissions, then the oldest stuck, then the busiest.
func worst(a, b *Row) int {
	for _, c := range []int{
		cmp.Compare(b.Stuck, a.Stuck),
		cmp.Compare(b.Failures(), a.Failures()),
		cmp.Compare(b.RST, a.RST),
		cmp.Compare(b.Retrans, a.Retrans),
		cmp.Compare(b.OldestMS, a.OldestMS),
		cmp.Compare(b.New, a.New),
		cmp.Compare(b.Established, a.Established),
	} {
		if c != 0 {
			return c
		}
	}
	return 0
}

// SortRows sorts rows by sort order s (reversed if asked); ties go by
// label so that the screen does not shuffle.
func SortRows(rows []Row, s int, reverse bool) {
	less := worst
	switch {
	case s == SortKey:
		less = func(a, b *Row) int { return 0 }
	case s >= SortFirstColumn && s < NumSorts():
		less = columns[s-SortFirstColumn].less
	}
	slices.SortStableFunc(rows, func(a, b Row) int {
		c := less(&a, &b)
		if c == 0 {
			c = strings.Compare(a.Key, b.Key)
		}
		if reverse {
			return -c
		}
		return c
	})
}

func count(n int) string {
	if n == 0 {
		return "."
	}
	return compact(float64(n), false)
}

func rate(f float64) string {
	if f == 0 {
		return "."
	}
	return compact(f, true)
}

// compact writes a figure in 5 characters at most: 3.2, 42, 1234, 12.3k.
func compact(f float64, frac bool) string {
	switch {
	case f >= 1e6:
		return strconv.FormatFloat(f/1e6, 'f', 1, 64) + "M"
	case f >= 1e4:
		return strconv.FormatFloat(f/1e3, 'f', 1, 64) + "k"
	case frac && f < 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 0, 64)
}

var stateAbbrev = map[string]string{"CLOSE_WAIT": "CW", "FIN_WAIT2": "FW2", "SYN_SENT": "SS", "SYN_RECV": "SR"}

func oldestCell(r *Row) string {
	if r.OldestState == "" {
		return "."
	}
	s := stateAbbrev[r.OldestState] + " "
	if r.OldestAtLst {
		s += ">"
	}
	return s + Age(time.Duration(r.OldestMS)*time.Millisecond)
}

func hsCell(r *Row, ms float64) string {
	if r.HandshakeN == 0 {
		return "."
	}
	return Age(time.Duration(ms * 1e6))
}

// Age writes a duration in 5 characters at most: 850µs, 12ms, 1.2s, 42s,
// 3m12s, 2h05m, 3d04h.
func Age(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d < time.Hour:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m" + pad2(int64(d%time.Minute/time.Second)) + "s"
	case d < 24*time.Hour:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h" + pad2(int64(d%time.Hour/time.Minute)) + "m"
	}
	return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d" + pad2(int64(d%(24*time.Hour)/time.Hour)) + "h"
}

func pad2(n int64) string {
	if n < 10 {
		return "0" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}
