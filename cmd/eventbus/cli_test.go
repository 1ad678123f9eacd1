package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

type Placed struct {
	N int `json:"n"`
}

func (Placed) EventType() string { return "shop.Placed" }

type Refunded struct {
	N int `json:"n"`
}

func (Refunded) EventType() string { return "shop.Refunded" }

// store is a database with something in every table the tool reads.
type store struct {
	dsn         string
	db          *gorm.DB
	dead        []string // billing's dead letters: Placed from "bad-1", "bad-2", Refunded from "bad-1"
	pending     int64    // a pending transaction of "orders"
	unresolved  int64    // an unresolved one of "orders"
	shippingLag int      // events shipping (registered, never started) has not consumed
}

// cliDSN is the database's DSN as the tool takes it: with a driver prefix
// (a postgres:// URL has one).
func cliDSN(tdb *dbtest.Database) string {
	if tdb.Dialect == "postgres" {
		return tdb.DSN()
	}
	return tdb.Dialect + ":" + tdb.DSN()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newStore(t *testing.T, tdb *dbtest.Database) *store {
	ctx := context.Background()
	s := &store{dsn: cliDSN(tdb), db: tdb.Open(t)}
	opts := []eventbus.Option{eventbus.WithLogger(quiet()), eventbus.WithCleanCron(""), eventbus.WithRunInterval(20 * time.Millisecond),
		eventbus.WithLeaseDuration(2 * time.Second), eventbus.WithStartPosition(eventbus.StartFromEarliest)}
	orders, err := eventbus.NewEventBus("orders", s.db, append(opts, eventbus.WithTXCheckTimeout(time.Hour))...)
	must(t, err)
	billing, err := eventbus.NewEventBus("billing", s.db, append(opts, eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))...)
	must(t, err)
	must(t, billing.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
		if strings.HasPrefix(evt.Sender, "bad") {
			return errors.New("billing refused it\nwith a second line")
		}
		return nil
	}))
	shipping, err := eventbus.NewEventBus("shipping", s.db, opts...)
	must(t, err)
	must(t, shipping.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
	event := func(sender string, v any) *ddd.DomainEvent {
		evt, err := ddd.NewDomainEvent(sender, v)
		must(t, err)
		return evt
	}
	batch := []*ddd.DomainEvent{event("good", Placed{1}), event("bad-1", Placed{2}), event("bad-2", Placed{3}), event("bad-1", Refunded{4})}
	must(t, orders.Dispatch(ctx, batch...))
	s.dead = []string{batch[1].ID, batch[2].ID, batch[3].ID}
	s.shippingLag = len(batch)
	c, err := orders.DispatchBegin(ctx, event("tx-1", Placed{5}))
	must(t, err)
	s.pending, _ = eventbus.TxID(c)
	c, err = orders.DispatchBegin(ctx, event("tx-2", Placed{6}), event("tx-2", Placed{7}))
	must(t, err)
	s.unresolved, _ = eventbus.TxID(c)
	must(t, s.db.Exec("UPDATE ddd_transactions SET due_at = 0 WHERE id = ?", s.unresolved).Error)
	if _, err := orders.CheckTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- billing.Start(runCtx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := billing.CountDeadLetters(ctx)
		must(t, err)
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("billing has %d dead letters, want 3", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	must(t, <-done)
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// result is one run of the tool.
type result struct {
	code     int
	out, err string
}

// cli runs the tool on s with args; terminal and answer simulate a user.
func (s *store) cli(t *testing.T, terminal bool, answer string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "EVENTBUS_DSN" {
			return s.dsn
		}
		return ""
	}
	code := run(context.Background(), args, stdio{in: strings.NewReader(answer), out: &out, err: &errOut, getenv: env, terminal: terminal})
	return result{code, out.String(), errOut.String()}
}

func (s *store) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := s.cli(t, false, "", args...)
	if r.code != exitOK {
		t.Fatalf("eventbus %s: exit %d, stderr %q, stdout %q", strings.Join(args, " "), r.code, r.err, r.out)
	}
	return r
}

func (s *store) exits(t *testing.T, want int, args ...string) result {
	t.Helper()
	r := s.cli(t, false, "", args...)
	if r.code != want {
		t.Fatalf("eventbus %s: exit %d, want %d; stderr %q, stdout %q", strings.Join(args, " "), r.code, want, r.err, r.out)
	}
	return r
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.out), &v); err != nil {
		t.Fatalf("output is not the JSON expected: %v\n%s", err, r.out)
	}
	return v
}

