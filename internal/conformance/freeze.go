//go:build linux

package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	mysqldrv "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"
)

func init() {
	register("SequencerFrozenProcessDoesNotStopOthers", testFrozenSequencer)
}

// frozenChildEnv carries the child's frozenChild, as JSON.
const frozenChildEnv = "EVENTBUS_TEST_FROZEN_CHILD"

// frozenChild is what the child process needs: its database, and the files
// through which the parent asks for a freeze and learns it is ready.
type frozenChild struct {
	Dialect, DSN, Flag, Ready string
}

// IsFrozenChild reports whether this process is the child of
// SequencerFrozenProcessDoesNotStopOthers.
func IsFrozenChild() bool { return os.Getenv(frozenChildEnv) != "" }

// RunFrozenChild is the child process of
// SequencerFrozenProcessDoesNotStopOthers: a producer-only instance that
// polls, hence runs the sequencer, every millisecond, and dispatches an
// event every few milliseconds so that its batches have rows to number,
// until it is killed. Its connections stop the process right after they
// send a sequencer statement, when the parent asks (see freezer).
func RunFrozenChild(t *testing.T) {
	var c frozenChild
	must(t, json.Unmarshal([]byte(os.Getenv(frozenChildEnv)), &c))
	db := openFreezing(t, c, &freezer{flag: c.Flag})
	// No wake-ups: the freezer stops the process after any statement that
	// names the sequencer's table, which the change probe reads.
	bus := newBus(t, db, "frozen-child", eventbus.WithRunInterval(time.Millisecond),
		eventbus.WithChangeProbeInterval(0), eventbus.WithListenNotify(false))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go func() { _ = bus.Start(ctx) }()
	must(t, os.WriteFile(c.Ready, nil, 0o600))
	for i := 0; ctx.Err() == nil; i++ {
		_ = bus.Dispatch(ctx, mustEvent(t, "child", i))
		time.Sleep(3 * time.Millisecond)
	}
}

// testFrozenSequencer: a child process runs the sequencer in a loop on the
// same database and is frozen (SIGSTOP) dozens of times, each time for a
// few hundred milliseconds: half the time at a random moment, half right
// after it sent a sequencer statement (on SQLite always so: a process
// frozen inside SQLite's own write holds the database's one write lock,
// which no design of the sequencer can avoid). During every freeze, an
// event committed by this process must reach a consumer of another service:
// no client may hold what the sequencer needs across a pause.
func testFrozenSequencer(t *testing.T, tdb *dbtest.Database) {
	const (
		freezes = 30
		hold    = 300 * time.Millisecond
		within  = 10 * time.Second // the event's delivery, while frozen (a frozen lock holder would stop it for good; generous for a loaded machine)
	)
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumer := newBus(t, tdb.Open(t), "other", eventbus.WithRunInterval(10*time.Millisecond))
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		if evt.Sender == "child" {
			return nil // the child's own events
		}
		return rec.handle(ctx, evt)
	}))
	start(t, consumer)

	dir := t.TempDir()
	c := frozenChild{Dialect: tdb.Dialect, DSN: childDSN(t, tdb, db), Flag: filepath.Join(dir, "freeze"), Ready: filepath.Join(dir, "ready")}
	env, err := json.Marshal(c)
	must(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFrozenSequencerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), frozenChildEnv+"="+string(env))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("child output:\n%s", out.String())
		}
	})
	waitFor(t, 60*time.Second, "the child to start", func() bool {
		_, err := os.Stat(c.Ready)
		return err == nil
	})

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	var ids []string
	for i := range freezes {
		how := "right after it sent a sequencer statement"
		if tdb.Dialect != "sqlite" && i%2 == 1 {
			how = "at a random moment"
			time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
			must(t, syscall.Kill(pid, syscall.SIGSTOP))
		} else {
			must(t, os.WriteFile(c.Flag, nil, 0o600))
		}
		waitFor(t, 30*time.Second, "the child to stop", func() bool { return processStopped(t, pid) })
		frozen := time.Now()

		evt := mustEvent(t, "parent", i)
		if err := dispatchWatched(t, producer, evt, tdb.Dialect, c, pid); err != nil {
			t.Fatalf("freeze %d (%s): dispatch: %v", i+1, how, err)
		}
		ids = append(ids, evt.ID)
		deadline := time.Now().Add(within)
		for !rec.count1(evt.ID) {
			if time.Now().After(deadline) {
				t.Fatalf("freeze %d (%s): an event committed while the child was frozen was not delivered within %s: the frozen process stopped sequencing for every service",
					i+1, how, within)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if !processStopped(t, pid) {
			t.Fatalf("freeze %d: the child ran again before the check ended", i+1)
		}
		time.Sleep(time.Until(frozen.Add(hold)))
		must(t, syscall.Kill(pid, syscall.SIGCONT))
		waitFor(t, 10*time.Second, "the child to run again", func() bool { return !processStopped(t, pid) })
	}
	rec.checkExactlyOnce(t, ids)
}

// processStopped reports whether every thread of process pid is stopped
// (state T in /proc/pid/task/*/stat): a process-wide stop reaches its
// threads one by one, and one still running may still take a lock.
func processStopped(t testing.TB, pid int) bool {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	must(t, err)
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // a thread that just ended
		}
		// The state follows the command name, which is in parentheses.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) == 0 || (fields[0] != "T" && fields[0] != "t") {
			return false
		}
	}
	return len(tasks) > 0
}

// childDSN returns a DSN that reaches tdb's database (its database or
// schema on the server named by the environment, or its file).
func childDSN(t testing.TB, tdb *dbtest.Database, db *gorm.DB) string {
	t.Helper()
	var name string
	switch tdb.Dialect {
	case "mysql":
		must(t, db.Raw("SELECT DATABASE()").Scan(&name).Error)
		cfg, err := mysqldrv.ParseDSN(os.Getenv(dbtest.MySQLEnv))
		must(t, err)
		cfg.DBName, cfg.Addr = name, tdb.Addr
		return cfg.FormatDSN()
	case "postgres":
		must(t, db.Raw("SELECT current_schema()").Scan(&name).Error)
		return os.Getenv(dbtest.PostgresEnv) + "&search_path=" + name
	default:
		var files []struct {
			Seq        int
			Name, File string
		}
		must(t, db.Raw("PRAGMA database_list").Scan(&files).Error)
		for _, f := range files {
			if f.Name == "main" {
				return f.File
			}
		}
		t.Fatal("sqlite: no main database file")
		return ""
	}
}
