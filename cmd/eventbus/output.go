package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// printJSON writes v as indented JSON.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.io.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows under header, aligned.
func (c *cli) table(header []string, rows [][]string) error {
	w := tabwriter.NewWriter(c.io.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

// list prints v as JSON with --json, else table under header (nothing
// when it is empty: the caller says so).
func (c *cli) list(v any, header []string, table [][]string) error {
	if c.json {
		return c.printJSON(v)
	}
	if len(table) == 0 {
		return nil
	}
	return c.table(header, table)
}

// fields writes label: value lines, aligned.
func (c *cli) fields(kv ...string) error {
	w := tabwriter.NewWriter(c.io.out, 0, 4, 1, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(w, "%s:\t%s\n", kv[i], kv[i+1])
	}
	return w.Flush()
}

// say writes a line of human output (nothing with --json: the JSON is the output).
func (c *cli) say(format string, args ...any) {
	if !c.json {
		fmt.Fprintf(c.io.out, format+"\n", args...)
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtAge(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// firstLine shortens a stored error (a panic's stack) for a table.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