// TestCommands runs every command end to end on every database.
func TestCommands(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t, target.New(t))
			t.Run("migrate", func(t *testing.T) { testMigrate(t, s) })
			t.Run("status", func(t *testing.T) { testStatus(t, s) })
			t.Run("dead", func(t *testing.T) { testDead(t, s) })
			t.Run("tx", func(t *testing.T) { testTx(t, s) })
			t.Run("service", func(t *testing.T) { testService(t, s) })
			t.Run("usage", func(t *testing.T) { testUsage(t, s) })
		})
	}
}

func testMigrate(t *testing.T, s *store) {
	rows := decode[[]migrationRow](t, s.ok(t, "migrate", "status", "--json"))
	if len(rows) < 6 {
		t.Fatalf("%d migrations listed", len(rows))
	}
	for _, r := range rows {
		if r.AppliedAt == nil {
			t.Errorf("migration %d pending after NewEventBus migrated", r.Version)
		}
	}
	// Another prefix: nothing applied yet, then everything.
	r := s.exits(t, exitNotFound, "migrate", "status", "--prefix", "fresh_")
	if !strings.Contains(r.out, "pending") || !strings.Contains(r.err, "pending") {
		t.Errorf("migrate status of an empty prefix: %q %q", r.out, r.err)
	}
	s.ok(t, "migrate", "up", "--prefix", "fresh_")
	s.ok(t, "migrate", "status", "--prefix", "fresh_")
	if r := s.ok(t, "status", "--prefix", "fresh_"); !strings.Contains(r.out, "no services registered") {
		t.Errorf("status of an empty store: %q", r.out)
	}
}

type statusJSON struct {
	Services     []serviceRow `json:"services"`
	Transactions []txCountRow `json:"transactions"`
}

