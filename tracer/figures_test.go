package tracer

import "testing"

// The tick rate is learned from two samples a second apart or more, in
// whatever order they come: a flush scan's sample of now may arrive before
// the figures of a record whose entries waited in the kernel since.
func TestJiffyClockLearnsFromSamplesOutOfOrder(t *testing.T) {
	for _, hz := range []int{100, 250, 300, 1000} {
		at := func(sec float64) (int64, uint64) {
			return int64(sec * 1e9), 4294667296 + uint64(sec*float64(hz))
		}
		var c jiffyClock
		c.sample(at(2.5)) // a flush scan during the connection
		c.sample(at(3.0)) // the scan after
		if got := c.ns(1); got != -1 {
			t.Fatalf("HZ=%d: learned from samples 0.5 s apart: %d ns a jiffy", hz, got)
		}
		c.sample(at(0)) // the record's ESTABLISHED figures, queued until now
		if got, want := c.ns(1), int64(1e9/hz); got != want {
			t.Errorf("HZ=%d: a jiffy is %d ns, want %d", hz, got, want)
		}
	}
}

// A sample with no jiffies (a flush scan that met no full socket) is no
// sample: it would pair a stale count with the time of now.
func TestJiffyClockIgnoresZero(t *testing.T) {
	var c jiffyClock
	c.sample(1e9, 1000)
	c.sample(5e9, 0)
	if c.hz != 0 {
		t.Fatalf("learned %d Hz from a sample without jiffies", c.hz)
	}
	c.sample(3e9, 1000+2*250)
	if c.hz != 250 {
		t.Fatalf("learned %d Hz, want 250", c.hz)
	}
}
