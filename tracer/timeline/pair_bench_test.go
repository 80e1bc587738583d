package timeline

// The cost of the pairing stage per record.
//
//	go test -run '^$' -bench 'Pair' -benchmem ./tracer/timeline/

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkCorrelatePaired is BenchmarkCorrelate with the pairing stage
// after the correlator, as the CLI runs it: every client has its server on
// loopback, so every record is held until its peer's comes. Compare
// ns/op (per event) with BenchmarkCorrelate; a record is 5 events.
func BenchmarkCorrelatePaired(b *testing.B) {
	for _, tc := range []struct {
		conc  int
		gapNs int64
	}{{32, 10_000}, {1024, 10_000}, {32, 500}, {1024, 500}} {
		b.Run(fmt.Sprintf("conc=%d/gap=%dns", tc.conc, tc.gapNs), func(b *testing.B) {
			const pairs = 4096
			stream := benchHTTPEvents(pairs, tc.conc, tc.gapNs)
			out, paired := 0, 0
			p := NewPairer(DefaultPairConfig(), func(c, peer *Connection) {
				out++
				if peer != nil {
					out++
					paired += 2
				}
			})
			c := New(DefaultConfig(), p.Add)
			advance := func(now int64) { c.Advance(now); p.Advance(now) }
			r := newBenchReplayer(stream, pairs, tc.gapNs)
			r.run(4*len(stream), c.Add, advance)
			warm, warmPaired := out, paired
			b.ReportAllocs()
			b.ResetTimer()
			r.run(b.N, c.Add, advance)
			b.StopTimer()
			reportRate(b, b.N)
			b.ReportMetric(float64(b.N)/float64(max(out-warm, 1)), "events/record")
			b.ReportMetric(float64(paired-warmPaired)/float64(max(out-warm, 1)), "paired/record")
			b.ReportMetric(float64(p.Held()), "held")
		})
	}
}

// BenchmarkPairer is the stage alone, per record: pairs whose two records
// come one after the other, and records with no peer on this host (to a
// remote server), each held for the whole wait, 30,000 a second.
func BenchmarkPairer(b *testing.B) {
	cli := record(1, "127.0.0.1:40000", "127.0.0.1:8080", 7, 0, 10, closedStates...)
	srv := record(2, "127.0.0.1:8080", "127.0.0.1:40000", 7, 1, 12, closedStates...)
	steps := []Step{{Kind: StepState, From: StateClose, To: StateSynSent}, {Kind: StepState, From: StateSynSent, To: StateEstablished},
		{Kind: StepState, From: StateEstablished, To: StateFinWait1}, {Kind: StepState, From: StateFinWait1, To: StateFinWait2},
		{Kind: StepState, From: StateFinWait2, To: StateTimeWait, TimewaitSocket: true}}
	cli.Steps, srv.Steps = steps, steps
	b.Run("paired", func(b *testing.B) {
		p := NewPairer(DefaultPairConfig(), func(c, peer *Connection) {})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			// Records 2k and 2k+1 are the two ends of connection k.
			port := uint16(10000 + (i/2)%50000)
			cli.Cookie, srv.Cookie = uint64(i+1), uint64(i+1)
			cli.LPort, srv.RPort = port, port
			if i%2 == 0 {
				p.Add(cli)
			} else {
				p.Add(srv)
			}
		}
		if p.Paired() != uint64(b.N/2*2) {
			b.Fatalf("paired %d of %d", p.Paired(), b.N)
		}
	})
	b.Run("unpaired", func(b *testing.B) {
		p := NewPairer(DefaultPairConfig(), func(c, peer *Connection) {})
		remote := *cli
		remote.RAddr = netip.MustParseAddr("192.0.2.1")
		const gap = int64(1e9) / 30000
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			remote.Cookie = uint64(i + 1)
			remote.LPort = uint16(10000 + i%50000)
			remote.RPort = uint16(1 + i/50000%60000)
			remote.Start = baseTime + int64(i)*gap
			remote.End = remote.Start
			p.Add(&remote)
			if i%3000 == 0 { // Advance every 100 ms
				p.Advance(remote.End)
			}
		}
		b.ReportMetric(float64(p.Held()), "held")
	})
}
