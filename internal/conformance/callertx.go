package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("CallerTxFromAnyPoolOfTheDatabase", testCallerTxAnyPool)
	register("CallerTxOnAnotherDatabaseRefusedBeforeWriting", testCallerTxForeign)
	register("CallerTxMisuseIsAnError", testCallerTxMisuse)
}

// anotherDatabase is a database of the same kind as tdb, apart from it: a
// file on SQLite, a database on the same MySQL server, a schema in the
// same PostgreSQL database.
func anotherDatabase(t testing.TB, tdb *dbtest.Database) *dbtest.Database {
	switch tdb.Dialect {
	case "mysql":
		return dbtest.MySQL(t)
	case "postgres":
		return dbtest.Postgres(t)
	}
	return dbtest.SQLite(t)
}

// A transaction on the bus's database is accepted whatever pool it comes
// from, GORM or database/sql, by Dispatch, DispatchBegin and the engine.
func testCallerTxAnyPool(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "any-pool")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)
	second := tdb.Open(t) // a second gorm.Open of the same DSN
	must(t, second.AutoMigrate(&order{}))
	secondSQL, err := second.DB()
	must(t, err)
	ownSQL, err := db.DB()
	must(t, err)

	var want []string
	gormTx := func(pool *gorm.DB, name string, commit bool, f func(ctx context.Context) error) {
		t.Helper()
		tx := pool.Begin()
		must(t, tx.Error)
		must(t, tx.Create(&order{ID: name, Amount: 1}).Error)
		if err := f(ddd.ContextWithTx(ctx, tx)); err != nil {
			_ = tx.Rollback()
			t.Fatalf("%s: %v", name, err)
		}
		if commit {
			must(t, tx.Commit().Error)
		} else {
			must(t, tx.Rollback().Error)
		}
	}
	// GORM, second pool: committed, and rolled back.
	e1 := mustEvent(t, "gorm-second", 1)
	gormTx(second, "o1", true, func(ctx context.Context) error { return bus.Dispatch(ctx, e1) })
	want = append(want, e1.ID)
	e2 := mustEvent(t, "gorm-second-rolled-back", 1)
	gormTx(second, "o2", false, func(ctx context.Context) error { return bus.Dispatch(ctx, e2) })

	// database/sql, from the second pool and from the bus's own.
	for i, pool := range []*sql.DB{secondSQL, ownSQL} {
		stx, err := pool.BeginTx(ctx, nil)
		must(t, err)
		e := mustEvent(t, fmt.Sprintf("sql-%d", i), 1)
		if err := bus.Dispatch(ddd.ContextWithSQLTx(ctx, stx), e); err != nil {
			_ = stx.Rollback()
			t.Fatalf("*sql.Tx %d: %v", i, err)
		}
		must(t, stx.Commit())
		want = append(want, e.ID)
	}

	// DispatchBegin in a second-pool transaction: the half message lives or
	// dies with it.
	var rolledBack, committed context.Context
	gormTx(second, "o3", false, func(ctx context.Context) (err error) {
		rolledBack, err = bus.DispatchBegin(ctx, mustEvent(t, "half-rolled-back", 1))
		return err
	})
	id, _ := eventbus.TxID(rolledBack)
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE id = ?", id); n != 0 {
		t.Fatalf("the half message of a rolled-back transaction exists (%d rows)", n)
	}
	half := mustEvent(t, "half-committed", 1)
	gormTx(second, "o4", true, func(ctx context.Context) (err error) {
		committed, err = bus.DispatchBegin(ctx, half)
		return err
	})
	must(t, bus.Commit(committed))
	want = append(want, half.ID)

	// The engine on the second pool.
	eng, err := ddd.NewEngine(second, bus.Options()...)
	must(t, err)
	e5 := mustEvent(t, "engine-second", 1)
	must(t, eng.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
		uow.Raise(e5)
		return uow.Tx().Create(&order{ID: "o5", Amount: 1}).Error
	}))
	want = append(want, e5.ID)

	waitFor(t, 20*time.Second, "every committed event", func() bool { return rec.distinct() >= len(want) })
	rec.checkExactlyOnce(t, want)
	if n := logCount(t, db, []string{e2.ID}); n != 0 {
		t.Fatalf("the rolled-back transaction's event is in the log")
	}
}

