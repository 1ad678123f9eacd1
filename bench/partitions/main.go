// Command partitions measures issue 12's figures on PostgreSQL: events/s
// of one partitioned service with 1, 2 and 4 instance processes (a handler
// that waits 20 ms, 1,000 senders), and the time from a SIGKILL, and from a
// clean stop, of one of two instances to delivery resuming on the other,
// with the bus's default lease and poll interval. Each figure runs in a
// database of its own, created and dropped here.
//
//	cd bench && go run ./partitions -n 4000 -rounds 3
//
// The instances are this program run again with -child.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

var (
	dsn        = flag.String("dsn", envOr("EVENTBUS_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL DSN (its database is used to create and drop the run's own)")
	n          = flag.Int("n", 4000, "events per throughput run")
	senders    = flag.Int("senders", 1000, "senders")
	parts      = flag.Int("partitions", 4, "partitions of the service")
	work       = flag.Duration("work", 20*time.Millisecond, "handler time")
	rounds     = flag.Int("rounds", 3, "rounds of each figure")
	child      = flag.String("child", "", "internal: run as an instance with this id")
	childDSN   = flag.String("child-dsn", "", "internal")
	idle       = flag.Bool("idle", false, "measure instead the statements/s of idle instances (1 partition: owner and standby; 4 partitions: 1 and 2 instances)")
	instCounts = []int{1, 2, 4}
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type evt struct {
	N int `json:"n"`
}

func (evt) EventType() string { return "bench.Part" }

func open(dsn string) (*gorm.DB, error) {
	return gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
}

// openCounting is open through the statement-counting driver (count.go).
func openCounting(dsn string) (*gorm.DB, error) {
	sqlDB, err := sql.Open("pgx-counting", dsn)
	if err != nil {
		return nil, err
	}
	return gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
}

// runChild is one instance: it prints "h <sender> <unix ns>" per handled event.
func runChild() {
	db, err := openCounting(*childDSN)
	if err != nil {
		log.Fatal(err)
	}
	bus, err := eventbus.NewEventBus("scaled", db, eventbus.WithPartitions(*parts), eventbus.WithInstanceID(*child),
		eventbus.WithStartPosition(eventbus.StartFromEarliest), eventbus.WithCleanCron(""),
		eventbus.WithLogger(childLogger()))
	if err != nil {
		log.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(s string) {
		mu.Lock()
		out.WriteString(s)
		out.Flush()
		mu.Unlock()
	}
	if err := bus.RegisterEventHandler(func(ctx context.Context, e *ddd.DomainEvent) error {
		time.Sleep(*work)
		say(fmt.Sprintf("h %s %d\n", e.Sender, time.Now().UnixNano()))
		return nil
	}); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()
	say("ready\n")
	go func() { // the statements sent so far, every second
		for range time.Tick(time.Second) {
			say(fmt.Sprintf("q %d %d\n", statements.Load(), time.Now().UnixNano()))
		}
	}()
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until stdin closes
	cancel()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	dumpTexts()
}

// childLogger logs to stderr with PART12_LOG set.
func childLogger() *slog.Logger {
	if os.Getenv("PART12_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", *child)
	}
	return slog.New(slog.DiscardHandler)
}

// inst is a running instance seen from the parent.
type inst struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	exit  chan struct{}

	mu      sync.Mutex
	sent    int64     // statements the instance reported last
	sentAt  time.Time // when
	reports int
}

// sample returns the last statement count the instance reported, and when.
func (in *inst) sample() (int64, time.Time, int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sent, in.sentAt, in.reports
}

type handled struct {
	sender string
	at     time.Time
	by     int
}

type sink struct {
	mu  sync.Mutex
	all []handled
}

func (s *sink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.all) }

func startInst(dsn string, id int, s *sink) (*inst, error) {
	return startInstOf(dsn, id, s, *parts)
}

func startInstOf(dsn string, id int, s *sink, nparts int) (*inst, error) {
	cmd := exec.Command(os.Args[0], "-child", "inst-"+strconv.Itoa(id), "-child-dsn", dsn,
		"-partitions", strconv.Itoa(nparts), "-work", work.String())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in := &inst{cmd: cmd, stdin: stdin, exit: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(in.exit)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "ready":
				close(ready)
			case len(f) == 3 && f[0] == "q":
				n, _ := strconv.ParseInt(f[1], 10, 64)
				ns, _ := strconv.ParseInt(f[2], 10, 64)
				in.mu.Lock()
				in.sent, in.sentAt = n, time.Unix(0, ns)
				in.reports++
				in.mu.Unlock()
			case len(f) == 3 && f[0] == "h":
				ns, _ := strconv.ParseInt(f[2], 10, 64)
				s.mu.Lock()
				s.all = append(s.all, handled{sender: f[1], at: time.Unix(0, ns), by: id})
				s.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("instance %d not ready", id)
	}
	return in, nil
}

