package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// otherValue replaces the open-ended label values (ports, containers,
// extra labels) of a series that found its family full.
const otherValue = "~other"

// family keeps the series of one metric vec within bounds: at most max label
// sets, each deleted once not updated for ttl. Past max, a new label set is
// folded: its open-ended labels become "~other" while its enumerated ones
// (role, outcome, reason, direction: fixed vocabularies) are kept, so the
// overflow stays readable and bounded by the product of those vocabularies.
//
// It is used from one goroutine only (the session's); the vec it feeds is
// safe for the HTTP handler to collect concurrently.
type family[T any] struct {
	name   string
	fixed  []bool // per label: an enumerated label, kept when folding
	max    int
	series map[string]*series[T]
	with   func(values ...string) T
	delete func(values ...string) bool
	folds  prometheus.Counter
	key    []byte // scratch for the map key
}

type series[T any] struct {
	values []string
	metric T
	seen   int64 // Unix ns of the last update
}

// get returns the child for values (which it may overwrite when folding),
// creating it if needed; now marks it as used.
func (f *family[T]) get(values []string, now int64) T {
	f.key = appendKey(f.key[:0], values)
	if s, ok := f.series[string(f.key)]; ok {
		s.seen = now
		return s.metric
	}
	if len(f.series) >= f.max {
		f.folds.Inc()
		for i := range values {
			if !f.fixed[i] {
				values[i] = otherValue
			}
		}
		f.key = appendKey(f.key[:0], values)
		if s, ok := f.series[string(f.key)]; ok {
			s.seen = now
			return s.metric
		}
	}
	s := &series[T]{values: slices.Clone(values), metric: f.with(values...), seen: now}
	f.series[string(f.key)] = s
	return s.metric
}

// expire deletes the series not updated since before.
func (f *family[T]) expire(before int64) {
	for k, s := range f.series {
		if s.seen < before {
			f.delete(s.values...)
			delete(f.series, k)
		}
	}
}

// appendKey joins label values with a byte that no UTF-8 text contains.
func appendKey(b []byte, values []string) []byte {
	for _, v := range values {
		b = append(b, v...)
		b = append(b, 0xff)
	}
	return b
}