func testStatus(t *testing.T, s *store) {
	st := decode[statusJSON](t, s.ok(t, "status", "--json"))
	got := map[string]serviceRow{}
	for _, r := range st.Services {
		got[r.Name] = r
	}
	b, sh := got["billing"], got["shipping"]
	if b.DeadLetters != 3 || b.LagEvents != 0 || b.Offset != b.Head || b.Owner != "" {
		t.Errorf("billing: %+v", b)
	}
	if sh.LagEvents != int64(s.shippingLag) || sh.LagSeconds <= 0 || sh.Oldest.IsZero() || sh.Offset != 0 {
		t.Errorf("shipping (never started): %+v, want a lag of %d events", sh, s.shippingLag)
	}
	if len(st.Transactions) != 1 || st.Transactions[0] != (txCountRow{"orders", 1, 1}) {
		t.Errorf("transactions: %+v", st.Transactions)
	}
	table := s.ok(t, "status").out
	for _, want := range []string{"SERVICE", "LAG_AGE", "billing", "shipping", "TX_SERVICE", "orders"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
}

func testDead(t *testing.T, s *store) {
	list := func(args ...string) []deadRow {
		t.Helper()
		return decode[[]deadRow](t, s.ok(t, append([]string{"dead", "list", "--service", "billing", "--json"}, args...)...))
	}
	if rows := list(); len(rows) != 3 || rows[0].EventID != s.dead[0] || rows[0].LastError != "billing refused it" {
		t.Fatalf("dead list: %+v", rows)
	}
	if rows := list("--type", "shop.Refunded"); len(rows) != 1 || rows[0].EventID != s.dead[2] {
		t.Errorf("--type: %+v", rows)
	}
	if rows := list("--sender", "bad-1"); len(rows) != 2 {
		t.Errorf("--sender: %+v", rows)
	}
	if rows := list("--sender", "bad-2", "--sender", "bad-1", "--type", "shop.Placed"); len(rows) != 2 {
		t.Errorf("two senders, one type: %+v", rows)
	}
	if rows := list("--newer-than", "1h"); len(rows) != 3 {
		t.Errorf("--newer-than: %+v", rows)
	}
	if rows := list("--limit", "2"); len(rows) != 2 {
		t.Errorf("--limit 2: %+v", rows)
	} else if next := list("--after", i64(rows[1].Seq)); len(next) != 1 {
		t.Errorf("--after: %+v", next)
	}
	s.exits(t, exitNotFound, "dead", "list", "--service", "billing", "--older-than", "1h")
	s.exits(t, exitNotFound, "dead", "list", "--service", "nobody")
	if out := s.ok(t, "dead", "list", "--service", "billing").out; !strings.Contains(out, "EVENT_ID") || !strings.Contains(out, s.dead[1]) {
		t.Errorf("dead list table:\n%s", out)
	}

	show := decode[deadRow](t, s.ok(t, "dead", "show", s.dead[0], "--service", "billing", "--json"))
	var payload bytes.Buffer
	must(t, json.Compact(&payload, show.Payload))
	if show.EventID != s.dead[0] || !strings.Contains(show.LastError, "second line") || payload.String() != `{"n":2}` || show.Type != "shop.Placed" {
		t.Errorf("dead show: %+v", show)
	}
	if out := s.ok(t, "dead", "show", "--service", "billing", s.dead[0]).out; !strings.Contains(out, "Last error:") || !strings.Contains(out, `{"n":2}`) {
		t.Errorf("dead show text:\n%s", out)
	}
	s.exits(t, exitNotFound, "dead", "show", "--service", "billing", "no-such-id")

	// Replay by ID: once, then nothing to replay.
	if r := decode[countResult](t, s.ok(t, "dead", "replay", "--service", "billing", s.dead[0], "--json")); r.Count != 1 {
		t.Errorf("replay: %+v", r)
	}
	s.exits(t, exitNotFound, "dead", "replay", "--service", "billing", s.dead[0])

	// Discarding asks: refused off a terminal, refused when the user says
	// no, done when the user says yes.
	r := s.exits(t, exitRefused, "dead", "discard", "--service", "billing", s.dead[1])
	if !strings.Contains(r.err, "--yes") {
		t.Errorf("refusal does not name --yes: %q", r.err)
	}
	if r := s.cli(t, true, "n\n", "dead", "discard", "--service", "billing", s.dead[1]); r.code != exitRefused || !strings.Contains(r.err, "[y/N]") {
		t.Errorf("answered no: exit %d, %q", r.code, r.err)
	}
	if r := s.cli(t, true, "y\n", "dead", "discard", "--service", "billing", s.dead[1]); r.code != exitOK {
		t.Errorf("answered yes: exit %d, %q", r.code, r.err)
	}
	if rows := list(); len(rows) != 1 || rows[0].EventID != s.dead[2] {
		t.Fatalf("after replay and discard: %+v", rows)
	}
	// By filter: replay-all then discard --all.
	s.exits(t, exitRefused, "dead", "replay-all", "--service", "billing", "--type", "shop.Refunded")
	s.exits(t, exitNotFound, "dead", "replay-all", "--service", "billing", "--type", "shop.Other", "--yes")
	if r := decode[countResult](t, s.ok(t, "dead", "replay-all", "--service", "billing", "--type", "shop.Refunded", "--yes", "--json")); r.Count != 1 {
		t.Errorf("replay-all: %+v", r)
	}
	must(t, s.db.Exec("UPDATE ddd_retries SET state = 1 WHERE service = 'billing'").Error) // all dead again
	s.exits(t, exitUsage, "dead", "discard", "--service", "billing")
	s.exits(t, exitUsage, "dead", "discard", "--service", "billing", "--sender", "bad-1", s.dead[0])
	if r := decode[countResult](t, s.ok(t, "dead", "discard", "--service", "billing", "--all", "--sender", "bad-1", "--yes", "--json")); r.Count != 2 {
		t.Errorf("discard --all --sender bad-1: %+v", r)
	}
	s.exits(t, exitNotFound, "dead", "list", "--service", "billing")
}

func testTx(t *testing.T, s *store) {
	rows := decode[[]txRow](t, s.ok(t, "tx", "list", "--json"))
	if len(rows) != 2 || rows[0].ID != s.pending || rows[0].State != "pending" || rows[1].ID != s.unresolved ||
		rows[1].State != "unresolved" || len(rows[1].Events) != 2 || rows[1].Service != "orders" {
		t.Fatalf("tx list: %+v", rows)
	}
	if rows := decode[[]txRow](t, s.ok(t, "tx", "list", "--state", "unresolved", "--service", "orders", "--json")); len(rows) != 1 {
		t.Errorf("tx list --state unresolved: %+v", rows)
	}
	s.exits(t, exitNotFound, "tx", "list", "--service", "billing")
	s.exits(t, exitUsage, "tx", "list", "--state", "done")
	if out := s.ok(t, "tx", "list").out; !strings.Contains(out, "unresolved") || !strings.Contains(out, "no TX checker") {
		t.Errorf("tx list table:\n%s", out)
	}
	show := decode[txRow](t, s.ok(t, "tx", "show", fmt.Sprint(s.unresolved), "--json"))
	if show.ID != s.unresolved || len(show.Events) != 2 || show.Events[0].Sender != "tx-2" || show.Checks != 1 {
		t.Errorf("tx show: %+v", show)
	}
	if out := s.ok(t, "tx", "show", fmt.Sprint(s.pending)).out; !strings.Contains(out, "tx-1") {
		t.Errorf("tx show text:\n%s", out)
	}
	s.exits(t, exitNotFound, "tx", "show", "999999")
	s.exits(t, exitUsage, "tx", "show", "x")

	s.exits(t, exitRefused, "tx", "commit", fmt.Sprint(s.unresolved))
	s.ok(t, "tx", "commit", fmt.Sprint(s.unresolved), "--yes")
	if out := s.ok(t, "tx", "commit", fmt.Sprint(s.unresolved)).out; !strings.Contains(out, "already committed") {
		t.Errorf("second commit: %q", out)
	}
	s.exits(t, exitRefused, "tx", "rollback", fmt.Sprint(s.unresolved), "--yes")
	s.ok(t, "tx", "rollback", fmt.Sprint(s.pending), "--yes")
	s.exits(t, exitNotFound, "tx", "commit", "999999", "--yes")
	s.exits(t, exitNotFound, "tx", "list")
	var published int64
	must(t, s.db.Raw("SELECT COUNT(*) FROM ddd_events WHERE sender = 'tx-2'").Scan(&published).Error)
	if published != 2 {
		t.Errorf("the committed transaction published %d events, want 2", published)
	}
}

type seekJSON struct {
	Service        string `json:"service"`
	From           int64  `json:"from"`
	To             int64  `json:"to"`
	RetriesDropped int64  `json:"retries_dropped"`
}

func testService(t *testing.T, s *store) {
	seek := func(to string) seekJSON {
		t.Helper()
		return decode[seekJSON](t, s.ok(t, "service", "seek", "--service", "shipping", "--to", to, "--yes", "--json"))
	}
	s.exits(t, exitRefused, "service", "seek", "--service", "shipping", "--to", "latest")
	latest := seek("latest")
	if latest.From != 0 || latest.To == 0 {
		t.Errorf("seek latest: %+v", latest)
	}
	if r := seek("2"); r.From != latest.To || r.To != 2 {
		t.Errorf("seek to 2: %+v", r)
	}
	if r := seek("earliest"); r.To != 0 {
		t.Errorf("seek earliest: %+v", r)
	}
	if r := seek("1h"); r.To != 0 {
		t.Errorf("seek to an hour ago (every event is newer): %+v", r)
	}
	if r := seek(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); r.To != latest.To {
		t.Errorf("seek to a time after every event: %+v, want %d", r, latest.To)
	}
	if out := s.ok(t, "service", "seek", "--service", "shipping", "--to", "earliest", "--yes").out; !strings.Contains(out, "dead letters kept") {
		t.Errorf("seek text: %q", out)
	}
	s.exits(t, exitUsage, "service", "seek", "--service", "shipping", "--to", "yesterday", "--yes")
	s.exits(t, exitUsage, "service", "seek", "--service", "shipping", "--yes")
	s.exits(t, exitUsage, "service", "seek", "--service", "shipping", "--to", "99999999", "--yes")
	s.exits(t, exitNotFound, "service", "seek", "--service", "nobody", "--to", "earliest", "--yes")

	// Remove: refused while an instance runs, done once it stopped.
	running, err := eventbus.NewEventBus("shipping", s.db, eventbus.WithLogger(quiet()), eventbus.WithCleanCron(""), eventbus.WithLeaseDuration(2*time.Second))
	must(t, err)
	must(t, running.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = running.Start(ctx) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := decode[statusJSON](t, s.ok(t, "status", "--json"))
		owned := false
		for _, r := range st.Services {
			owned = owned || (r.Name == "shipping" && r.Owner != "")
		}
		if owned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the running shipping instance never took its lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.exits(t, exitRefused, "service", "remove", "--service", "shipping", "--yes")
	cancel()
	wg.Wait()
	s.exits(t, exitRefused, "service", "remove", "--service", "shipping")
	s.ok(t, "service", "remove", "--service", "shipping", "--yes")
	s.exits(t, exitNotFound, "service", "remove", "--service", "shipping", "--yes")
}

func testUsage(t *testing.T, s *store) {
	s.exits(t, exitUsage)
	s.exits(t, exitUsage, "frobnicate")
	s.exits(t, exitUsage, "dead", "list")
	s.exits(t, exitUsage, "dead", "list", "--service", "billing", "--bogus")
	s.exits(t, exitUsage, "status", "--driver", "oracle")
	s.exits(t, exitUsage, "dead", "list", "--service", "bad name!")
	if r := s.ok(t, "help"); !strings.Contains(r.out, "Exit codes") {
		t.Errorf("help: %q", r.out)
	}
	if r := s.ok(t, "dead", "list", "-h"); !strings.Contains(r.out, "-older-than") {
		t.Errorf("dead list -h: %q", r.out)
	}
	// Without a DSN.
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"status"}, stdio{in: strings.NewReader(""), out: &out, err: &errOut, getenv: func(string) string { return "" }})
	if code != exitUsage || !strings.Contains(errOut.String(), "EVENTBUS_DSN") {
		t.Errorf("no DSN: exit %d, %q", code, errOut.String())
	}
}

