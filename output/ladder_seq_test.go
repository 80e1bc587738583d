package output

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The textbook's scenarios with sequence numbers: the events carry what
// the socket read at ESTABLISHED (snd_una and rcv_nxt, one past both ISNs)
// and at CLOSE (write_seq and rcv_nxt, one past everything sent and
// received, a FIN counting one). The server's ISN is near 2^32: its FIN
// wraps around, as the wire's numbers do.
var (
	cliISN uint32 = 3967298331
	srvISN uint32 = 4294966000
)

// atEst is what an ESTABLISHED transition read of an end with ISN isn
// whose peer's ISN is peerISN.
func atEst(isn, peerISN uint32) func(*timeline.Event) {
	return func(e *timeline.Event) {
		e.Info = timeline.TCPInfo{Known: true, SndUna: isn + 1, RcvNxt: peerISN + 1}
	}
}

// atClose is what a CLOSE transition read: sent bytes (and a FIN if fin)
// after the ISN, received bytes (and the peer's FIN if peerFIN).
func atClose(isn uint32, sent uint32, fin bool, peerISN uint32, received uint32, peerFIN bool) func(*timeline.Event) {
	return func(e *timeline.Event) {
		w, r := isn+1+sent, peerISN+1+received
		if fin {
			w++
		}
		if peerFIN {
			r++
		}
		e.Info = timeline.TCPInfo{Known: true, End: true, SndUna: w, WriteSeq: w, RcvNxt: r}
	}
}

