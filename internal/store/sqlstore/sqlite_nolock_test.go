package sqlstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/internal/store"
)

// TestSQLiteCallsLeaveNoWriteLock: once the sequencer's step, an insert or
// a fetch returns, the store holds no lock on SQLite: another connection
// takes the write lock at once (busy_timeout 0). A statement left active
// after it returned (mattn/go-sqlite3 does not reset a statement after
// Exec) would keep its transaction, and the write lock, open. Several
// rounds, so that the hot statements also run prepared (stmtCache prepares
// them in the background).
func TestSQLiteCallsLeaveNoWriteLock(t *testing.T) {
	ctx := context.Background()
	tdb := dbtest.SQLite(t)
	st, _ := openStore(t, tdb)
	otherDB, err := tdb.Open(t).DB()
	if err != nil {
		t.Fatal(err)
	}
	other, err := otherDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		t.Fatal(err)
	}
	free := func(round int, after string) {
		t.Helper()
		if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatalf("round %d, after %s: another connection cannot take the write lock: %v", round, after, err)
		}
		if _, err := other.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 30 {
		evt := &ddd.DomainEvent{ID: fmt.Sprintf("e%d", round), Type: "T", Sender: "s", SendType: ddd.SendNormal, Payload: []byte(`{}`)}
		enc, err := st.EncodeEvent(evt)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.InsertEvents(ctx, nil, []store.EncodedEvent{enc}); err != nil {
			t.Fatal(err)
		}
		free(round, "InsertEvents")
		if n, _, err := st.Sequence(ctx); err != nil || n != 1 {
			t.Fatalf("round %d: sequenced %d (%v), want 1", round, n, err)
		}
		free(round, "Sequence")
		if _, err := st.FetchEvents(ctx, 0, 10); err != nil {
			t.Fatal(err)
		}
		free(round, "FetchEvents")
	}
}
