package tracer

// The whole user-space path of one event, as tracer.Run and cmd's session
// drive it: ring buffer sample -> Decoder.Decode -> Correlator.Add (with
// Advance every 4096 events) -> output.JSON.Connection for each record
// emitted, to io.Discard through the writer's bufio.Writer. ns/op is per
// event, whether the events come each in its own record (at once: with
// --events) or in one record per socket's end (queued: the default).
//
//	go test -run '^$' -bench Pipeline -benchmem ./tracer/

import (
	"fmt"
	"io"
	"testing"

	"github.com/tcptrace/tcptrace/output"
	"github.com/tcptrace/tcptrace/tracer/timeline"
)

func BenchmarkPipeline(b *testing.B) {
	for _, tc := range []struct {
		conc  int
		gapNs int64
	}{{32, 10_000}, {1024, 500}} {
		for _, mode := range []struct {
			name   string
			format string
			queued bool
		}{{"json", "json", true}, {"json-at-once", "json", false}, {"text", "text", true}, {"none", "none", true}} {
			format := mode.format
			b.Run(fmt.Sprintf("%s/conc=%d/gap=%dns", mode.name, tc.conc, tc.gapNs), func(b *testing.B) {
				const pairs = 4096
				st := benchHTTPStream(pairs, tc.conc, tc.gapNs, false)
				if mode.queued {
					st = st.queued()
				}
				_, samples := st.contiguous()
				var out output.Writer
				switch format {
				case "json":
					out = output.NewJSON(io.Discard, output.Options{})
				case "text":
					out = output.NewText(io.Discard, nil, output.Options{})
				}
				records := 0
				corr := timeline.New(timeline.DefaultConfig(), func(c *timeline.Connection) {
					records++
					if out != nil {
						out.Connection(c)
					}
				})
				var d Decoder
				d.MonoToUnix = 1_700_000_000_000_000_000
				var ev timeline.Event
				// Replays the samples for ever with new cookies and later
				// times, by rewriting the two fields in the sample.
				j, pass, total := 0, uint64(0), 0
				span := uint64(st.events) * uint64(tc.gapNs)
				add := func(e *timeline.Event) {
					e.Cookie += pass * 2 * pairs
					e.Time += int64(pass * span)
					corr.Add(e)
					if total++; total&4095 == 0 {
						corr.Advance(e.Time)
						if out != nil {
							out.Flush()
						}
					}
				}
				step := func(n int) {
					for end := total + n; total < end; {
						if err := d.Decode(samples[j], &ev, add); err != nil {
							b.Fatal(err)
						}
						if j++; j == len(samples) {
							j = 0
							pass++
						}
					}
				}
				step(4 * st.events) // warm up: 4 passes
				warm := records
				b.ReportAllocs()
				b.ResetTimer()
				step(b.N)
				b.StopTimer()
				reportRate(b, b.N)
				b.ReportMetric(float64(b.N)/float64(max(records-warm, 1)), "events/record")
			})
		}
	}
}
