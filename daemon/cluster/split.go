package cluster

import (
	"bytes"
	"encoding/json"
)

// splitItems finds the "items" array of a top-level JSON object without
// decoding it: it returns each element's bytes and the object with the
// array emptied (to decode for the rest). ok is false when data is not
// such an object or is not well formed; the caller then decodes it the
// slow way, which reports what is wrong. Elements are not validated here:
// the caller decodes those it has not seen byte for byte before.
func splitItems(data []byte) (rest []byte, items []json.RawMessage, ok bool) {
	data = bytes.TrimSpace(data)
	if len(data) < 2 || data[0] != '{' {
		return nil, nil, false
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
				return nil, nil, false
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
					return nil, nil, false
				}
				elemStart, i = i, end
				continue
			}
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return nil, nil, false
			}
			if depth == 1 && arrStart >= 0 && arrEnd < 0 && c == ']' {
				if afterComma && elemStart < 0 {
					return nil, nil, false // a trailing comma
				}
				if elemStart >= 0 {
					items = append(items, bytes.TrimSpace(data[elemStart:i]))
				}
				arrEnd = i
			}
			if depth == 0 && i != len(data)-1 {
				return nil, nil, false // something after the object
			}
		case ',':
			if depth == 2 && arrStart >= 0 && arrEnd < 0 {
				if elemStart < 0 {
					return nil, nil, false // an empty element
				}
				items = append(items, bytes.TrimSpace(data[elemStart:i]))
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
		return nil, nil, false
	}
	rest = make([]byte, 0, len(data)-(arrEnd-arrStart)+2)
	rest = append(append(append(rest, data[:arrStart]...), "[]"...), data[arrEnd+1:]...)
	return rest, items, true
}

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
