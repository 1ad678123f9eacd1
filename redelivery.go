package eventbus

import (
	"context"
	"time"

	"github.com/dddbus/eventbus/internal/store"
)

// retryPhase runs the service's due retries (FIFO ones only at the head of
// their sender's queue) and records the outcomes in one fenced transaction,
// with the results of set-aside calls that returned. Held senders' rows are
// left alone (see holds). It reports whether more may be due at once: a
// full page, or a success that may have released the next parked FIFO event.
func (b *EventBus) retryPhase(ctx context.Context, l *lease) (bool, error) {
	plan := b.holds.plan(l.epoch, b.owns)
	recs, attempts, err := b.dueRetries(ctx, plan.excluded)
	if err != nil {
		return false, err
	}
	full := len(recs) == b.opts.LimitPerRun
	if len(recs) == 0 && len(plan.record) == 0 {
		b.holds.release(plan.draining)
		return false, nil
	}
	var results []result
	if len(recs) > 0 {
		results = b.runLeased(ctx, l, recs, attempts, nil)
	}

	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	released, nDead := false, 0
	p := store.RecordRetriesParams{LeaseParams: b.leaseParams(l)}
	record := func(pk int64, res result) {
		switch res.verdict {
		case handled, skipped:
			p.Done = append(p.Done, pk)
			released = true
		case failed:
			p.Failed = append(p.Failed, store.RetryOutcome{PK: pk, Dead: !res.retry, Attempts: res.attempts,
				DelayMilli: res.delay.Milliseconds(), LastError: errorText(res.err)})
			if !res.retry {
				nDead++
				released = true
			}
		}
	}
	for _, hd := range plan.record {
		res := hd.res
		if res.verdict == failed {
			res.attempts = hd.row.attempts + 1
			b.nextAttempt(ctx, hd.c.evt, &res)
		}
		record(hd.row.pk, res)
	}
	for i, res := range results {
		record(recs[i].pk, res)
	}
	if err := b.st.RecordRetries(dbCtx, p); err != nil {
		return false, b.dropLease(err)
	}
	b.stats.dead.Add(int64(nDead))
	b.holds.recorded(plan.record)
	if !full {
		b.holds.release(plan.draining)
	}
	return released || full || len(plan.record) > 0, nil
}

// dueParams select the current partition's due retries.
func (b *EventBus) dueParams(excluded []string) store.DueRetriesParams {
	p := store.DueRetriesParams{Service: b.service, Exclude: excluded, Limit: b.opts.LimitPerRun}
	if b.cur != nil && b.cur.count > 1 {
		p.Partitions, p.Partition = b.cur.count, b.cur.index
	}
	return p
}

// dueRetries reads a page of due retries, leaving out the rows of the
// senders in excluded.
func (b *EventBus) dueRetries(ctx context.Context, excluded []string) ([]*record, []int, error) {
	qctx, cancel := b.bounded(ctx)
	defer cancel()
	rows, err := b.st.DueRetries(qctx, b.dueParams(excluded))
	if err != nil {
		return nil, nil, err
	}
	recs := make([]*record, len(rows))
	attempts := make([]int, len(rows))
	for i, r := range rows {
		recs[i] = &record{pk: r.PK, seq: r.Seq, evt: r.Event}
		attempts[i] = r.Attempts
	}
	return recs, attempts, nil
}