func TestSplitDSN(t *testing.T) {
	cases := []struct{ driver, dsn, wantDriver, wantDSN string }{
		{"", "sqlite:/var/lib/app/events.db", "sqlite", "/var/lib/app/events.db"},
		{"", "sqlite://rel.db", "sqlite", "rel.db"},
		{"", "mysql:root@tcp(127.0.0.1:3306)/app", "mysql", "root@tcp(127.0.0.1:3306)/app"},
		{"", "mysql://root@tcp(127.0.0.1:3306)/app", "mysql", "root@tcp(127.0.0.1:3306)/app"},
		{"", "postgres://u@h:5432/db?sslmode=disable", "postgres", "postgres://u@h:5432/db?sslmode=disable"},
		{"", "postgresql://u@h/db", "postgres", "postgresql://u@h/db"},
		{"", "postgres:host=h user=u dbname=db", "postgres", "host=h user=u dbname=db"},
		{"mysql", "root@tcp(h)/db", "mysql", "root@tcp(h)/db"},
	}
	for _, c := range cases {
		d, dsn, err := splitDSN(c.driver, c.dsn)
		if err != nil || d != c.wantDriver || dsn != c.wantDSN {
			t.Errorf("splitDSN(%q, %q) = %q, %q, %v", c.driver, c.dsn, d, dsn, err)
		}
	}
	for _, bad := range []string{"", "/var/lib/events.db", "sqlite:", "oracle:x"} {
		if _, _, err := splitDSN("", bad); err == nil {
			t.Errorf("splitDSN(%q) accepted", bad)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	must(t, err)
	defer null.Close()
	if isTerminal(null) {
		t.Error("/dev/null is taken for a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	must(t, err)
	defer f.Close()
	if isTerminal(f) {
		t.Error("a file is taken for a terminal")
	}
}

// TestBinary builds the command and runs it as a process, for the exit
// codes and the environment variable.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "eventbus")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := newStore(t, dbtest.SQLite(t))
	null, err := os.Open(os.DevNull)
	must(t, err)
	defer null.Close()
	runBin := func(args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "EVENTBUS_DSN="+s.dsn)
		cmd.Stdin = null // a character device, not a terminal
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"status"}, exitOK},
		{[]string{"nope"}, exitUsage},
		{[]string{"dead", "list", "--service", "billing", "--type", "none"}, exitNotFound},
		{[]string{"dead", "discard", "--service", "billing", "--all"}, exitRefused}, // stdin is /dev/null, no --yes
		{[]string{"dead", "discard", "--service", "billing", "--all", "--yes"}, exitOK},
		{[]string{"status", "--dsn", "sqlite:" + filepath.Join(t.TempDir(), "missing.db")}, exitError},
	} {
		code, out := runBin(c.args...)
		if code != c.want {
			t.Errorf("eventbus %s: exit %d, want %d\n%s", strings.Join(c.args, " "), code, c.want, out)
		}
		if c.want == exitRefused && !strings.Contains(out, "without --yes") {
			t.Errorf("eventbus %s: %q, want a refusal that names --yes", strings.Join(c.args, " "), out)
		}
	}
}
