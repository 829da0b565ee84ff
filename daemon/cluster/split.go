package cluster

import (
	"bytes"
	"hash/maphash"
)

// span is where one item lies in the file: data[start:end].
type span struct{ start, end int }

// splitSpans finds the "items" array of a top-level JSON object (data,
// with no space around it) without decoding it: it returns each
// element's place in data, the items array's brackets (arr.start, the
// '[', and arr.end, the ']'), and the object with the array emptied (to
// decode for the rest). ok is false when data is not such an object or is
// not well formed; the caller then decodes it the slow way, which reports
// what is wrong. Elements are not validated here: the caller decodes
// those it has not seen byte for byte before.
func splitSpans(data []byte) (rest []byte, items []span, arr span, ok bool) {
	if len(data) < 2 || data[0] != '{' {
		return nil, nil, arr, false
	}
	depth := 0
	arrStart, arrEnd := -1, -1 // the items array's '[' and ']'
	elemStart := -1
	afterComma := false // an element must follow
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			end := stringEnd(data, i)
			if end < 0 {
				return nil, nil, arr, false
			}
			if depth == 1 && arrStart < 0 && string(data[i:end+1]) == `"items"` {
				j := skipSpace(data, end+1)
				if j < len(data) && data[j] == ':' {
					if k := skipSpace(data, j+1); k < len(data) && data[k] == '[' {
						arrStart, i, depth = k, k, depth+1
						elemStart = -1
						continue
					}
				}
			}
			if depth == 2 && arrEnd < 0 && arrStart >= 0 && elemStart < 0 {
				elemStart = i
			}
			i = end
		case '{', '[':
			if depth == 2 && arrEnd < 0 && arrStart >= 0 && elemStart < 0 {
				// An item: straight to its end.
				end := compositeEnd(data, i)
				if end < 0 {
					return nil, nil, arr, false
				}
				elemStart, i = i, end
				continue
			}
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return nil, nil, arr, false
			}
			if depth == 1 && arrStart >= 0 && arrEnd < 0 && c == ']' {
				if afterComma && elemStart < 0 {
					return nil, nil, arr, false // a trailing comma
				}
				if elemStart >= 0 {
					items = append(items, trimmed(data, elemStart, i))
				}
				arrEnd = i
			}
			if depth == 0 && i != len(data)-1 {
				return nil, nil, arr, false // something after the object
			}
		case ',':
			if depth == 2 && arrStart >= 0 && arrEnd < 0 {
				if elemStart < 0 {
					return nil, nil, arr, false // an empty element
				}
				items = append(items, trimmed(data, elemStart, i))
				elemStart, afterComma = -1, true
			}
		case ' ', '\t', '\n', '\r':
		default:
			if depth == 2 && arrStart >= 0 && arrEnd < 0 && elemStart < 0 {
				elemStart = i // a number, true, false or null
			}
		}
	}
	if depth != 0 || arrStart < 0 || arrEnd < 0 {
		return nil, nil, arr, false
	}
	rest = make([]byte, 0, len(data)-(arrEnd-arrStart)+2)
	rest = append(append(append(rest, data[:arrStart]...), "[]"...), data[arrEnd+1:]...)
	return rest, items, span{arrStart, arrEnd}, true
}