func (in *inst) stop() { _ = in.stdin.Close(); <-in.exit }
func (in *inst) kill() { _ = in.cmd.Process.Signal(syscall.SIGKILL); <-in.exit }

// freshDB creates a database of its own and returns its DSN and its drop.
func freshDB(name string) (string, func(), error) {
	admin, err := open(*dsn)
	if err != nil {
		return "", nil, err
	}
	if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
		return "", nil, err
	}
	i := strings.LastIndex(*dsn, "/")
	j := strings.Index(*dsn, "?")
	d := (*dsn)[:i+1] + name
	if j > i {
		d += (*dsn)[j:]
	}
	return d, func() {
		admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
		if sqlDB, err := admin.DB(); err == nil {
			sqlDB.Close()
		}
	}, nil
}

func produce(bus *eventbus.EventBus, from, count int) error {
	const chunk = 500
	for i := from; i < from+count; i += chunk {
		var evts []*ddd.DomainEvent
		for k := i; k < min(i+chunk, from+count); k++ {
			e, err := ddd.NewDomainEvent(fmt.Sprintf("customer-%04d", k%*senders), evt{N: k})
			if err != nil {
				return err
			}
			evts = append(evts, e)
		}
		if err := bus.Dispatch(context.Background(), evts...); err != nil {
			return err
		}
	}
	return nil
}

func waitCount(s *sink, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for s.count() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d handled after %s", s.count(), want, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// throughput: k instances drain a backlog of n events once all hold
// their partitions; events/s from the first delivery to the last.
func throughput(k, round int) (float64, error) {
	d, drop, err := freshDB(fmt.Sprintf("part12_tp_%d_%d_%d", k, round, os.Getpid()))
	if err != nil {
		return 0, err
	}
	defer drop()
	db, err := open(d)
	if err != nil {
		return 0, err
	}
	defer func() { s, _ := db.DB(); s.Close() }()
	producer, err := eventbus.NewEventBus("producer", db, eventbus.WithCleanCron(""))
	if err != nil {
		return 0, err
	}
	s := &sink{}
	var insts []*inst
	defer func() {
		for _, in := range insts {
			in.stop()
		}
	}()
	for i := range k {
		in, err := startInst(d, i, s)
		if err != nil {
			return 0, err
		}
		insts = append(insts, in)
	}
	if err := waitBalanced(producer, k); err != nil {
		return 0, err
	}
	if err := produce(producer, 0, *n); err != nil {
		return 0, err
	}
	if err := waitCount(s, *n, 5*time.Minute); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := s.all[0].at, s.all[0].at
	for _, h := range s.all {
		if h.at.Before(first) {
			first = h.at
		}
		if h.at.After(last) {
			last = h.at
		}
	}
	return float64(*n) / last.Sub(first).Seconds(), nil
}

// waitBalanced waits until the service's partitions are held by k instances.
func waitBalanced(bus *eventbus.EventBus, k int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		rows, err := bus.Services(context.Background())
		if err != nil {
			return err
		}
		owners, held := map[string]bool{}, 0
		for _, r := range rows {
			if r.Parent == "scaled" && r.Partitions == *parts && r.Owner != "" {
				owners[r.Owner] = true
				held++
			}
		}
		if held == *parts && len(owners) == min(k, *parts) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("partitions not shared by %d instances", k)
}

// failover: two instances under a steady load (200 events/s); one is
// killed (or stopped cleanly); the time from then to the first delivery
// of one of its senders by the other.
func failover(kill bool, round int) (time.Duration, error) {
	d, drop, err := freshDB(fmt.Sprintf("part12_fo_%t_%d_%d", kill, round, os.Getpid()))
	if err != nil {
		return 0, err
	}
	defer drop()
	db, err := open(d)
	if err != nil {
		return 0, err
	}
	defer func() { s, _ := db.DB(); s.Close() }()
	producer, err := eventbus.NewEventBus("producer", db, eventbus.WithCleanCron(""))
	if err != nil {
		return 0, err
	}
	s := &sink{}
	a, err := startInst(d, 0, s)
	if err != nil {
		return 0, err
	}
	b, err := startInst(d, 1, s)
	if err != nil {
		return 0, err
	}
	defer b.stop()
	if err := waitBalanced(producer, 2); err != nil {
		return 0, err
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		i := 0
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- nil
				return
			case <-t.C:
				if err := produce(producer, i, 2); err != nil {
					done <- err
					return
				}
				i += 2
			}
		}
	}()
	defer func() { close(stop); <-done }()
	if err := waitCount(s, 400, time.Minute); err != nil {
		return 0, err
	}
	s.mu.Lock()
	mine := map[int]bool{} // the partitions instance 0 consumed
	for _, h := range s.all {
		if h.by == 0 {
			mine[partitionOf(h.sender)] = true
		}
	}
	s.mu.Unlock()
	at := time.Now()
	log.Printf("stopping instance 0 (kill %t)", kill)
	if kill {
		a.kill()
	} else {
		a.stop()
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, h := range s.all {
			if h.by == 1 && mine[partitionOf(h.sender)] && h.at.After(at) {
				s.mu.Unlock()
				return h.at.Sub(at), nil
			}
		}
		s.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("no delivery of the stopped instance's senders within a minute")
}

