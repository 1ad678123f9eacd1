// Command bench compares github.com/dddbus/eventbus with
// ThreeDotsLabs/watermill-sql v4 (MySQL/MariaDB and PostgreSQL) and with a
// raw-SQL baseline, on the same database, in one process, alternating the
// contestants round by round, and prints one markdown table.
//
// It is a module of its own so that the library's users do not inherit
// watermill. Run it from this directory:
//
//	cd bench && go run . -db postgres -n 100000
//	cd bench && go run . -db mysql -quick            # CI smoke run
//	cd bench && go run . -db sqlite -scenarios dispatch,drain
//	cd bench && go run . -db mysql -scenarios correctness
//
// Every scenario with a consumer also counts, per contestant and round,
// the events committed, delivered, lost, duplicated and delivered out of
// their sender's order (a second table). A competitor's loss is a result,
// and so is its failure (an error, a panic or a time-out of a
// watermill-sql or raw-SQL run): its figures for that run show as "—", a
// "Contestant errors" section lists it, and the run goes on. The run exits
// non-zero only for eventbus: an error of its run (the run stops there,
// after printing what the finished scenarios measured), or a lost,
// reordered or never-committed event.
//
// See README.md beside this file for the scenarios and flags, and
// ../BENCHMARKS.md for the latest tables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

type config struct {
	db        string
	n         int
	rounds    int
	producers int
	quick     bool
	scenarios map[string]bool

	dispatchTx        int
	slowN             int
	latencyDur        time.Duration
	latencyRate       int
	idleDur           time.Duration
	pollIntervals     []time.Duration
	scaleOld          []int
	rssN              int
	contestantTimeout time.Duration
	correctN          int
	correctRate       int
	correctPoll       time.Duration

	mysqlDSN, pgDSN, sqliteDir, dbName string
	cpuProfile                         string
	child                              string
	childPoll                          time.Duration
	libNotify                          bool
}

var allScenarios = []string{"dispatch", "drain", "drain-slow", "drain-4", "latency", "scale", "rss", "correctness", "idle"}

