package output

// Where a connection record is built. A record is 1.3 to 2 KB: built in
// the writer's own buffer, it is then copied into the bufio.Writer's. When
// the bufio.Writer has room for it, it is built there instead
// (bufio.Writer.AvailableBuffer), and the Write that ends it copies
// nothing: copy skips a move onto itself.

// lineRoom is the free space the bufio.Writer must have for a record to be
// built in it; more once a record has needed more (the own buffer's size).
const lineRoom = 4 << 10

// startLine returns the buffer to build a line in. --compact always builds
// in the own buffer: it rewrites the line before writing it.
func (j *JSON) startLine() []byte {
	j.lineCap = 0
	if j.err == nil && !j.opts.Compact && j.w.Available() >= max(lineRoom, cap(j.buf)) {
		b := j.w.AvailableBuffer()
		j.lineCap = cap(b)
		return b
	}
	return j.buf[:0]
}

// endLine writes a line begun with startLine.
func (j *JSON) endLine(b []byte) error {
	if j.lineCap == 0 || cap(b) != j.lineCap {
		// Built in the own buffer, or grown out of the bufio.Writer's:
		// kept as the own buffer, for the next line.
		j.buf = b
		return j.write()
	}
	if j.err == nil {
		_, j.err = j.w.Write(b)
	}
	return j.err
}