func seqCases() []ladderCase {
	c, s := client, server
	lc, ls := loClient, loServer
	hs := func(e end) []timeline.Event {
		return []timeline.Event{
			e.st(0, closeState, synSent),
			e.st(24.1, synSent, established, figures(1, 0, 24100), atEst(cliISN, srvISN)),
		}
	}
	cases := []ladderCase{
		// The client closes first: its FIN's ack is not known (the
		// server's data could have come after it); the server's FIN,
		// sent from CLOSE_WAIT, acknowledges the client's FIN.
		{name: "seq_client_closes", local: 11, peer: 12, events: []timeline.Event{
			lc.st(0, closeState, synSent),
			lc.st(0.031, synSent, established, figures(1, 0, 28), atEst(cliISN, srvISN)),
			ls.st(0.036, listen, synRecv),
			ls.st(0.036, synRecv, established, figures(0, 0, 9), atEst(srvISN, cliISN)),
			lc.st(0.210, established, finWait1, figures(1+75, 512, 30)),
			ls.st(0.224, established, closeWait, done, figures(512, 75+1, 12)),
			lc.st(0.226, finWait1, finWait2, dead, figures(1+75+1, 512, 30)),
			lc.st(0.226, finWait2, closeState, dead, figures(1+75+1, 512, 30),
				atClose(cliISN, 75, true, srvISN, 512, false)),
			ls.st(0.391, closeWait, lastAck, figures(512, 75+1, 12)),
			ls.st(0.412, lastAck, closeState, figures(512+1, 75+1, 12),
				atClose(srvISN, 512, true, cliISN, 75, true)),
		}},
		{name: "seq_client_closes_unpaired", local: 1, events: append(hs(c),
			c.st(61.3, established, finWait1, figures(1+512, 4200, 20500)),
			c.st(73.4, finWait1, finWait2, figures(1+512+1, 4200, 18200)),
			c.st(73.6, finWait2, closeState, deadDone, figures(1+512+1, 4200+1, 18200),
				atClose(cliISN, 512, true, srvISN, 4200, true)),
		)},
		// The server answers and closes first (Connection: close).
		{name: "seq_server_closes", local: 12, peer: 11, events: []timeline.Event{
			lc.st(0, closeState, synSent),
			lc.st(0.029, synSent, established, figures(1, 0, 27), atEst(cliISN, srvISN)),
			ls.st(0.034, listen, synRecv),
			ls.st(0.034, synRecv, established, figures(0, 0, 8), atEst(srvISN, cliISN)),
			ls.st(0.301, established, finWait1, figures(2300, 80, 11)),
			lc.st(0.318, established, closeWait, done, figures(1+80, 2300+1, 30)),
			ls.st(0.320, finWait1, finWait2, dead, figures(2300+1, 80, 11)),
			ls.st(0.320, finWait2, closeState, dead, figures(2300+1, 80, 11),
				atClose(srvISN, 2300, true, cliISN, 80, false)),
			lc.st(0.515, closeWait, lastAck, figures(1+80, 2300+1, 30)),
			lc.st(0.533, lastAck, closeState, figures(1+80+1, 2300+1, 30),
				atClose(cliISN, 80, true, srvISN, 2300, true)),
		}},
		{name: "seq_server_closes_unpaired", local: 1, events: append(hs(c),
			c.st(40.2, established, closeWait, done, figures(1+78, 1380+1, 22000)),
			c.st(40.5, closeWait, lastAck, figures(1+78, 1380+1, 22000)),
			c.st(52.7, lastAck, closeState, figures(1+78+1, 1380+1, 22000),
				atClose(cliISN, 78, true, srvISN, 1380, true)),
		)},
		// Nothing sent either way: the first FIN's ack is known too (the
		// server's FIN came after the ACK of the client's).
		{name: "seq_no_data", local: 11, peer: 12, events: []timeline.Event{
			lc.st(0, closeState, synSent),
			lc.st(0.031, synSent, established, figures(1, 0, 28), atEst(cliISN, srvISN)),
			ls.st(0.036, listen, synRecv),
			ls.st(0.036, synRecv, established, figures(0, 0, 9), atEst(srvISN, cliISN)),
			lc.st(0.110, established, finWait1, figures(1, 0, 30)),
			ls.st(0.124, established, closeWait, done, figures(0, 1, 12)),
			lc.st(0.126, finWait1, finWait2, dead, figures(2, 0, 30)),
			lc.st(0.126, finWait2, closeState, dead, figures(2, 0, 30), atClose(cliISN, 0, true, srvISN, 0, false)),
			ls.st(0.191, closeWait, lastAck, figures(0, 1, 12)),
			ls.st(0.212, lastAck, closeState, figures(1, 1, 12), atClose(srvISN, 0, true, cliISN, 0, true)),
		}},
		// The FINs cross: neither's ack is known.
		{name: "seq_simultaneous_close", local: 1, events: append(hs(c),
			c.st(50.0, established, finWait1, figures(1+100, 100, 24000)),
			c.st(50.9, finWait1, closing, done, figures(1+100, 100+1, 24000)),
			c.st(62.3, closing, closeState, deadDone, figures(1+100+1, 100+1, 24000),
				atClose(cliISN, 100, true, srvISN, 100, true)),
		)},
		// shutdown(SHUT_WR), then 64 KiB from the server, then its FIN.
		{name: "seq_half_close", local: 1, events: append(hs(c),
			c.st(30.0, established, finWait1, figures(1+2048, 0, 24000)),
			c.st(42.1, finWait1, finWait2, figures(1+2048+1, 0, 24000)),
			c.st(95.8, finWait2, closeState, done, figures(1+2048+1, 65536+1, 23000),
				atClose(cliISN, 2048, true, srvISN, 65536, true)),
		)},
		// Refused: the socket never reached ESTABLISHED, its ISN is not
		// known, the SYN gets no number.
		{name: "seq_refused", local: 11, events: []timeline.Event{
			lc.st(0, closeState, synSent),
			lc.ev(0.052, timeline.EventRSTReceived, synSent),
			lc.st(0.058, synSent, closeState, errno(syscall.ECONNREFUSED), atClose(0, 0, false, 0, 0, false)),
		}},
		{name: "seq_reset_by_peer", local: 1, events: append(hs(c),
			c.ev(70.0, timeline.EventRSTReceived, established),
			c.st(70.0, established, closeState, errno(syscall.ECONNRESET), figures(1+160, 20, 24000),
				atClose(cliISN, 160, false, srvISN, 20, false)),
		)},
		// The first SYN lost: the retry carries the same ISN.
		{name: "seq_syn_retry", local: 1, events: []timeline.Event{
			c.st(0, closeState, synSent),
			c.ev(1003, timeline.EventRetransmit, synSent),
			c.st(1015, synSent, established, figures(1, 0, 12000), atEst(cliISN, srvISN)),
			c.st(1100, established, finWait1, figures(1+80, 1200, 12000)),
			c.st(1112, finWait1, finWait2, figures(1+80+1, 1200, 12000)),
			c.st(1113, finWait2, closeState, deadDone, figures(1+80+1, 1200+1, 12000),
				atClose(cliISN, 80, true, srvISN, 1200, true)),
		}},
		{name: "seq_synack_retries", local: 2, events: []timeline.Event{
			s.ev(1000, timeline.EventSynAckRetransmit, synRecv, func(e *timeline.Event) { e.Cookie = 9 }),
			s.ev(3000, timeline.EventSynAckRetransmit, synRecv, func(e *timeline.Event) { e.Cookie = 9 }),
			s.st(3012, listen, synRecv),
			s.st(3012, synRecv, established, figures(0, 0, 12000), atEst(srvISN, cliISN)),
			s.st(3150, established, closeWait, done, figures(1200, 310+1, 12000)),
			s.st(3151, closeWait, lastAck, figures(1200, 310+1, 12000)),
			s.st(3163, lastAck, closeState, figures(1200+1, 310+1, 12000),
				atClose(srvISN, 1200, true, cliISN, 310, true)),
		}},
		// Started before tracing: the ISNs are not known, so no relative
		// numbers; the FIN's absolute number is.
		{name: "seq_partial", local: 1, events: []timeline.Event{
			c.st(0, established, finWait1, figures(1+9000, 120, 24000)),
			c.st(12.3, finWait1, finWait2, dead, figures(1+9001, 120, 24000)),
			c.st(12.3, finWait2, closeState, dead, figures(1+9001, 120, 24000),
				atClose(cliISN, 9000, true, srvISN, 120, false)),
		}},
	}
	var out []ladderCase
	for _, tc := range cases {
		tc.sys = linuxSysctls
		out = append(out, tc)
		tc.absSeq = true
		out = append(out, tc)
	}
	return out
}

