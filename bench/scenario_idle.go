package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

// Idle cost of the change probe (MySQL/MariaDB, SQLite): one started bus
// with nothing to do, for -idle-dur, with the probe at its default (50ms)
// and off, alternating. Per second: the server's queries (MySQL's global
// Questions counter, which other clients of a shared server also move),
// the server's CPU (its process's utime+stime from /proc, when it runs on
// this machine) and this process's CPU (the whole client; SQLite runs its
// queries here). The difference between the two runs is the probe's.
func runIdle(ctx context.Context, t *target, cfg *config, _ *deliveries, _ *contestantErrors) ([]*row, error) {
	if t.kind == "postgres" {
		return nil, nil // LISTEN costs nothing while idle
	}
	type variant struct {
		name  string
		probe time.Duration
	}
	variants := []variant{{"probe every 50ms (default)", 50 * time.Millisecond}, {"probe off", 0}}
	var rows []*row
	qs, srv, cli := map[string]*row{}, map[string]*row{}, map[string]*row{}
	for _, v := range variants {
		qs[v.name] = newRow("Idle bus, "+v.name+": server queries/s", "q/s", -1)
		srv[v.name] = newRow("Idle bus, "+v.name+": server CPU", "ms/s", -1)
		cli[v.name] = newRow("Idle bus, "+v.name+": client process CPU", "ms/s", -1)
		rows = append(rows, qs[v.name], srv[v.name], cli[v.name])
	}
	if err := t.reset(ctx); err != nil {
		return nil, err
	}
	for round := range cfg.rounds {
		for k := range variants {
			v := variants[(k+round)%len(variants)]
			bus, err := newLibBus(t, "idle", eventbus.WithChangeProbeInterval(v.probe))
			if err != nil {
				return nil, err
			}
			if err := bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }); err != nil {
				return nil, err
			}
			stop := bus.start(ctx)
			time.Sleep(time.Second) // settles: lease, first polls
			q0, c0, s0 := t.questions(ctx), selfCPU(), serverCPU(t.kind)
			time.Sleep(cfg.idleDur)
			q1, c1, s1 := t.questions(ctx), selfCPU(), serverCPU(t.kind)
			stop()
			bus.close()
			secs := cfg.idleDur.Seconds()
			if q0 >= 0 && q1 >= 0 {
				qs[v.name].add(sysLib, float64(q1-q0)/secs)
			}
			if s0 >= 0 && s1 >= 0 {
				srv[v.name].add(sysLib, (s1-s0).Seconds()*1000/secs)
			}
			cli[v.name].add(sysLib, (c1-c0).Seconds()*1000/secs)
			progress.Printf("idle %s: %.1f q/s, server %.2f ms/s, client %.2f ms/s", v.name,
				float64(q1-q0)/secs, (s1-s0).Seconds()*1000/secs, (c1-c0).Seconds()*1000/secs)
		}
	}
	return rows, nil
}

// questions is MySQL's global Questions counter (-1 elsewhere or on error).
func (t *target) questions(ctx context.Context) int64 {
	if t.kind != "mysql" {
		return -1
	}
	var name string
	var n int64
	if err := t.admin.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Questions'").Scan(&name, &n); err != nil {
		return -1
	}
	return n
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time of the local mariadbd/mysqld process (-1 if none).
func serverCPU(kind string) time.Duration {
	if kind != "mysql" {
		return -1
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		if c := strings.TrimSpace(string(comm)); c != "mariadbd" && c != "mysqld" {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			return -1
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) < 13 {
			return -1
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return -1
}
