package eventbus

import (
	"context"
	"fmt"

	"github.com/robfig/cron/v3"
)

// CleanReport says what one cleaning run deleted.
type CleanReport struct {
	Events       int64
	DeadLetters  int64
	Transactions int64
}

// startCleaner schedules Clean on CleanCron; the returned func stops it and
// waits for a running clean to finish.
func (b *EventBus) startCleaner(ctx context.Context) (func(), error) {
	if b.opts.CleanCron == "" {
		return func() {}, nil
	}
	c := cron.New(cron.WithParser(cronParser))
	_, err := c.AddFunc(b.opts.CleanCron, func() {
		if r, err := b.Clean(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("eventbus: clean failed", "err", err)
		} else if err == nil {
			b.log.Info("eventbus: cleaned", "events", r.Events, "dead_letters", r.DeadLetters, "transactions", r.Transactions)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: CleanCron: %v", ErrInvalidOption, err)
	}
	c.Start()
	return func() { <-c.Stop().Done() }, nil
}

// Clean deletes, in batches:
//   - dead letters older than DeadLetterRetention, if that is set (first,
//     so that their events can go in the same run);
//   - events older than RetentionTime that every registered service has
//     consumed and none holds as a retry or dead letter (pending
//     transactions' events are not in the log yet);
//   - resolved transactions older than RetentionTime.
//
// It is safe to run on several instances at once. With no service
// registered it deletes no events. Sequence numbers come from the
// sequencer's counter, never from the emptied table, so no offset can be
// reused. A removed service (RemoveService) no longer holds events back.
// It never waits for, nor holds up, consumers' offset commits, lease
// renewals or retries: it locks only the rows it deletes (see the store's
// CleanEvents). Each kind goes in batches of 500.
func (b *EventBus) Clean(ctx context.Context) (CleanReport, error) {
	var rep CleanReport
	retention := b.opts.RetentionTime.Milliseconds()
	if b.opts.DeadLetterRetention > 0 {
		n, err := b.st.CleanDeadLetters(ctx, b.opts.DeadLetterRetention.Milliseconds())
		rep.DeadLetters = n
		if err != nil {
			return rep, fmt.Errorf("clean dead letters: %w", err)
		}
	}
	n, err := b.st.CleanEvents(ctx, retention)
	rep.Events = n
	if err != nil {
		return rep, fmt.Errorf("clean events: %w", err)
	}
	n, err = b.st.CleanTxs(ctx, retention)
	rep.Transactions = n
	if err != nil {
		return rep, fmt.Errorf("clean transactions: %w", err)
	}
	return rep, nil
}
