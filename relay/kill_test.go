//go:build unix

package relay_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/sqlite"
	mysqldrv "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The helper process reads what to relay from these variables.
const (
	helperEnv       = "EBT_RELAY_HELPER" // "1" selects the helper mode
	helperDialect   = "EBT_RELAY_DIALECT"
	helperDSN       = "EBT_RELAY_DSN"
	helperPrefix    = "EBT_RELAY_PREFIX"
	helperBatchSize = 50
)

// TestRelayHelperProcess is the relay of TestRelayKilled when run as a child
// process (EBT_RELAY_HELPER=1); otherwise it does nothing. It relays until
// it is killed.
func TestRelayHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	db, err := openDSN(os.Getenv(helperDialect), os.Getenv(helperDSN))
	if err != nil {
		t.Fatal(err)
	}
	_, js := connect(t, natsURL(t))
	s := testStream{prefix: os.Getenv(helperPrefix)}
	r := newRelay(t, db, js, s, "relay", eventbus.WithLimitPerRun(helperBatchSize))
	fmt.Println("relaying")
	_ = r.Run(context.Background())
}

// TestRelayKilled kills the relay, a child process, with SIGKILL twice while
// it drains a backlog, and starts it again each time: every event reaches
// the stream exactly once, in each sender's commit order (the batches in
// flight are published again and JetStream drops the duplicates).
func TestRelayKilled(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, database *dbtest.Database) {
		db := database.Open(t)
		_, js := connect(t, natsURL(t))
		s := newStream(t, js)
		producer := newProducer(t, db)
		p := produce(t, db, producer, 20, 100, func() {})
		total := uint64(p.total())
		dialect, dsn := childDSN(t, database.Dialect, db)
		for i, until := range []uint64{total / 4, total / 2, total} {
			child := startHelper(t, dialect, dsn, s.prefix, i)
			waitFor(t, 2*time.Minute, fmt.Sprintf("%d messages in the stream", until), func() bool { return s.msgs(t, js) >= until })
			if until == total {
				waitFor(t, time.Minute, "the relay to finish", func() bool { return pendingOf(t, producer, "relay") == 0 })
			}
			child.kill()
		}
		checkStream(t, p, s.events(t, js))
		if n := s.msgs(t, js); n != total {
			t.Fatalf("stream holds %d messages, want %d", n, total)
		}
	})
}

type helper struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startHelper re-executes the test binary in the helper mode.
func startHelper(t *testing.T, dialect, dsn, prefix string, n int) *helper {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("relay-%d.log", n))
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRelayHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperDialect+"="+dialect, helperDSN+"="+dsn, helperPrefix+"="+prefix)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("relay process %d output:\n%s", n, b)
		}
	})
	return h
}

// kill sends SIGKILL and waits for the process to exit.
func (h *helper) kill() {
	_ = h.cmd.Process.Kill()
	<-h.done
}

// childDSN tells a child process how to open the test's database.
func childDSN(t *testing.T, dialect string, db *gorm.DB) (string, string) {
	t.Helper()
	var name string
	switch dialect {
	case "sqlite":
		var seq int
		var schema string
		if err := db.Raw("PRAGMA database_list").Row().Scan(&seq, &schema, &name); err != nil {
			t.Fatal(err)
		}
		return dialect, name
	case "mysql":
		if err := db.Raw("SELECT DATABASE()").Scan(&name).Error; err != nil {
			t.Fatal(err)
		}
		cfg, err := mysqldrv.ParseDSN(os.Getenv(dbtest.MySQLEnv))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = name
		return dialect, cfg.FormatDSN()
	default:
		if err := db.Raw("SELECT current_schema()").Scan(&name).Error; err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(os.Getenv(dbtest.PostgresEnv))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		return dialect, u.String()
	}
}

func openDSN(dialect, dsn string) (*gorm.DB, error) {
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	switch dialect {
	case "sqlite":
		return sqlite.Open(dsn)
	case "mysql":
		return gorm.Open(mysql.Open(dsn), cfg)
	case "postgres":
		return gorm.Open(postgres.Open(dsn), cfg)
	}
	return nil, fmt.Errorf("unknown dialect %q", dialect)
}
