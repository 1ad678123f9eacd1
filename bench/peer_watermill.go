package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// The peer: ThreeDotsLabs/watermill-sql v4 with its default schema and
// offsets adapters for MySQL and PostgreSQL (it has none for SQLite).

const wmTopic = "bench"

// wmDefaultBatch is DefaultMySQLSchema's and DefaultPostgreSQLSchema's
// SubscribeBatchSize when left at zero; wmDefaultPoll is the subscriber's
// default PollInterval.
const (
	wmDefaultBatch = 100
	wmDefaultPoll  = time.Second
)

// wmAdapters returns the default schema and offsets adapters for kind;
// batch 0 keeps the schema's default batch size.
func wmAdapters(kind string, batch int) (wmsql.SchemaAdapter, wmsql.OffsetsAdapter, error) {
	switch kind {
	case "mysql":
		return wmsql.DefaultMySQLSchema{SubscribeBatchSize: batch}, wmsql.DefaultMySQLOffsetsAdapter{}, nil
	case "postgres":
		return wmsql.DefaultPostgreSQLSchema{SubscribeBatchSize: batch}, wmsql.DefaultPostgreSQLOffsetsAdapter{}, nil
	}
	return nil, nil, errNoPeer
}

// wmSubscriber returns a subscriber of consumer group on db; poll 0 keeps
// the default poll interval.
func wmSubscriber(db *sql.DB, kind, group string, batch int, poll time.Duration) (*wmsql.Subscriber, error) {
	schema, offsets, err := wmAdapters(kind, batch)
	if err != nil {
		return nil, err
	}
	return wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		ConsumerGroup:  group,
		PollInterval:   poll,
		SchemaAdapter:  schema,
		OffsetsAdapter: offsets,
	}, watermill.NopLogger{})
}

// wmInit creates the topic's message and offsets tables.
func wmInit(t *target) error {
	db, err := t.openSQL()
	if err != nil {
		return err
	}
	defer db.Close()
	sub, err := wmSubscriber(db, t.kind, "init", 0, 0)
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := sub.SubscribeInitialize(wmTopic); err != nil {
		return fmt.Errorf("watermill: initialize schema: %w", err)
	}
	return nil
}

// wmPublishTx publishes msgs in tx, the business transaction, the way
// watermill-sql documents it: a publisher on the *sql.Tx.
func wmPublishTx(kind string, tx *sql.Tx, msgs ...*message.Message) error {
	schema, _, err := wmAdapters(kind, 0)
	if err != nil {
		return err
	}
	pub, err := wmsql.NewPublisher(wmsql.TxFromStdSQL(tx), wmsql.PublisherConfig{SchemaAdapter: schema}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	return pub.Publish(wmTopic, msgs...)
}

// wmMessage is event i as a watermill message: its UUID is eventID(i).
func wmMessage(i int, sender string) *message.Message {
	return message.NewMessage(eventID(i), payloadOf(i, sender))
}

// wmBacklog publishes led.size messages, backlogChunk per transaction, on
// producers goroutines, and records them in led.
func wmBacklog(ctx context.Context, t *target, led *ledger, producers int) error {
	db, err := t.openSQL()
	if err != nil {
		return err
	}
	defer db.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for range producers {
		wg.Go(func() {
			if err := callSafe(func() error { return wmBacklogChunks(ctx, t, db, led, &next) }); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// wmBacklogChunks is one producer of wmBacklog: it publishes chunks until
// none is left.
func wmBacklogChunks(ctx context.Context, t *target, db *sql.DB, led *ledger, next *atomic.Int64) error {
	n := led.size
	for {
		start := int(next.Add(backlogChunk)) - backlogChunk
		if start >= n {
			return nil
		}
		end := min(start+backlogChunk, n)
		msgs := make([]*message.Message, 0, end-start)
		for i := start; i < end; i++ {
			msgs = append(msgs, wmMessage(i, senderOf(i, led.senders)))
		}
		led.begin(start, end, time.Now())
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := wmPublishTx(t.kind, tx, msgs...); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("watermill backlog: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		led.commit(start, end, time.Now())
	}
}

// wmConsumer is one subscribed consumer group with its own pool.
type wmConsumer struct {
	db   *sql.DB
	sub  *wmsql.Subscriber
	wg   sync.WaitGroup
	err  error // a panic of the handling loop; read after wg.Wait
	once sync.Once
}

// wmConsume subscribes group and handles every message with handle (then
// acks it), one at a time, as a watermill handler does.
func wmConsume(ctx context.Context, t *target, group string, batch int, poll time.Duration, handle func(*message.Message)) (*wmConsumer, error) {
	db, err := t.openSQL()
	if err != nil {
		return nil, err
	}
	sub, err := wmSubscriber(db, t.kind, group, batch, poll)
	if err != nil {
		db.Close()
		return nil, err
	}
	ch, err := sub.Subscribe(ctx, wmTopic)
	if err != nil {
		sub.Close()
		db.Close()
		return nil, fmt.Errorf("watermill subscribe: %w", err)
	}
	c := &wmConsumer{db: db, sub: sub}
	c.wg.Go(func() {
		c.err = callSafe(func() error {
			for msg := range ch {
				handle(msg)
				msg.Ack()
			}
			return nil
		})
		if c.err != nil {
			for msg := range ch { // keep the subscriber unblocked until Close
				msg.Nack()
			}
		}
	})
	return c, nil
}

// close closes the subscriber and its pool (once; later calls return the
// same) and returns the handling loop's panic, if any.
func (c *wmConsumer) close() error {
	c.once.Do(func() {
		_ = c.sub.Close()
		c.wg.Wait()
		_ = c.db.Close()
	})
	if c.err != nil {
		return fmt.Errorf("watermill consumer: %w", c.err)
	}
	return nil
}

// wmDrain subscribes every group at once, each handing its messages to
// its own tally of led after waiting work (if any), and waits until they
// have every message (or settle gives up). It returns the start time and
// the tallies (see drainRate).
func wmDrain(ctx context.Context, t *target, groups []string, batch int, led *ledger, work time.Duration) (_ time.Time, _ []*tally, err error) {
	var tallies []*tally
	var consumers []*wmConsumer
	defer func() {
		for _, c := range consumers {
			err = errors.Join(err, c.close())
		}
	}()
	begin := time.Now()
	for _, g := range groups {
		tl := newTally(led, false)
		tallies = append(tallies, tl)
		cons, err := wmConsume(ctx, t, g, batch, 0, func(m *message.Message) {
			if work > 0 {
				time.Sleep(work)
			}
			tl.deliver(m.UUID)
		})
		if err != nil {
			return time.Time{}, nil, err
		}
		consumers = append(consumers, cons)
	}
	return begin, tallies, settle(ctx, drainGrace, drainTimeout, tallies...)
}
