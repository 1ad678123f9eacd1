package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("UnstorableTextRefusedBeforeSQL", testUnstorableText)
	register("EventsStoredByteForByte", testByteForByte)
}

// NUL bytes and invalid UTF-8 are refused with ErrInvalidEvent before any
// SQL runs, on every database: the caller's transaction (which a failed
// statement would abort on PostgreSQL) goes on and commits.
func testUnstorableText(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "text")
	must(t, db.AutoMigrate(&order{}))
	mutate := func(f func(*ddd.DomainEvent)) *ddd.DomainEvent {
		e := *mustEvent(t, "x", 1)
		f(&e)
		return &e
	}
	bad := map[string]*ddd.DomainEvent{
		"NUL in id":             mutate(func(e *ddd.DomainEvent) { e.ID = "id\x00" }),
		"NUL in type":           mutate(func(e *ddd.DomainEvent) { e.Type = "type\x00x" }),
		"NUL in sender":         mutate(func(e *ddd.DomainEvent) { e.Sender = "\x00sender" }),
		"invalid UTF-8 id":      mutate(func(e *ddd.DomainEvent) { e.ID = "id\xff" }),
		"invalid UTF-8 type":    mutate(func(e *ddd.DomainEvent) { e.Type = "type\xc3" }),
		"invalid UTF-8 sender":  mutate(func(e *ddd.DomainEvent) { e.Sender = "s\xed\xa0\x80" }),
		"invalid UTF-8 key":     mutate(func(e *ddd.DomainEvent) { e.Metadata = map[string]string{"k\xff": "v"} }),
		"invalid UTF-8 value":   mutate(func(e *ddd.DomainEvent) { e.Metadata = map[string]string{"trace": "\xfe"} }),
		"invalid UTF-8 payload": mutate(func(e *ddd.DomainEvent) { e.Payload = []byte("{\"a\":\"\xff\"}") }),
	}
	tx := db.Begin()
	must(t, tx.Error)
	defer tx.Rollback()
	tctx := ddd.ContextWithTx(ctx, tx)
	good := mustEvent(t, "good", 1)
	for name, evt := range bad {
		for _, c := range []context.Context{ctx, tctx} {
			if err := bus.Dispatch(c, good, evt); !errors.Is(err, eventbus.ErrInvalidEvent) || !errors.Is(err, ddd.ErrInvalidEvent) {
				t.Errorf("%s: Dispatch err %v, want ErrInvalidEvent", name, err)
			}
			if _, err := bus.DispatchBegin(c, good, evt); !errors.Is(err, eventbus.ErrInvalidEvent) {
				t.Errorf("%s: DispatchBegin err %v, want ErrInvalidEvent", name, err)
			}
		}
	}
	// The transaction is intact: it writes and commits.
	must(t, tx.Create(&order{ID: "o1", Amount: 1}).Error)
	must(t, bus.Dispatch(tctx, good))
	must(t, tx.Commit().Error)
	if n := logCount(t, db, []string{good.ID}); n != 1 {
		t.Fatalf("the good event is stored %d times, want 1", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n != 1 {
		t.Fatalf("%d events stored, want only the good one", n)
	}
}

// Unusual but valid text travels byte for byte: what a handler receives
// (through the log and through a transactional message) is what was
// dispatched.
func testByteForByte(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "bytes")
	kept := &keeper{}
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(kept.wrap(rec.handle)))
	start(t, bus)
	unusual := func(i int) *ddd.DomainEvent {
		e := mustEvent(t, "sender \t\x01\u00e9\U0001F600 ", i,
			ddd.WithEventID("id \x7f\u2028\U0001F600 "+string(rune('a'+i))),
			ddd.WithMetadata("nul", "a\x00b"),
			ddd.WithMetadata("html", "<script>&amp;</script>"),
			ddd.WithMetadata("\U0001F600 key", "\u2028\u2029\uFFFE\U0010FFFF"),
			ddd.WithMetadata("", ""),
			ddd.WithMetadata("trailing ", " spaces "))
		e.Type = "type/\u00e9\uFFFE\U0010FFFF \x1f"
		e.Payload = []byte(`{"order_id":"\u0000 \"q\" \\ é 😀","n":` + string(rune('0'+i)) + `,"raw":"\u00e9"}`)
		return e
	}
	direct, half := unusual(1), unusual(2)
	must(t, bus.Dispatch(ctx, direct))
	tctx, err := bus.DispatchBegin(ctx, half)
	must(t, err)
	must(t, bus.Commit(tctx))
	waitFor(t, 20*time.Second, "both events", func() bool { return rec.distinct() >= 2 })
	for _, want := range []*ddd.DomainEvent{direct, half} {
		got := kept.get(want.ID)
		if got == nil {
			t.Fatalf("event %q not delivered under its id", want.ID)
		}
		if !sameEvent(got, want) {
			t.Errorf("stored and read back differently:\n got %+q %+q %+q %q %+q\nwant %+q %+q %+q %q %+q",
				got.ID, got.Type, got.Sender, got.Payload, got.Metadata, want.ID, want.Type, want.Sender, want.Payload, want.Metadata)
		}
	}
}
