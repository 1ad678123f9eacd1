package sqlstore

import (
	"encoding/json"
	"slices"
	"strings"
)

// Event metadata is stored as the JSON object json.Marshal writes for a
// map[string]string. With tracing on every event carries a traceparent, and
// encoding/json cost ~1.0 µs and 10 allocations to decode it (~15% of the
// bus's per-event CPU on a no-op handler) and ~0.34 µs / 4 allocations to
// encode it. The fast paths below handle only the plain shape json.Marshal
// writes for printable-ASCII text; anything else goes to encoding/json, so
// results and errors are always exactly encoding/json's.

// decodeMetadata is json.Unmarshal of s into a nil map[string]string. Its
// fast path allocates only the map: keys and values are substrings of s.
func decodeMetadata(s string) (map[string]string, error) {
	if n, ok := plainObjectLen(s); ok {
		m := make(map[string]string, n)
		for i := 1; n > 0; n-- { // s[i] opens a key; s was checked above
			k, _ := plainString(s, i)
			i += len(k) + 3
			v, _ := plainString(s, i)
			i += len(v) + 3
			m[k] = v // the last of duplicate keys wins, as in encoding/json
		}
		return m, nil
	}
	var m map[string]string
	err := json.Unmarshal([]byte(s), &m)
	return m, err
}

// plainObjectLen reports the number of entries of s when s is exactly
// {"k":"v",...} with no whitespace and only plainByte inside the strings.
func plainObjectLen(s string) (int, bool) {
	if len(s) < 2 || s[0] != '{' {
		return 0, false
	}
	if s == "{}" {
		return 0, true
	}
	n := 0
	for i := 1; ; {
		k, ok := plainString(s, i)
		if !ok || i+len(k)+2 >= len(s) || s[i+len(k)+2] != ':' {
			return 0, false
		}
		i += len(k) + 3
		v, ok := plainString(s, i)
		if !ok || i+len(v)+2 >= len(s) {
			return 0, false
		}
		i += len(v) + 2
		n++
		switch {
		case s[i] == '}' && i == len(s)-1:
			return n, true
		case s[i] == ',':
			i++
		default:
			return 0, false
		}
	}
}

// plainString returns the contents of the string opening at s[i] when they
// are plain bytes and the closing quote follows.
func plainString(s string, i int) (string, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return s[i+1 : j], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false
		}
	}
	return "", false
}

// encodeMetadata is json.Marshal of m, byte for byte. Its fast path, for
// keys and values that json.Marshal writes unescaped, allocates only the
// result (and the key list when there are more than 8 keys).
func encodeMetadata(m map[string]string) (string, error) {
	if m == nil {
		return "null", nil
	}
	var buf [8]string
	keys := buf[:0]
	size := 1 // "{" with "}" taking the place of the last ","
	for k, v := range m {
		if !unescaped(k) || !unescaped(v) {
			b, err := json.Marshal(m)
			return string(b), err
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 6 // "k":"v",
	}
	if len(keys) == 0 {
		return "{}", nil
	}
	slices.Sort(keys) // json.Marshal sorts map keys
	var b strings.Builder
	b.Grow(size)
	for i, k := range keys {
		if i == 0 {
			b.WriteString(`{"`)
		} else {
			b.WriteString(`,"`)
		}
		b.WriteString(k)
		b.WriteString(`":"`)
		b.WriteString(m[k])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// unescaped reports whether json.Marshal writes s as is: printable ASCII
// other than the quote, the backslash and the HTML-escaped <, > and &.
func unescaped(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
