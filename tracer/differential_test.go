package tracer_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// sameMoment: two tracers read the clock at the same tracepoint one after
// the other, so their times for one kernel event differ by the run time of
// a BPF program (microseconds; more under TCG emulation).
const sameMoment = 20 * time.Millisecond

// sameRecords fails the test unless batched and oneByOne, two tracers that
// saw the same kernel events, made the same records, alerts and counts.
// Times may differ by sameMoment; everything else must be equal.
func sameRecords(t *testing.T, batched, oneByOne *capture) {
	t.Helper()
	batched.mu.Lock()
	defer batched.mu.Unlock()
	oneByOne.mu.Lock()
	defer oneByOne.mu.Unlock()

	// A tracer whose program the kernel skipped (a softirq landing in it
	// on the same CPU) made its records without that event, and the kernel
	// counted the miss: nothing can be compared then, and nothing is wrong
	// with either path. (Events the ring buffer refused already failed the
	// test as the tracer stopped, and sameRecords is not called.)
	if batched.misses != 0 || oneByOne.misses != 0 {
		t.Logf("batched and one-by-one records not compared: the kernel skipped program runs (batched %d, one by one %d)",
			batched.misses, oneByOne.misses)
		return
	}
	a, b := recordKeys(batched.recs), recordKeys(oneByOne.recs)
	if !slices.Equal(a, b) {
		// Only the records that differ: CI shows a part of a long log.
		t.Errorf("batched and one-by-one records differ (%d and %d records):\nonly batched:\n  %s\nonly one by one:\n  %s",
			len(a), len(b), strings.Join(missing(a, b), "\n  "), strings.Join(missing(b, a), "\n  "))
	}
	xs, ys := sortedRecs(batched.recs), sortedRecs(oneByOne.recs)
	for i := range min(len(xs), len(ys)) {
		x, y := xs[i], ys[i]
		if x.Partial {
			// A partial record starts when a scan or an event first
			// showed it, and each tracer scanned at its own moment.
			continue
		}
		for _, d := range []struct {
			what string
			x, y int64
		}{{"start", x.Start, y.Start}, {"end", x.End, y.End}, {"handshake", x.Handshake, y.Handshake}} {
			if diff := time.Duration(d.x - d.y); diff > sameMoment || diff < -sameMoment {
				t.Errorf("cookie %d: %s differs by %s (batched %d, one by one %d)", x.Cookie, d.what, diff, d.x, d.y)
			}
		}
	}
	if a, b := alertKeys(batched.alerts), alertKeys(oneByOne.alerts); !slices.Equal(a, b) {
		t.Errorf("batched and one-by-one alerts differ:\nbatched:    %v\none by one: %v", a, b)
	}
	sa, sb := batched.corr.Stats(), oneByOne.corr.Stats()
	if sa.Connections != sb.Connections || sa.ByOutcome != sb.ByOutcome || sa.Events != sb.Events ||
		sa.Stray != sb.Stray || sa.ResetsNoSocket != sb.ResetsNoSocket || fmt.Sprint(sa.ByReason) != fmt.Sprint(sb.ByReason) {
		t.Errorf("batched and one-by-one counts differ:\nbatched:    %s\none by one: %s", countsKey(sa), countsKey(sb))
	}
}

// countsKey is what sameRecords compares of a correlator's counts.
func countsKey(s timeline.Stats) string {
	return fmt.Sprintf("events=%d connections=%d outcomes=%v stray=%d resets-no-socket=%d reasons=%v",
		s.Events, s.Connections, s.ByOutcome, s.Stray, s.ResetsNoSocket, s.ByReason)
}

// missing is what of a is not in b.
func missing(a, b []string) []string {
	var out []string
	for _, k := range a {
		if !slices.Contains(b, k) {
			out = append(out, k)
		}
	}
	return out
}

func sortedRecs(recs []*timeline.Connection) []*timeline.Connection {
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(x, y *timeline.Connection) int { return strings.Compare(recordKey(x), recordKey(y)) })
	return out
}

func recordKeys(recs []*timeline.Connection) []string {
	keys := make([]string, len(recs))
	for i, r := range sortedRecs(recs) {
		keys[i] = recordKey(r)
	}
	return keys
}

// digits masks the figures of an explanation that depend on when each
// tracer read the clock.
var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// recordKey is everything a record says but its times.
func recordKey(r *timeline.Connection) string {
	var steps []string
	for _, s := range r.Steps {
		steps = append(steps, fmt.Sprintf("%s %s>%s tw=%v n=%d errno=%d rst=%s nosock=%v",
			s.Kind, s.From, s.To, s.TimewaitSocket, s.N, s.Errno, s.RSTReason, s.NoSocket))
	}
	return fmt.Sprintf("cookie=%d %s %s:%d>%s:%d netns=%d pid=%d comm=%q uid=%d cgroup=%d %s by=%s syn=%d synack=%d retrans=%d "+
		"rst=%v/%v(%s) errno=%d reason=%s bytes=%d/%d segs=%d rtt?=%v hs?=%v half=%v/%v partial=%v incomplete=%v evicted=%v "+
		"states=%v steps=[%s] dropped=%d explanation=%q",
		r.Cookie, r.Role, r.LAddr, r.LPort, r.RAddr, r.RPort, r.NetNS, r.PID, r.Comm, r.UID, r.Cgroup, r.Outcome, r.ClosedBy,
		r.SynRetries, r.SynAckRetries, r.Retransmits, r.RSTSent, r.RSTReceived, r.RSTReason, r.Errno, r.Reason,
		r.BytesSent, r.BytesReceived, r.SegsRetrans, r.HandshakeRTT != 0, r.Handshake >= 0, r.HalfClose, r.HalfOpen,
		r.Partial, r.Incomplete, r.Evicted, r.States, strings.Join(steps, "; "), r.StepsDropped,
		digits.ReplaceAllString(r.Explanation(), "N"))
}

// alertKeys: which alerts were raised, not how often (the two tracers tick
// at their own moments, and a repeated alert may come once more in one).
func alertKeys(alerts []timeline.Alert) []string {
	var keys []string
	for _, a := range alerts {
		k := fmt.Sprintf("%s %s cookie=%d pid=%d comm=%q since?=%v ended=%s", a.Kind, a.State, a.Cookie, a.PID, a.Comm,
			a.SinceUnknown, a.Ended)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
