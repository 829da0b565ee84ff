package cluster

import (
	"bytes"
	"encoding/json"
	"sort"
)

// splitItems finds the "items" array of a top-level JSON object without
// decoding it: it returns each element's bytes and the object with the
// array emptied (to decode for the rest). ok is false when data is not
// such an object or is not well formed; the caller then decodes it the
// slow way, which reports what is wrong. Elements are not validated here:
// the caller decodes those it has not seen byte for byte before.
func splitItems(data []byte) (rest []byte, items []json.RawMessage, ok bool) {
	data = bytes.TrimSpace(data)
	rest, spans, _, ok := splitSpans(data)
	for _, sp := range spans {
		items = append(items, data[sp.start:sp.end])
	}
	return rest, items, ok
}

// span is where one item lies in the file: data[start:end].
type span struct{ start, end int }

// splitSpans is splitItems on data with no space around it, giving each
// item's place in data and the items array's brackets (arr.start, the
// '[', and arr.end, the ']').
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

// resplit is splitSpans on data from the split of old (its items and the
// items array's brackets), when the two differ in one stretch inside the
// items array: the items before the stretch keep their places, those
// after it keep theirs shifted by the change in length, and only the
// stretch is scanned. reused[i] is, for the i-th item, the index of the
// same bytes among old's items, or -1. ok is false when the change
// reaches outside the items array or the stretch is not plain objects
// between commas; the caller then splits the whole file.
func resplit(old []byte, oldItems []span, oldArr span, data []byte) (items []span, reused []int, arr span, ok bool) {
	pre := commonPrefix(old, data)
	if pre == len(old) && pre == len(data) {
		reused = make([]int, len(oldItems))
		for i := range reused {
			reused[i] = i
		}
		return oldItems, reused, oldArr, true
	}
	suf := commonSuffix(old[pre:], data[pre:])
	oldEnd, delta := len(old)-suf, len(data)-len(old) // old[pre:oldEnd] is now data[pre:oldEnd+delta]
	if pre <= oldArr.start || oldEnd > oldArr.end {
		return nil, nil, arr, false
	}
	n := len(oldItems)
	a := sort.Search(n, func(i int) bool { return oldItems[i].end >= pre })     // the first item touched
	b := sort.Search(n, func(i int) bool { return oldItems[i].start > oldEnd }) // the first one after the change
	from, to := oldArr.start+1, oldArr.end
	if a > 0 {
		from = oldItems[a-1].end
	}
	if b < n {
		to = oldItems[b].start
	}
	if to+delta < from {
		return nil, nil, arr, false
	}
	mid, ok := splitStretch(data[from:to+delta], a > 0, b < n)
	if !ok {
		return nil, nil, arr, false
	}
	items = make([]span, 0, a+len(mid)+n-b)
	reused = make([]int, 0, cap(items))
	for i := range a {
		items, reused = append(items, oldItems[i]), append(reused, i)
	}
	for _, m := range mid {
		items, reused = append(items, span{from + m.start, from + m.end}), append(reused, -1)
	}
	for i := b; i < n; i++ {
		items, reused = append(items, span{oldItems[i].start + delta, oldItems[i].end + delta}), append(reused, i)
	}
	return items, reused, span{oldArr.start, oldArr.end + delta}, true
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

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b []byte) int {
	n, i := min(len(a), len(b)), 0
	for ; i+4096 <= n && bytes.Equal(a[i:i+4096], b[i:i+4096]); i += 4096 {
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// commonSuffix is the length of the longest common suffix of a and b.
func commonSuffix(a, b []byte) int {
	n, i := min(len(a), len(b)), 0
	for ; i+4096 <= n && bytes.Equal(a[len(a)-i-4096:len(a)-i], b[len(b)-i-4096:len(b)-i]); i += 4096 {
	}
	for i < n && a[len(a)-i-1] == b[len(b)-i-1] {
		i++
	}
	return i
}
