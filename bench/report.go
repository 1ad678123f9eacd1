package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"
)

// system is one contestant.
type system int

const (
	sysLib system = iota
	sysPeer
	sysRaw
	nSystems
)

var systemNames = [nSystems]string{"eventbus", "watermill-sql", "raw SQL"}

// row is one line of the table: a figure per system and per round.
type row struct {
	name   string
	unit   string
	better int // +1: higher is better; -1: lower is better
	vals   [nSystems][]float64
	note   string
}

func newRow(name, unit string, better int) *row {
	return &row{name: name, unit: unit, better: better}
}

func (r *row) add(s system, v float64) { r.vals[s] = append(r.vals[s], v) }

func median(v []float64) float64 {
	var xs []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

// ratio is the median of per-round ratios lib/other: figures measured side
// by side in the same round are compared with each other, so that drift in
// the machine's load between rounds cancels out.
func (r *row) ratio(other system) float64 {
	a, b := r.vals[sysLib], r.vals[other]
	var rs []float64
	for i := 0; i < len(a) && i < len(b); i++ {
		if b[i] != 0 && !math.IsNaN(a[i]) && !math.IsNaN(b[i]) {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 && len(a) > 0 && len(b) > 0 {
		return median(a) / median(b)
	}
	return median(rs)
}

func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "—"
	}
	switch unit {
	case "ms":
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 2, 64)
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	case "MiB":
		return strconv.FormatFloat(v, 'f', 1, 64)
	case "×":
		return strconv.FormatFloat(v, 'f', 2, 64) + "×"
	}
	return thousands(int64(math.Round(v)))
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func formatRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

// writeTable prints the rows as one markdown table, then every round's
// figures so that the medians can be checked.
func writeTable(w io.Writer, rows []*row) {
	fmt.Fprintln(w, "| Scenario | Unit | eventbus | watermill-sql | raw SQL | eventbus ÷ watermill | eventbus ÷ raw |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		dir := "↑"
		if r.better < 0 {
			dir = "↓"
		}
		name := r.name
		if r.note != "" {
			name += " (" + r.note + ")"
		}
		vsPeer, vsRaw := formatRatio(r.ratio(sysPeer)), formatRatio(r.ratio(sysRaw))
		if r.unit == "×" || r.unit == "events" {
			vsPeer, vsRaw = "", "" // a ratio of ratios, or of counts of lost events, says nothing
		}
		fmt.Fprintf(w, "| %s | %s %s | %s | %s | %s | %s | %s |\n", name, r.unit, dir,
			formatValue(median(r.vals[sysLib]), r.unit), formatValue(median(r.vals[sysPeer]), r.unit),
			formatValue(median(r.vals[sysRaw]), r.unit), vsPeer, vsRaw)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "<details><summary>Every round</summary>")
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "- %s:", r.name)
		for s := range nSystems {
			if len(r.vals[s]) == 0 {
				continue
			}
			var parts []string
			for _, v := range r.vals[s] {
				parts = append(parts, formatValue(v, r.unit))
			}
			fmt.Fprintf(w, " %s [%s];", systemNames[s], strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
}

// writeHeader prints the machine, versions and flags of the run.
func writeHeader(w io.Writer, cfg *config, server, settings string) {
	fmt.Fprintf(w, "### %s — %s\n\n", cfg.db, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `cd bench && go run . %s`\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(w, "- machine: %s, %d cores, %s RAM, %s\n", cpuModel(), runtime.NumCPU(), memTotal(), kernel())
	fmt.Fprintf(w, "- versions: %s; eventbus %s; %s; %s\n", runtime.Version(), libVersion(), depVersion("github.com/ThreeDotsLabs/watermill-sql/v4"), depVersion("github.com/ThreeDotsLabs/watermill"))
	fmt.Fprintf(w, "- server: %s (%s)\n", server, settings)
	fmt.Fprintf(w, "- workload: payload %d bytes of JSON, %d producers, backlog %s events, %d rounds alternating eventbus / watermill-sql / raw SQL; medians, ratios are medians of per-round ratios\n",
		len(payloadOf(0, senderOf(0, 1000))), cfg.producers, thousands(int64(cfg.n)), cfg.rounds)
	fmt.Fprintf(w, "- eventbus: default options (LimitPerRun 500, ConsumeConcurrent 16, RunInterval 200ms) unless a row says otherwise; watermill-sql: default subscriber and schema (batch %d, poll %s) unless a row says otherwise\n\n",
		wmDefaultBatch, wmDefaultPoll)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

// libVersion is the library's git commit (the bench module replaces it with ../).
func libVersion() string {
	out, err := exec.Command("git", "-C", "..", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "(unknown commit)"
	}
	return strings.TrimSpace(string(out))
}

func depVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return path[strings.Index(path, "/")+1:] + " " + d.Version
			}
		}
	}
	return path + " (unknown)"
}