func parseFlags() (*config, error) {
	cfg := &config{}
	var scenarios, polls, scaleOld string
	flag.StringVar(&cfg.db, "db", "", "database: sqlite, mysql or postgres")
	flag.IntVar(&cfg.n, "n", 100_000, "backlog size of the drain and scale scenarios")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds per scenario; each round runs every contestant once, in rotating order")
	flag.IntVar(&cfg.producers, "producers", 8, "concurrent producers")
	flag.BoolVar(&cfg.quick, "quick", false, "smoke run: small sizes, one round, short latency and correctness runs (a minute or two)")
	flag.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run: "+strings.Join(allScenarios, ", "))
	flag.IntVar(&cfg.dispatchTx, "dispatch-tx", 1_000, "business transactions per dispatch block (4 blocks per round and contestant)")
	flag.IntVar(&cfg.slowN, "slow-n", 0, "backlog of the 1 ms handler drain (default n/10)")
	flag.DurationVar(&cfg.latencyDur, "latency-dur", 20*time.Second, "length of each latency run")
	flag.DurationVar(&cfg.idleDur, "idle-dur", 10*time.Second, "length of each idle run (change probe on and off)")
	flag.IntVar(&cfg.latencyRate, "latency-rate", 200, "events per second of the latency runs")
	flag.StringVar(&polls, "polls", "10ms,200ms,1s", "poll intervals of the other-process latency runs (eventbus's default is 200ms, watermill-sql's 1s)")
	flag.StringVar(&scaleOld, "scale-old", "10000,1000000", "older rows already in the table, per scale run")
	flag.IntVar(&cfg.rssN, "rss-n", 1_000_000, "backlog drained by the peak-RSS child process")
	flag.IntVar(&cfg.correctN, "correctness-n", 20_000, "events of each correctness run")
	flag.IntVar(&cfg.correctRate, "correctness-rate", 1_000, "events per second of the correctness runs, all producers together")
	flag.DurationVar(&cfg.correctPoll, "correctness-poll", 200*time.Millisecond, "poll interval of every contestant's consumer in the correctness runs")
	flag.DurationVar(&cfg.contestantTimeout, "contestant-timeout", defaultContestantTimeout, "longest run of a competitor (watermill-sql, raw SQL) before it counts as failed (5m with -quick)")
	flag.StringVar(&cfg.mysqlDSN, "mysql-dsn", "root@tcp(127.0.0.1:3306)/", "MySQL/MariaDB server (go-sql-driver DSN)")
	flag.StringVar(&cfg.pgDSN, "postgres-dsn", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL database (URL)")
	flag.StringVar(&cfg.sqliteDir, "sqlite-dir", "", "directory of the SQLite file (default: a new temp dir)")
	flag.StringVar(&cfg.dbName, "dbname", "ebbench", "MySQL database / PostgreSQL schema / SQLite file the harness drops and recreates")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&cfg.child, "child", "", "internal: run as the peak-RSS child (lib) or the latency consumer (wake)")
	flag.DurationVar(&cfg.childPoll, "child-poll", 200*time.Millisecond, "internal: RunInterval of the latency consumer child")
	flag.BoolVar(&cfg.libNotify, "lib-notify", true, "eventbus's ListenNotify (PostgreSQL wake-ups of other processes), for dispatch with NOTIFY on vs off")
	flag.Parse()

	if cfg.db == "" {
		return nil, fmt.Errorf("-db is required (sqlite, mysql or postgres)")
	}
	if cfg.quick {
		cfg.n, cfg.rounds, cfg.dispatchTx = 5_000, 1, 300
		cfg.latencyDur = 2 * time.Second
		scaleOld = "1000,20000"
		cfg.rssN = 20_000
		if !isFlagSet("contestant-timeout") {
			cfg.contestantTimeout = quickContestantTimeout
		}
		if !isFlagSet("correctness-n") {
			cfg.correctN = 2_000
		}
		if !isFlagSet("polls") {
			polls = "10ms,200ms"
		}
	}
	if cfg.slowN == 0 {
		cfg.slowN = max(cfg.n/10, 1000)
	}
	cfg.scenarios = map[string]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !contains(allScenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
		cfg.scenarios[s] = true
	}
	for _, p := range strings.Split(polls, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("-polls: bad interval %q", p)
		}
		cfg.pollIntervals = append(cfg.pollIntervals, d)
	}
	for _, s := range strings.Split(scaleOld, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("-scale-old: bad count %q", s)
		}
		cfg.scaleOld = append(cfg.scaleOld, v)
	}
	if cfg.contestantTimeout <= 0 {
		return nil, fmt.Errorf("-contestant-timeout must be positive")
	}
	if cfg.n < 1 || cfg.rounds < 1 || cfg.producers < 1 || cfg.dispatchTx < 1 || cfg.correctN < 1 || cfg.correctRate < 1 || cfg.correctPoll <= 0 {
		return nil, fmt.Errorf("-n, -rounds, -producers, -dispatch-tx and the -correctness flags must be positive")
	}
	return cfg, nil
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// progress logs to stderr; the table goes to stdout.
var progress = log.New(os.Stderr, "bench: ", log.Ltime)

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	libNotify = cfg.libNotify
	if cfg.child != "" {
		if err := runChild(ctx, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg *config, w io.Writer) error {
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	t, err := newTarget(ctx, cfg)
	if err != nil {
		return err
	}
	defer t.close()
	defer t.drop(context.WithoutCancel(ctx))
	server, settings := t.serverVersion(ctx), t.settings(ctx)

	type scenario struct {
		name string
		run  func(context.Context, *target, *config, *deliveries, *contestantErrors) ([]*row, error)
	}
	var rows []*row
	dl, ce := &deliveries{}, &contestantErrors{timeout: cfg.contestantTimeout}
	var failed error
	for _, s := range []scenario{
		{"dispatch", runDispatch},
		{"drain", runDrain},
		{"drain-slow", runDrainSlow},
		{"drain-4", runDrainFour},
		{"latency", runLatency},
		{"scale", runScale},
		{"rss", runRSS},
		{"correctness", runCorrectness},
		{"idle", runIdle},
	} {
		if !cfg.scenarios[s.name] {
			continue
		}
		begin := time.Now()
		progress.Printf("scenario %s", s.name)
		rs, err := s.run(ctx, t, cfg, dl, ce)
		if err != nil {
			// eventbus's (or the harness's) error: the run stops here and
			// fails, after printing what the finished scenarios measured.
			failed = fmt.Errorf("%s: %w", s.name, err)
			progress.Printf("scenario %s failed, the run stops: %v", s.name, err)
			break
		}
		progress.Printf("scenario %s done in %s", s.name, time.Since(begin).Round(time.Second))
		rows = append(rows, rs...)
	}
	writeHeader(w, cfg, server, settings)
	if len(rows) > 0 {
		fmt.Fprintln(w)
		writeTable(w, rows)
	}
	writeDeliveries(w, cfg, dl)
	writeContestantErrors(w, ce)
	return runOutcome(failed, dl)
}

// runOutcome is the error that makes the run exit 1: a scenario's error
// (eventbus's own, or the harness's while running eventbus), or eventbus
// losing, reordering or inventing an event (dl.libFailure). A competitor's
// errors and losses are results and never fail the run.
func runOutcome(failed error, dl *deliveries) error {
	return errors.Join(failed, dl.libFailure())
}

// order returns the contestants in the order of round r, rotating so that
// none always runs first (on a warm or a cold server).
func order(r int, systems ...system) []system {
	out := make([]system, len(systems))
	for i := range systems {
		out[i] = systems[(i+r)%len(systems)]
	}
	return out
}

// hasPeer reports whether watermill-sql runs on this database.
func (t *target) hasPeer() bool { return t.kind != "sqlite" }
