package tracer

import (
	"bufio"
	"compress/gzip"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/tracer/timeline"
)

// The figures a socket's ESTABLISHED and CLOSE transitions carry (struct
// est_figures and tcp_figures in bpf/types.h, in the record of those
// entries).

func (d *Decoder) setEstFigures(e *timeline.Event, f *tcptraceEstFigures) {
	e.BytesAcked, e.BytesReceived = f.BytesAcked, f.BytesReceived
	e.SRTT = f.SrttUs >> 3 // the kernel keeps srtt_us scaled by 8
	e.TotalRetrans = f.TotalRetrans
	e.Info.Known = true
	e.Info.SndUna, e.Info.RcvNxt = f.SndUna, f.RcvNxt
	d.clock.sample(e.Time, f.Jiffies)
}

// setFigures decodes the figures of a socket's end, read at CLOSE.
func (d *Decoder) setFigures(e *timeline.Event, f *tcptraceTcpFigures) {
	d.setEstFigures(e, &f.Base)
	e.SockSynRetries, e.UserTimeout = f.SynRetries, f.UserTimeout
	in := &e.Info
	in.End = true
	in.WriteSeq = f.WriteSeq
	in.Cwnd, in.Ssthresh, in.MinRTT = f.Cwnd, f.Ssthresh, f.MinRttUs
	in.Delivered, in.Lost, in.Reordering = f.Delivered, f.Lost, f.Reordering
	in.SndMSS, in.RcvMSS, in.DSACKDups = f.SndMss, f.RcvMss, f.DsackDups
	in.Probes = f.Probes
	// As tcpi_busy_time: the time busy sending, limited or not.
	in.Busy = d.clock.ns(f.Busy + f.RwndLimited + f.SndbufLimited)
	in.RwndLimited = d.clock.ns(f.RwndLimited)
	in.SndbufLimited = d.clock.ns(f.SndbufLimited)
	in.StalledFor = d.clock.ns(f.StalledFor)
}

// decodeStall turns a stall notice into an EventStall.
// The notice is a record of kind RECORD_STALL: one entry (its local port),
// the figures read now.
func (d *Decoder) decodeStall(r *rawRecord, e *timeline.Event, now int64) bool {
	laddr, raddr, ok := addrs(r.Family, &r.Saddr, &r.Daddr)
	if !ok {
		return false
	}
	*e = timeline.Event{Time: now, Cookie: r.Cookie, Type: timeline.EventStall, NewState: timeline.StateEstablished,
		LAddr: laddr, RAddr: raddr, LPort: r.Ev[0].Sport, RPort: r.Dport, NetNS: r.Netns,
		PID: r.Pid, Comm: d.comm(&r.Comm), Cgroup: r.Cgroup}
	d.setFigures(e, &r.Closed)
	e.Info.End = false // the socket lives on: not its end's figures
	return e.Info.StalledFor > 0
}

// stallAfterJiffies is the spell a flush scan reports, in jiffies: 0 (off)
// while the tick rate is unknown.
func (d *Decoder) stallAfterJiffies(after time.Duration) uint64 {
	if d.clock.hz == 0 || after <= 0 {
		return 0
	}
	return uint64(after.Seconds() * float64(d.clock.hz))
}

// retransKind unpacks an EVENT_RETRANSMIT's reason: the kind, and the
// timeouts backed off before in its high byte.
func retransKind(reason uint16) (timeline.RetransKind, uint8) {
	return timeline.RetransKind(reason & 0xff), uint8(reason >> 8)
}

// jiffyClock turns the kernel's jiffies (the chrono statistics) into ns.
// The tick rate comes from the kernel's configuration (CONFIG_HZ) or,
// where none is readable, from two samples of jiffies a second apart.
type jiffyClock struct {
	hz int
	// The earliest and the latest samples seen, by time. Samples come out
	// of order: a record's figures are as old as its entries, which wait
	// in the kernel's queue until the socket closes, while a flush scan's
	// sample is of the moment it ran.
	first, last jiffySample
}

type jiffySample struct {
	ns      int64
	jiffies uint64
}

// kernelHZ reads CONFIG_HZ from /proc/config.gz or /boot/config-RELEASE;
// 0 when neither says.
func kernelHZ() int {
	var u unix.Utsname
	_ = unix.Uname(&u)
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if z, err := gzip.NewReader(f); err == nil {
			if hz := configHZ(z); hz > 0 {
				return hz
			}
		}
	}
	if f, err := os.Open("/boot/config-" + unix.ByteSliceToString(u.Release[:])); err == nil {
		defer f.Close()
		return configHZ(f)
	}
	return 0
}

func configHZ(r io.Reader) int {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_HZ="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// sample learns HZ from the earliest and the latest (time, jiffies)
// pairs once they are at least a second apart, rounded to the rates Linux
// offers.
func (c *jiffyClock) sample(ns int64, jiffies uint64) {
	if c.hz != 0 || jiffies == 0 {
		return
	}
	s := jiffySample{ns, jiffies}
	if c.first.ns == 0 || ns < c.first.ns {
		c.first = s
	}
	if ns > c.last.ns {
		c.last = s
	}
	dt := c.last.ns - c.first.ns
	if dt < 1e9 || c.last.jiffies <= c.first.jiffies {
		return
	}
	rate := float64(c.last.jiffies-c.first.jiffies) / (float64(dt) / 1e9)
	best := 0
	for _, hz := range []int{100, 250, 300, 1000} {
		if best == 0 || math.Abs(rate-float64(hz)) < math.Abs(rate-float64(best)) {
			best = hz
		}
	}
	c.hz = best
}

// ns converts jiffies to ns, -1 while the rate is unknown.
func (c *jiffyClock) ns(jiffies uint32) int64 {
	if c.hz == 0 {
		return -1
	}
	return int64(jiffies) * (1e9 / int64(c.hz))
}