// partitionOf is the bus's partition of sender (its documented, stable
// slot function: FNV-1a of the sender's bytes modulo 1024, modulo the count).
func partitionOf(sender string) int {
	h := uint32(2166136261)
	for i := 0; i < len(sender); i++ {
		h ^= uint32(sender[i])
		h *= 16777619
	}
	return int(h%1024) % *parts
}

// idleCost runs k idle instances of a service of nparts partitions and
// returns each one's statements per second over 10 s, after they settled.
func idleCost(k, nparts int) ([]float64, error) {
	d, drop, err := freshDB(fmt.Sprintf("part12_idle_%d_%d_%d", k, nparts, os.Getpid()))
	if err != nil {
		return nil, err
	}
	defer drop()
	s := &sink{}
	var insts []*inst
	defer func() {
		for _, in := range insts {
			in.stop()
		}
	}()
	for i := range k {
		in, err := startInstOf(d, i, s, nparts)
		if err != nil {
			return nil, err
		}
		insts = append(insts, in)
	}
	time.Sleep(5 * time.Second) // settle: leases taken, partitions shared (a duration to measure over, not a synchronisation)
	type mark struct {
		n  int64
		at time.Time
	}
	first := make([]mark, k)
	for i, in := range insts {
		n, at, _ := in.sample()
		first[i] = mark{n, at}
	}
	time.Sleep(10 * time.Second)
	out := make([]float64, k)
	for i, in := range insts {
		n, at, _ := in.sample()
		out[i] = float64(n-first[i].n) / at.Sub(first[i].at).Seconds()
	}
	return out, nil
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	return ys[len(ys)/2]
}

func main() {
	flag.Parse()
	if *child != "" {
		runChild()
		return
	}
	if *idle {
		for _, c := range []struct{ k, parts int }{{2, 1}, {1, 4}, {2, 4}} {
			rates, err := idleCost(c.k, c.parts)
			if err != nil {
				log.Fatalf("idle cost: %v", err)
			}
			fmt.Printf("| %d partition(s), %d instance(s) | %s statements/s per instance |\n", c.parts, c.k, fmtRates(rates))
		}
		return
	}
	rates := map[int][]float64{}
	var kills, stops []time.Duration
	for r := range *rounds {
		for _, k := range instCounts {
			v, err := throughput(k, r)
			if err != nil {
				log.Fatalf("throughput %d instances: %v", k, err)
			}
			rates[k] = append(rates[k], v)
			log.Printf("round %d: %d instances: %.0f events/s", r, k, v)
		}
		fk, err := failover(true, r)
		if err != nil {
			log.Fatalf("failover after SIGKILL: %v", err)
		}
		fs, err := failover(false, r)
		if err != nil {
			log.Fatalf("failover after a clean stop: %v", err)
		}
		kills, stops = append(kills, fk), append(stops, fs)
		log.Printf("round %d: SIGKILL %s, clean stop %s", r, fk.Round(time.Millisecond), fs.Round(time.Millisecond))
	}
	fmt.Printf("| instances | events/s (median of %d) | ratio to 1 (median of per-round ratios) |\n|---|---|---|\n", *rounds)
	for _, k := range instCounts {
		ratios := make([]float64, len(rates[k]))
		for r := range ratios {
			ratios[r] = rates[k][r] / rates[1][r]
		}
		fmt.Printf("| %d | %.0f | %.2fx |\n", k, median(rates[k]), median(ratios))
	}
	fmt.Printf("\n| failover (2 instances, defaults) | median of %d | all |\n|---|---|---|\n", *rounds)
	fmt.Printf("| SIGKILL to delivery elsewhere | %s | %v |\n", median(kills).Round(time.Millisecond), roundAll(kills))
	fmt.Printf("| clean stop to delivery elsewhere | %s | %v |\n", median(stops).Round(time.Millisecond), roundAll(stops))
}

func fmtRates(rs []float64) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%.1f", r))
	}
	return strings.Join(parts, " / ")
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