// A transaction on another database (or schema) is refused, by Dispatch
// and DispatchBegin alike, before anything is written; the caller's
// transaction stays usable (on PostgreSQL, not aborted).
func testCallerTxForeign(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "foreign")
	withTables := anotherDatabase(t, tdb).Open(t)
	must(t, eventbus.Migrate(ctx, withTables, "ddd_")) // the bus's tables exist there too
	withoutTables := anotherDatabase(t, tdb).Open(t)
	var otherKind *gorm.DB
	switch {
	case tdb.Dialect != "sqlite":
		otherKind = dbtest.SQLite(t).Open(t)
	case os.Getenv(dbtest.PostgresEnv) != "":
		otherKind = dbtest.Postgres(t).Open(t)
	}
	others := map[string]*gorm.DB{"another database with the tables": withTables, "another database without them": withoutTables}
	if otherKind != nil {
		others["another kind of database"] = otherKind
	}
	for name, other := range others {
		must(t, other.AutoMigrate(&order{}))
		tx := other.Begin()
		must(t, tx.Error)
		must(t, tx.Create(&order{ID: "before", Amount: 1}).Error)
		tctx := ddd.ContextWithTx(ctx, tx)
		if err := bus.Dispatch(tctx, mustEvent(t, "x", 1)); !errors.Is(err, eventbus.ErrForeignTransaction) {
			t.Errorf("%s: Dispatch err %v, want ErrForeignTransaction", name, err)
		}
		if _, err := bus.DispatchBegin(tctx, mustEvent(t, "x", 1)); !errors.Is(err, eventbus.ErrForeignTransaction) {
			t.Errorf("%s: DispatchBegin err %v, want ErrForeignTransaction", name, err)
		}
		// The caller's transaction goes on and commits.
		must(t, tx.Create(&order{ID: "after", Amount: 1}).Error)
		if err := tx.Commit().Error; err != nil {
			t.Errorf("%s: the caller's transaction cannot commit after the refusal: %v", name, err)
		}
		if n := count(t, other, "SELECT COUNT(*) FROM orders"); n != 2 {
			t.Errorf("%s: %d orders committed, want 2", name, n)
		}
		// The same through database/sql.
		otherSQL, err := other.DB()
		must(t, err)
		stx, err := otherSQL.BeginTx(ctx, nil)
		must(t, err)
		if err := bus.Dispatch(ddd.ContextWithSQLTx(ctx, stx), mustEvent(t, "x", 1)); !errors.Is(err, eventbus.ErrForeignTransaction) {
			t.Errorf("%s: Dispatch with *sql.Tx err %v, want ErrForeignTransaction", name, err)
		}
		must(t, stx.Rollback())
		eng, err := ddd.NewEngine(other, bus.Options()...)
		must(t, err)
		if err := eng.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
			uow.Raise(mustEvent(t, "x", 1))
			return nil
		}); !errors.Is(err, eventbus.ErrForeignTransaction) {
			t.Errorf("%s: engine err %v, want ErrForeignTransaction", name, err)
		}
		if other == withTables {
			for _, table := range []string{"ddd_events", "ddd_transactions", "ddd_transaction_events"} {
				if n := count(t, other, "SELECT COUNT(*) FROM "+table); n != 0 {
					t.Errorf("%s: %s has %d rows", name, table, n)
				}
			}
		}
	}
	for _, table := range []string{"ddd_events", "ddd_transactions", "ddd_transaction_events"} {
		if n := count(t, db, "SELECT COUNT(*) FROM "+table); n != 0 {
			t.Errorf("the bus's %s has %d rows after refused dispatches", table, n)
		}
	}
}

// Misused contexts are errors, not panics, and write nothing.
func testCallerTxMisuse(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "misuse")
	done := db.Begin()
	must(t, done.Error)
	must(t, done.Commit().Error)
	cases := map[string]struct {
		ctx  context.Context
		want error
	}{
		"zero *gorm.DB":         {ddd.ContextWithTx(ctx, &gorm.DB{}), eventbus.ErrInvalidTransaction},
		"nil *gorm.DB":          {ddd.ContextWithTx(ctx, nil), eventbus.ErrInvalidTransaction},
		"*gorm.DB without a tx": {ddd.ContextWithTx(ctx, db), eventbus.ErrInvalidTransaction},
		"nil *sql.Tx":           {ddd.ContextWithSQLTx(ctx, nil), eventbus.ErrInvalidTransaction},
		"committed transaction": {ddd.ContextWithTx(ctx, done), nil},
		"nil context":           {nil, eventbus.ErrInvalidArgument},
	}
	for name, c := range cases {
		for op, f := range map[string]func() error{
			"Dispatch":      func() error { return bus.Dispatch(c.ctx, mustEvent(t, "m", 1)) },
			"DispatchBegin": func() error { _, err := bus.DispatchBegin(c.ctx, mustEvent(t, "m", 1)); return err },
		} {
			err := noPanic(f)
			if err == nil || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("%s: %s err %v, want %v", name, op, err, c.want)
			}
		}
	}
	for _, table := range []string{"ddd_events", "ddd_transactions", "ddd_transaction_events"} {
		if n := count(t, db, "SELECT COUNT(*) FROM "+table); n != 0 {
			t.Errorf("%s has %d rows after misused calls", table, n)
		}
	}
	// A zero *gorm.DB is not a database.
	if err := noPanic(func() error { _, err := eventbus.NewEventBus("svc", &gorm.DB{}); return err }); !errors.Is(err, eventbus.ErrInvalidDB) {
		t.Errorf("NewEventBus on a zero *gorm.DB: err %v, want ErrInvalidDB", err)
	}
	if err := noPanic(func() error { return eventbus.Migrate(ctx, &gorm.DB{}, "ddd_") }); !errors.Is(err, eventbus.ErrInvalidDB) {
		t.Errorf("Migrate on a zero *gorm.DB: err %v, want ErrInvalidDB", err)
	}
}

// noPanic runs f and turns a panic into an error.
func noPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}
