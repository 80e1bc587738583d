package output

// The compact JSON form (--compact): a record without the members that say
// nothing — null, false, 0, "", [] and {} at the top level of a line —
// for fleets that ship every record. A consumer reads an absent member as
// its empty value; schema_version and type are always there. It costs one
// pass over each line and saves about a third of a clean connection's
// bytes (1,638 to 1,025 in TestCompactJSON).

// write sends the line, compacted when asked.
func (j *JSON) write() error {
	if j.opts.Compact {
		j.compactBuf = compactLine(j.compactBuf[:0], j.buf)
		j.buf, j.compactBuf = j.compactBuf, j.buf
	}
	return j.base.write()
}

// compactLine copies the JSON object line src into dst without its empty
// top-level members.
func compactLine(dst, src []byte) []byte {
	if len(src) < 2 || src[0] != '{' {
		return append(dst, src...)
	}
	dst = append(dst, '{')
	first := true
	i := 1
	for i < len(src) && src[i] != '}' {
		if src[i] == ',' {
			i++
		}
		keyStart := i
		keyEnd := skipValue(src, i) // the key is a string
		valStart := keyEnd + 1      // past ':'
		valEnd := skipValue(src, valStart)
		key, val := src[keyStart:keyEnd], src[valStart:valEnd]
		if keep(key, val) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, src[keyStart:valEnd]...)
		}
		i = valEnd
	}
	return append(dst, src[i:]...) // "}\n"
}

// skipValue returns the end of the JSON value that starts at i.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return i
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipValue(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for ; i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']'; i++ {
	}
	return i
}

func keep(key, val []byte) bool {
	switch string(key) {
	case `"schema_version"`, `"type"`:
		return true
	}
	switch string(val) {
	case "null", "false", "0", "0.000", `""`, "[]", "{}":
		return false
	}
	return true
}