// trimmed is data[start:end] without the space at its end (an item
// starts where its first byte is).
func trimmed(data []byte, start, end int) span {
	for end > start && isSpace(data[end-1]) {
		end--
	}
	return span{start, end}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// stringEnd returns the index of the quote that closes the string
// opening at i, or -1: the next quote not escaped by an odd run of
// backslashes.
func stringEnd(data []byte, i int) int {
	for j := i + 1; ; {
		k := bytes.IndexByte(data[j:], '"')
		if k < 0 {
			return -1
		}
		j += k
		n := 0
		for b := j - 1; b > i && data[b] == '\\'; b-- {
			n++
		}
		if n%2 == 0 {
			return j
		}
		j++
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// compositeEnd returns the index of the bracket that closes the object or
// array opening at i, or -1. It only counts brackets outside strings: the
// item is validated when it is decoded.
func compositeEnd(data []byte, i int) int {
	depth := 0
	for ; i < len(data); i++ {
		switch data[i] {
		case '"':
			i++
			for i < len(data) && data[i] != '"' {
				if data[i] == '\\' {
					i++ // the escaped byte
				}
				i++
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return -1
}

// lastSplit is what resplit needs of the last file: not its bytes (a
// copy of the whole file kept for the next change would double the
// parser's memory), but the bytes around its items array, each item's
// place and the hash of its bytes.
type lastSplit struct {
	head, tail []byte // the file up to its items array's '[', and from its ']'
	arrEnd     int    // where that ']' was
	spans      []span
	hashes     []uint64
	seed       maphash.Seed
}

// resplit is splitSpans on data from the split of the last file, when the
// two differ in one stretch inside the items array: the items before the
// stretch are those found at their old places with their old bytes, the
// items after it likewise counted from the end, and only the stretch
// between is scanned. reused[i] is, for the i-th item, the index of the
// same bytes among the last file's items, or -1. ok is false when the
// bytes around the items array changed or the stretch is not plain
// objects between commas; the caller then splits the whole file.
func (l *lastSplit) resplit(data []byte) (items []span, reused []int, arr span, ok bool) {
	if l.head == nil || len(data) < len(l.head)+len(l.tail) || !bytes.HasPrefix(data, l.head) || !bytes.HasSuffix(data, l.tail) {
		return nil, nil, arr, false
	}
	arr = span{len(l.head) - 1, len(data) - len(l.tail)}
	delta := arr.end - l.arrEnd
	n := len(l.spans)
	unchanged := func(i int, s span) bool {
		return maphash.Bytes(l.seed, data[s.start:s.end]) == l.hashes[i]
	}
	// From the front: items where they were, after a separator.
	a, from := 0, arr.start+1
	for a < n {
		s := l.spans[a]
		if s.end > arr.end || !separator(data[from:s.start], a > 0) || !unchanged(a, s) {
			break
		}
		from = s.end
		a++
	}
	// From the back: items where they were, shifted, before a separator.
	b, to := n, arr.end
	for b > a {
		s := span{l.spans[b-1].start + delta, l.spans[b-1].end + delta}
		if s.start < from || s.end > to || !separator(data[s.end:to], b < n) || !unchanged(b-1, s) {
			break
		}
		to = s.start
		b--
	}
	mid, ok := splitStretch(data[from:to], a > 0, b < n)
	if !ok {
		return nil, nil, arr, false
	}
	items = make([]span, 0, a+len(mid)+n-b)
	reused = make([]int, 0, cap(items))
	for i := range a {
		items, reused = append(items, l.spans[i]), append(reused, i)
	}
	for _, m := range mid {
		items, reused = append(items, span{from + m.start, from + m.end}), append(reused, -1)
	}
	for i := b; i < n; i++ {
		items, reused = append(items, span{l.spans[i].start + delta, l.spans[i].end + delta}), append(reused, i)
	}
	return items, reused, arr, true
}

// separator tells whether s is what may stand between two items (space,
// one comma, space) or, when !comma, before the first or after the last
// (space only).
func separator(s []byte, comma bool) bool {
	i := skipSpace(s, 0)
	if comma {
		if i >= len(s) || s[i] != ',' {
			return false
		}
		i = skipSpace(s, i+1)
	}
	return i == len(s)
}

// splitStretch splits the bytes between two items of an array (or
// between the '[' and the first, or the last and the ']': lead and trail
// tell whether an item comes before and after) into the objects they
// hold. Only objects are taken; anything else is not ok.
func splitStretch(s []byte, lead, trail bool) ([]span, bool) {
	var items []span
	wantItem := !lead // what the array's grammar allows next
	for i := skipSpace(s, 0); i < len(s); i = skipSpace(s, i) {
		switch {
		case wantItem && s[i] == '{':
			end := compositeEnd(s, i)
			if end < 0 {
				return nil, false
			}
			items = append(items, span{i, end + 1})
			i = end + 1
		case !wantItem && s[i] == ',':
			i++
		default:
			return nil, false
		}
		wantItem = !wantItem
	}
	// An empty array, or one ending on an item; an item after must follow
	// a comma.
	switch {
	case trail:
		return items, wantItem
	case lead || len(items) > 0:
		return items, !wantItem
	}
	return items, true
}
