package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Peak memory: a child process (this binary with -child lib) drains a
// backlog of cfg.rssN events, stored by the parent with Dispatch and left
// unsequenced, and reports its VmHWM (peak resident set) and drain time.
// Running it in a child keeps the other scenarios' allocations out of it.

const rssService = "rss"

func runRSS(ctx context.Context, t *target, cfg *config, dl *deliveries, _ *contestantErrors) ([]*row, error) {
	n := thousands(int64(cfg.rssN))
	peak := newRow("Peak RSS of a process draining "+n+" events", "MiB", -1)
	rate := newRow("Drain rate of that "+n+" backlog, incl. sequencing", "events/s", +1)
	if err := t.reset(ctx); err != nil {
		return nil, err
	}
	bus, err := newLibBus(t, rssService)
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	err = libBacklog(ctx, bus, newLedger(cfg.rssN, drainSenders), cfg.producers)
	bus.close()
	if err != nil {
		return nil, err
	}
	progress.Printf("rss: stored %d events in %s", cfg.rssN, time.Since(begin).Round(time.Millisecond))
	rep, err := spawnChild(ctx, t, cfg, "lib")
	if err != nil {
		return nil, err
	}
	progress.Printf("rss: drained in %.1fs, VmHWM %d KiB", rep.seconds, rep.kib)
	peak.add(sysLib, float64(rep.kib)/1024)
	rate.add(sysLib, float64(rep.delivered)/rep.seconds)
	dl.addCounts("rss", sysLib, counts{committed: cfg.rssN, delivered: rep.delivered, lost: rep.lost,
		duplicated: rep.duplicated, strays: rep.strays, p50: math.NaN(), p99: math.NaN()})
	return []*row{peak, rate}, nil
}

// childReport is what the drain child prints, one "key=value" per field.
type childReport struct {
	seconds                             float64
	kib                                 int64
	delivered, lost, duplicated, strays int
}

const childFormat = "seconds=%g vmhwm_kib=%d delivered=%d lost=%d duplicated=%d strays=%d"

// spawnChild runs this binary as the drain child and parses its report.
func spawnChild(ctx context.Context, t *target, cfg *config, kind string) (childReport, error) {
	var rep childReport
	exe, err := os.Executable()
	if err != nil {
		return rep, err
	}
	args := []string{"-child", kind, "-db", cfg.db, "-dbname", cfg.dbName, "-rss-n", strconv.Itoa(cfg.rssN),
		"-mysql-dsn", cfg.mysqlDSN, "-postgres-dsn", cfg.pgDSN}
	if t.sqlitePath != "" {
		args = append(args, "-sqlite-dir", dirOf(t.sqlitePath))
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return rep, fmt.Errorf("child: %w", err)
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), childFormat,
		&rep.seconds, &rep.kib, &rep.delivered, &rep.lost, &rep.duplicated, &rep.strays); err != nil {
		return rep, fmt.Errorf("child printed %q: %w", out.String(), err)
	}
	return rep, nil
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return "."
}

// runChild drains the rss backlog and prints its report (childFormat).
// It counts what it is handed with a count-only ledger: one bit per event
// (125 KiB per million) is part of the peak it reports.
func runChild(ctx context.Context, cfg *config) error {
	if cfg.child == "wake" {
		return runWakeChild(ctx, cfg)
	}
	if cfg.child != "lib" {
		return fmt.Errorf("unknown child %q", cfg.child)
	}
	t, err := newTarget(ctx, cfg)
	if err != nil {
		return err
	}
	defer t.close()
	bus, err := newLibBus(t, rssService)
	if err != nil {
		return err
	}
	defer bus.close()
	begin, tallies, err := libDrain(ctx, []*libBus{bus}, committedLedger(cfg.rssN), 0)
	if err != nil {
		return err
	}
	rate := drainRate(begin, tallies...)
	c := tallies[0].counts()
	kib, err := vmHWM()
	if err != nil {
		return err
	}
	fmt.Printf(childFormat+"\n", float64(c.delivered)/rate, kib, c.delivered, c.lost, c.duplicated, c.strays)
	return nil
}

// vmHWM reads this process's peak resident set size in KiB.
func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}
