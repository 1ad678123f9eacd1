package sqlstore

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

const traceparent = `{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`

var decodeCases = []string{
	traceparent,
	`{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}`,
	`{}`,
	`{"a":"1","b":"2","a":"3"}`,
	`{"":""}`,
	`{"":"v","k":""}`,
	`{"k":"a\"b"}`,
	`{"k":"a\\b"}`,
	`{"k":"\u003c\u0026\u003e"}`,
	`{"\n":"\t"}`,
	`{"k":"v\u00e9"}`,
	`{"k":"é😀"}`,
	"{\"k\":\"\xff\"}",
	"{\"k\":\"\x00\"}",
	"{\"k\":\"\x7f\"}",
	`{"k":"\ud800"}`,
	` {"k":"v"}`,
	`{"k":"v"} `,
	`{ "k" : "v" }`,
	"{\"k\":\"v\"}\n",
	`null`,
	` null `,
	`{"k":null}`,
	`{"k":1}`,
	`{"k":"v",}`,
	`{"k":"v"`,
	`{"k":"v"}}`,
	`{"k":"v"}x`,
	`{"k":"v"}{}`,
	`{"k"}`,
	`{"k":}`,
	`{"k""v"}`,
	`{"k":"v""k2":"v2"}`,
	`{,}`,
	`{`,
	`}`,
	`{}}`,
	`[]`,
	`"x"`,
	`{"k":"v`,
	`{"k`,
	`{"k":"v",`,
	``,
	`{"k":"v";"a":"b"}`,
}

func TestDecodeMetadata(t *testing.T) {
	for _, s := range decodeCases {
		checkDecode(t, s)
	}
}

// TestMetadataFastPathTaken: a trace context takes the fast paths (their
// allocations, not encoding/json's 10 and 4), which the comparisons above
// cannot tell from the fallback.
func TestMetadataFastPathTaken(t *testing.T) {
	m, err := decodeMetadata(traceparent)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = decodeMetadata(traceparent) }); n > 2 {
		t.Errorf("decodeMetadata: %.0f allocations, want at most 2 (the map)", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = encodeMetadata(m) }); n > 1 {
		t.Errorf("encodeMetadata: %.0f allocations, want 1 (the result)", n)
	}
}

func checkDecode(t *testing.T, s string) {
	t.Helper()
	got, err := decodeMetadata(s)
	var want map[string]string
	wantErr := json.Unmarshal([]byte(s), &want)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeMetadata(%q) = %#v, %v; encoding/json: %#v, %v", s, got, err, want, wantErr)
	}
	if err == nil {
		checkEncode(t, got)
	}
}

var encodeCases = []map[string]string{
	nil,
	{},
	{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "congo=t61rcWkgMzE"},
	{"": ""},
	{"b": "2", "a": "1", "c": "", "": "0", "B": "x", "a ": "y"},
	{"k": `a"b`},
	{"k": `a\b`},
	{"html": "<script>&amp;</script>"},
	{"k": "\x00\n\t\x7f"},
	{"é": "😀", "k": "\u2028\u2029"},
	{"k\xff": "\xfe"},
	{"1": "", "2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": "", "10": ""},
}

func TestEncodeMetadata(t *testing.T) {
	for _, m := range encodeCases {
		checkEncode(t, m)
	}
}

func checkEncode(t *testing.T, m map[string]string) {
	t.Helper()
	got, err := encodeMetadata(m)
	want, wantErr := json.Marshal(m)
	if got != string(want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("encodeMetadata(%#v) = %q, %v; json.Marshal: %q, %v", m, got, err, want, wantErr)
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range decodeCases {
		f.Add(s)
	}
	f.Fuzz(checkDecode)
}

func FuzzEncodeMetadata(f *testing.F) {
	for _, m := range encodeCases {
		var kv [6]string
		i := 0
		for k, v := range m {
			if i < len(kv) {
				kv[i], kv[i+1] = k, v
				i += 2
			}
		}
		f.Add(kv[0], kv[1], kv[2], kv[3], kv[4], kv[5])
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		checkEncode(t, map[string]string{k1: v1})
		checkEncode(t, map[string]string{k1: v1, k2: v2})
		checkEncode(t, map[string]string{k1: v1, k2: v2, k3: v3})
	})
}

// BenchmarkMetadata compares the fast paths with encoding/json on a
// traceparent, the metadata every event carries with tracing on.
func BenchmarkMetadata(b *testing.B) {
	m, err := decodeMetadata(traceparent)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"decode/fast", func() error { _, err := decodeMetadata(traceparent); return err }},
		{"decode/json", func() error { var m map[string]string; return json.Unmarshal([]byte(traceparent), &m) }},
		{"encode/fast", func() error { _, err := encodeMetadata(m); return err }},
		{"encode/json", func() error { _, err := json.Marshal(m); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
