package tracer_test

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/linecheck"
	"github.com/tcptrace/tcptrace/internal/netnstest"
	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer"
)

// ladderArrow is an arrow of a rendered ladder: its sender (the left end,
// or the right), its segment and the numbers on it.
type ladderArrow struct {
	fromLeft bool
	kind     string // SYN, SYN+ACK, ACK, FIN, FIN+ACK
	seq, ack int64  // -1: not written
}

var (
	ladderLabel = regexp.MustCompile(`[│|]\S*\s*((?:SYN\+ACK|SYN|FIN\+ACK|FIN|ACK)(?: \(retry \d+\))?)((?: (?:seq|ack|s|a)=\d+)*)`)
	ladderNum   = regexp.MustCompile(`(seq|ack|s|a)=(\d+)`)
)

// ladderArrows reads the arrows off a diagram.
func ladderArrows(d string) []ladderArrow {
	var out []ladderArrow
	for _, line := range strings.Split(d, "\n") {
		right, left := strings.Contains(line, "▶│"), strings.Contains(line, "│◀")
		if right == left {
			continue
		}
		m := ladderLabel.FindStringSubmatch(strings.ReplaceAll(line, "─", " "))
		if m == nil {
			continue
		}
		a := ladderArrow{fromLeft: right, kind: strings.Fields(m[1])[0], seq: -1, ack: -1}
		for _, n := range ladderNum.FindAllStringSubmatch(m[2], -1) {
			v, _ := strconv.ParseInt(n[2], 10, 64)
			if n[1] == "seq" || n[1] == "s" {
				a.seq = v
			} else {
				a.ack = v
			}
		}
		out = append(out, a)
	}
	return out
}

// The numbers a ladder prints are the wire's: two real connections on
// loopback, drawn with both ends' records, every number on an arrow
// compared with tcpdump -S; absolute with --absolute-seq, relative (the
// wire's less the sender's or receiver's ISN) without.
func TestLadderSeqMatchesTheWire(t *testing.T) {
	ns := netnstest.New(t)
	c := trace(t, ns, tracer.Config{})
	for _, tc := range []struct {
		name        string
		serverFirst bool // the server closes first (else the client)
		data        bool // a request and an answer
		wantAcks    int  // FINs whose ack is provable
	}{
		// The client's FIN, sent from CLOSE_WAIT, acknowledges the
		// server's; the server's first FIN could follow the request.
		{"server closes first", true, true, 1},
		// No data either way: both FINs' acks are known.
		{"client closes first, no data", false, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, port := listen(t, ns, "127.0.0.1:0")
			wire := ns.Tcpdump(t, "lo", "tcp port "+strconv.Itoa(int(port)))
			cli := dial(t, ns, ln.Addr().String())
			srv := accept(t, ln)
			cliAddr, srvAddr := dotted(cli.LocalAddr()), dotted(srv.LocalAddr())
			if tc.data {
				cli.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
				buf := make([]byte, 18)
				if _, err := srv.Read(buf); err != nil {
					t.Fatal(err)
				}
				srv.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhello"))
			}
			first, second := cli, srv
			if tc.serverFirst {
				first, second = srv, cli
			}
			first.Close()
			readEOF(t, second)
			second.Close()
			cr := c.record("client", client(port))
			sr := c.record("server", server(port))
			time.Sleep(50 * time.Millisecond) // the last ACK on the wire
			segs := parseSegments(wire.Stop(t))
			cISN, _ := wireSeq(t, segs, cliAddr)
			sISN, _ := wireSeq(t, segs, srvAddr)
			for _, abs := range []bool{true, false} {
				var buf bytes.Buffer
				w := output.NewLadder(&buf, time.UTC, output.Options{}, output.LadderOptions{AbsoluteSeq: abs})
				if err := w.ConnectionPair(cr, sr); err != nil {
					t.Fatal(err)
				}
				w.Flush()
				d := buf.String()
				t.Logf("absolute %v:\n%s", abs, d)
				for _, p := range linecheck.Problems(d) {
					t.Error(p)
				}
				checkLadderAgainstWire(t, ladderArrows(d), segs, cliAddr, srvAddr, cISN, sISN, abs, tc.wantAcks)
			}
		})
	}
}

// checkLadderAgainstWire finds each arrow's segment on the wire and
// compares their numbers.
func checkLadderAgainstWire(t *testing.T, arrows []ladderArrow, segs []segment, cliAddr, srvAddr string,
	cISN, sISN uint32, abs bool, wantAcks int) {
	t.Helper()
	// wireNum is what the ladder should write for v of the space whose
	// ISN is isn.
	wireNum := func(v, isn uint32) int64 {
		if abs {
			return int64(v)
		}
		return int64(v - isn)
	}
	var numbered, finAcks int
	kinds := map[string]int{}
	for _, a := range arrows {
		from, to, fromISN, toISN := cliAddr, srvAddr, cISN, sISN
		if !a.fromLeft {
			from, to, fromISN, toISN = srvAddr, cliAddr, sISN, cISN
		}
		kinds[a.kind]++
		if a.seq >= 0 || a.ack >= 0 {
			numbered++
		}
		var match func(s segment) bool
		switch a.kind {
		case "SYN":
			match = func(s segment) bool { return s.flags == "S" }
		case "SYN+ACK":
			match = func(s segment) bool { return s.flags == "S." }
		case "FIN", "FIN+ACK":
			match = func(s segment) bool { return strings.Contains(s.flags, "F") }
		case "ACK":
			// Any segment of the sender acknowledging that much (an ACK
			// can ride on data or on a FIN).
			match = func(s segment) bool { return a.ack >= 0 && wireNum(s.ack, toISN) == a.ack }
		}
		var seg *segment
		for i := range segs {
			if segs[i].src == from && segs[i].dst == to && match(segs[i]) {
				seg = &segs[i]
				break
			}
		}
		if seg == nil {
			if a.ack >= 0 || a.seq >= 0 {
				t.Errorf("absolute %v: %s seq=%d ack=%d from %s: no such segment on the wire:\n%+v",
					abs, a.kind, a.seq, a.ack, from, segs)
			}
			continue
		}
		seq := seg.start
		if strings.Contains(seg.flags, "F") {
			seq = seg.end // a FIN after data: one past the data
		}
		if a.seq >= 0 && a.seq != wireNum(seq, fromISN) {
			t.Errorf("absolute %v: %s from %s seq=%d, wire %d (%s)", abs, a.kind, from, a.seq,
				wireNum(seq, fromISN), seg.flags)
		}
		if a.ack >= 0 && a.ack != wireNum(seg.ack, toISN) {
			t.Errorf("absolute %v: %s from %s ack=%d, wire %d", abs, a.kind, from, a.ack, wireNum(seg.ack, toISN))
		}
		if strings.HasPrefix(a.kind, "FIN") && a.ack >= 0 {
			finAcks++
		}
	}
	if kinds["SYN"] != 1 || kinds["SYN+ACK"] != 1 || kinds["FIN"]+kinds["FIN+ACK"] != 2 || numbered < 7 {
		t.Errorf("absolute %v: arrows %v, %d with numbers: want the handshake, two FINs and their ACKs, numbered",
			abs, kinds, numbered)
	}
	if finAcks != wantAcks {
		t.Errorf("absolute %v: %d FINs with an ack, want %d", abs, finAcks, wantAcks)
	}
}
