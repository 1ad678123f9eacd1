package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"gorm.io/gorm"
)

// EntryPosted is raised when a ledger entry is booked. It travels as a
// transactional (half) message: recorded first, published only once the
// booking is known to have committed.
type EntryPosted struct {
	EntryID string `json:"entry_id"`
	Account string `json:"account"`
	Amount  int    `json:"amount"`
}

// EventType names the event independently of the Go package.
func (EntryPosted) EventType() string { return "ledger.EntryPosted" }

// LedgerEntry is the business row the ledger writes in its own transaction.
type LedgerEntry struct {
	ID      string `gorm:"primaryKey;size:64"`
	Account string `gorm:"size:64;index"`
	Amount  int
}

// runTransactionalDemo shows the two-phase flow: one entry committed, one
// rolled back, and one whose process "crashes" between its local commit and
// Commit, which the TX checker resolves by looking at the ledger.
func runTransactionalDemo(ctx context.Context, db *gorm.DB, out io.Writer) error {
	var mu sync.Mutex
	log := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	if err := db.AutoMigrate(&LedgerEntry{}); err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ledger, err := eventbus.NewEventBus("ledger", db,
		eventbus.WithRunInterval(50*time.Millisecond),
		eventbus.WithTxCheckTimeout(300*time.Millisecond), // a minute by default
		eventbus.WithLogger(quiet))
	if err != nil {
		return err
	}
	// The checker decides from the business data: the entry exists if and
	// only if its transaction committed.
	if err := ledger.RegisterEventTxChecker(func(ctx context.Context, events []*ddd.DomainEvent) (ddd.TxStatus, error) {
		var e EntryPosted
		if err := events[0].Decode(&e); err != nil {
			return ddd.TxUnknown, err
		}
		var n int64
		if err := db.WithContext(ctx).Model(&LedgerEntry{}).Where("id = ?", e.EntryID).Count(&n).Error; err != nil {
			return ddd.TxUnknown, err // asked again later
		}
		verdict := ddd.TxRollback
		if n == 1 {
			verdict = ddd.TxCommit
		}
		log("checker:  asked about %s (%d event) -> %s", e.EntryID, len(events), verdict)
		return verdict, nil
	}); err != nil {
		return err
	}

	// An audit service consumes the ledger's events; it starts from the
	// beginning of the log and skips the events it has no handler for.
	audit, err := eventbus.NewEventBus("audit", db,
		eventbus.WithRunInterval(50*time.Millisecond),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithLogger(quiet))
	if err != nil {
		return err
	}
	audited := map[string]int{}
	router := ddd.NewRouter()
	if err := ddd.On(router, func(ctx context.Context, evt *ddd.DomainEvent, e EntryPosted) error {
		mu.Lock()
		audited[e.EntryID]++
		mu.Unlock()
		log("audit:    %s on %s, amount %d", e.EntryID, e.Account, e.Amount)
		return nil
	}); err != nil {
		return err
	}
	if err := audit.RegisterEventHandler(router.HandleEvent); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, b := range []*eventbus.EventBus{ledger, audit} { // the ledger instance runs the TX checker
		wg.Go(func() {
			if err := b.Start(runCtx); err != nil {
				log("%s stopped: %v", b.Service(), err)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	// book records the half message, then books the entry in a local
	// transaction that refuses to overdraw the account.
	book := func(id string, amount int) (context.Context, error) {
		evt, err := ddd.NewDomainEvent("acct-1", EntryPosted{EntryID: id, Account: "acct-1", Amount: amount},
			ddd.WithSendType(ddd.SendTransaction))
		if err != nil {
			return nil, err
		}
		txCtx, err := ledger.DispatchBegin(ctx, evt)
		if err != nil {
			return nil, err
		}
		return txCtx, db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(&LedgerEntry{ID: id, Account: "acct-1", Amount: amount}).Error; err != nil {
				return err
			}
			var balance int
			if err := tx.Model(&LedgerEntry{}).Where("account = ?", "acct-1").Select("COALESCE(SUM(amount), 0)").Scan(&balance).Error; err != nil {
				return err
			}
			if balance < 0 {
				return fmt.Errorf("insufficient funds: balance would be %d", balance)
			}
			return nil
		})
	}

	// 1: booked, then committed.
	committed, err := book("entry-1", 100)
	if err != nil {
		return fmt.Errorf("entry-1: %w", err)
	}
	if err := ledger.Commit(committed); err != nil {
		return err
	}
	log("ledger:   entry-1 booked; its message committed")
	// 2: the booking fails, so the message is rolled back.
	rolledBack, err := book("entry-2", -500)
	if err == nil {
		return errors.New("entry-2: the overdraft was accepted")
	}
	if err := ledger.Rollback(rolledBack); err != nil {
		return err
	}
	log("ledger:   entry-2 rejected (%v); its message rolled back", err)
	// 3: booked, then the process dies before Commit: the message stays
	// pending until the checker is asked, after TxCheckTimeout.
	halfCommitted, err := book("entry-3", 40)
	if err != nil {
		return fmt.Errorf("entry-3: %w", err)
	}
	log("ledger:   entry-3 booked; Commit is never called, as if the process had died")

	// All three entries share a sender, so once entry-3 is audited every
	// message published before it has been too.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		done := audited["entry-3"] > 0
		snapshot := fmt.Sprint(audited)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("timed out waiting for the checker; audited so far: %s", snapshot)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Check every outcome: a repeated call is harmless and tells what happened.
	mu.Lock()
	got := fmt.Sprint(audited)
	mu.Unlock()
	if want := fmt.Sprint(map[string]int{"entry-1": 1, "entry-3": 1}); got != want {
		return fmt.Errorf("audited %s, want %s", got, want)
	}
	if err := ledger.Commit(committed); err != nil {
		return fmt.Errorf("entry-1 repeated Commit: %w", err)
	}
	if err := ledger.Commit(rolledBack); !errors.Is(err, eventbus.ErrTxRolledBack) {
		return fmt.Errorf("entry-2 Commit after Rollback: %v, want ErrTxRolledBack", err)
	}
	if err := ledger.Rollback(halfCommitted); !errors.Is(err, eventbus.ErrTxCommitted) {
		return fmt.Errorf("entry-3 late Rollback: %v, want ErrTxCommitted (the checker committed it)", err)
	}
	if n, err := ledger.CountUnresolvedTransactions(ctx); err != nil || n != 0 {
		return fmt.Errorf("unresolved transactions: %d, %v", n, err)
	}
	log("done: entry-1 committed, entry-2 rolled back, entry-3 committed by the TX checker")
	return nil
}