var seqRE = regexp.MustCompile(`\b(seq|ack|s|a)=([0-9]+)`)

// The numbers on the arrows are the records' own, relative or absolute,
// and a label is never cut to fit.
func TestLadderSeqNumbers(t *testing.T) {
	want := func(name string, abs bool) []string {
		r := func(rel, absv uint32) string {
			if abs {
				return "=" + uitoa(absv)
			}
			return "=" + uitoa(rel)
		}
		switch name {
		case "seq_client_closes":
			return []string{
				"SYN seq" + r(0, cliISN), "SYN+ACK seq" + r(0, srvISN) + " ack" + r(1, cliISN+1),
				"FIN seq" + r(76, cliISN+76), "ACK ack" + r(77, cliISN+77),
				"FIN seq" + r(513, srvISN+513) + " ack" + r(77, cliISN+77),
				"ACK ack" + r(514, srvISN+514),
			}
		case "seq_server_closes":
			return []string{"FIN seq" + r(2301, srvISN+2301), "ack" + r(2302, srvISN+2302)}
		case "seq_no_data":
			return []string{"FIN seq" + r(1, cliISN+1) + " ack" + r(1, srvISN+1),
				"FIN seq" + r(1, srvISN+1) + " ack" + r(2, cliISN+2)}
		}
		return nil
	}
	for _, tc := range seqCases() {
		d := string(renderCase(t, tc, false))
		compact := strings.NewReplacer("s=", "seq=", "a=", "ack=").Replace(d)
		for _, w := range want(tc.name, tc.absSeq) {
			if !strings.Contains(compact, w) {
				t.Errorf("%s (absolute %v): no %q in\n%s", tc.name, tc.absSeq, w, d)
			}
		}
		nums := seqRE.FindAllString(d, -1)
		switch {
		case tc.name == "seq_refused" && len(nums) > 0:
			t.Errorf("refused: numbers %q without a known ISN", nums)
		case tc.name == "seq_partial" && !tc.absSeq && len(nums) > 0:
			t.Errorf("partial: relative numbers %q without a known ISN", nums)
		case tc.name == "seq_partial" && tc.absSeq && len(nums) == 0:
			t.Errorf("partial: no absolute FIN number")
		}
		if strings.Contains(d, "RST seq") || strings.Contains(d, "RST ack") {
			t.Errorf("%s: numbers on a RST:\n%s", tc.name, d)
		}
	}
}

func uitoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// Labels too wide for the arrow are shortened, never cut: seq= and ack=
// become s= and a=, then the ack goes, then the seq.
func TestLadderSeqLabelFits(t *testing.T) {
	n := &seqNums{abs: true}
	n.ends[left] = endSeq{isn: 4294967295, hasISN: true, fin: 4294967294, hasFIN: true}
	n.ends[right] = endSeq{isn: 4000000000, hasISN: true, fin: 4000000001, hasFIN: true}
	for _, tc := range []struct {
		kind segKind
		base string
		want string
	}{
		{segSYN, "SYN", "SYN seq=4294967295"},
		{segSynAck, "SYN+ACK", "SYN+ACK s=4294967295 a=4000000001"},
		{segSynAck, "SYN+ACK (retry 1)", "SYN+ACK (retry 1) s=4294967295"},
		{segFIN, "FIN+ACK", "FIN+ACK s=4294967294 a=4000000002"},
		{segAckFIN, "ACK", "ACK ack=4000000002"},
	} {
		got := n.label(tc.kind, left, tc.base)
		if got != tc.want || len(got) > maxLabel {
			t.Errorf("%s: %q, want %q (at most %d columns)", tc.base, got, tc.want, maxLabel)
		}
	}
}

// Two records of a pair that disagree on a number: neither is written.
func TestLadderSeqPairDisagrees(t *testing.T) {
	tc := seqCases()[0] // seq_client_closes, relative
	recs := correlate(t, tc.sys, tc.events...)
	cli, srv := recs[11], recs[12].Clone()
	srv.Seq.ISN++ // the server's own ISN, against the client's PeerISN
	var buf strings.Builder
	w := NewLadder(&buf, nil, Options{}, LadderOptions{})
	w.ConnectionPair(cli, srv)
	w.Flush()
	d := buf.String()
	if strings.Contains(d, "SYN+ACK seq=") || strings.Contains(d, "FIN seq=513") || !strings.Contains(d, "SYN seq=0") {
		t.Errorf("the server's numbers are written though its records disagree:\n%s", d)
	}
}
