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
	fmt.Fprintf(w, "- eventbus: default options (LimitPerRun 500, ConsumeConcurrent 16, RunInterval 200ms) unless a row says otherwise; watermill-sql: default subscriber and schema (batch %d, poll %s) unless a row says otherwise\n",
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

// deliveryLine is one line of the delivery table: what one contestant's
// consumers were handed of the events it committed in one scenario, one
// counts per consumer and round.
type deliveryLine struct {
	scenario string
	sys      system
	runs     []counts
}

// deliveries collects the delivery lines of a run, in the order they were
// first added.
type deliveries struct {
	lines []*deliveryLine
}

// add closes the tallies of one round of a contestant in a scenario.
func (d *deliveries) add(scenario string, s system, ts ...*tally) {
	for _, t := range ts {
		d.addCounts(scenario, s, t.counts())
	}
}

func (d *deliveries) addCounts(scenario string, s system, c counts) {
	if c.lost+c.duplicated+c.reordered+c.strays > 0 {
		progress.Printf("%s, %s: %d committed, %d delivered, %d lost, %d duplicated, %d out of order, %d never committed",
			scenario, systemNames[s], c.committed, c.delivered, c.lost, c.duplicated, c.reordered, c.strays)
	}
	d.appendCounts(scenario, s, c)
}

// merge adds the lines of from (one run's, see measure) to d.
func (d *deliveries) merge(from *deliveries) {
	for _, l := range from.lines {
		for _, c := range l.runs {
			d.appendCounts(l.scenario, l.sys, c)
		}
	}
}

func (d *deliveries) appendCounts(scenario string, s system, c counts) {
	for _, l := range d.lines {
		if l.scenario == scenario && l.sys == s {
			l.runs = append(l.runs, c)
			return
		}
	}
	d.lines = append(d.lines, &deliveryLine{scenario: scenario, sys: s, runs: []counts{c}})
}

// sum adds up a line's runs.
func (l *deliveryLine) sum() counts {
	var t counts
	var p50, p99 []float64
	for _, c := range l.runs {
		t.committed += c.committed
		t.delivered += c.delivered
		t.lost += c.lost
		t.duplicated += c.duplicated
		t.reordered += c.reordered
		t.strays += c.strays
		p50, p99 = append(p50, c.p50), append(p99, c.p99)
	}
	t.p50, t.p99 = median(p50), median(p99)
	return t
}

// libFailure returns an error if eventbus lost an event, delivered one out
// of its sender's order, or delivered one that was never committed: the
// run then exits non-zero. A duplicate is within its at-least-once
// guarantee and only reported; so is anything a peer does.
func (d *deliveries) libFailure() error {
	var errs []string
	for _, l := range d.lines {
		if l.sys != sysLib {
			continue
		}
		if c := l.sum(); c.lost+c.reordered+c.strays > 0 {
			errs = append(errs, fmt.Sprintf("%s: %d lost, %d out of order, %d never committed", l.scenario, c.lost, c.reordered, c.strays))
		}
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("eventbus failed: %s", strings.Join(errs, "; "))
}

// writeDeliveries prints the delivery table: per scenario and contestant,
// the counters summed over every consumer and round, then every run's
// lost / duplicated / out-of-order figures.
func writeDeliveries(w io.Writer, cfg *config, d *deliveries) {
	if len(d.lines) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Delivery: summed over every consumer (service, consumer group, reader) and round; lost = committed and not handed to the consumer when the wait ended; out of order = handed after a later event of its sender; latency = commit-to-handler of the delivered events, median of the runs' percentiles.")
	if cfg.scenarios["correctness"] {
		slow := fmt.Sprintf("%.0f%% of the transactions wait %s-%s after their writes before their commit (drawn from the round's seed)", slowShare*100, slowMin, slowMax)
		if cfg.db == "sqlite" {
			slow = "no slow commits (SQLite commits in lock order)"
		}
		fmt.Fprintf(w, "Correctness runs: %s events at %s/s (Poisson arrivals), %d producers, %d senders (each sender's events committed one after the other by one producer), %s, one consumer per contestant live from the start and polling every %s; the wait ends when it has every event, or was handed nothing new for %s after the last commit (at most %s).\n",
			thousands(int64(cfg.correctN)), thousands(int64(cfg.correctRate)), cfg.producers, correctSenders, slow,
			cfg.correctPoll, correctGrace(cfg.correctPoll), correctLimit)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Scenario | Contestant | Consumer runs | Committed | Delivered | Lost | Duplicated | Out of order | p50 ms | p99 ms |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	// Per scenario, in the order the scenarios ran, the contestants in the
	// order of the speed table.
	first := map[string]int{}
	for i, l := range d.lines {
		if _, ok := first[l.scenario]; !ok {
			first[l.scenario] = i
		}
	}
	sort.SliceStable(d.lines, func(i, j int) bool {
		a, b := d.lines[i], d.lines[j]
		if first[a.scenario] != first[b.scenario] {
			return first[a.scenario] < first[b.scenario]
		}
		return a.sys < b.sys
	})
	for _, l := range d.lines {
		c := l.sum()
		delivered := thousands(int64(c.delivered))
		if c.strays > 0 {
			delivered += fmt.Sprintf(" (+%s never committed)", thousands(int64(c.strays)))
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", l.scenario, systemNames[l.sys], len(l.runs),
			thousands(int64(c.committed)), delivered, thousands(int64(c.lost)), thousands(int64(c.duplicated)),
			thousands(int64(c.reordered)), formatValue(c.p50, "ms"), formatValue(c.p99, "ms"))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "<details><summary>Every run: lost / duplicated / out of order</summary>")
	fmt.Fprintln(w)
	for _, l := range d.lines {
		var parts []string
		for _, c := range l.runs {
			parts = append(parts, fmt.Sprintf("%d/%d/%d", c.lost, c.duplicated, c.reordered))
		}
		fmt.Fprintf(w, "- %s, %s: %s\n", l.scenario, systemNames[l.sys], strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
}
