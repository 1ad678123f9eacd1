package eventbus

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/dddbus/eventbus/internal/store"
)

// Partitions.
//
// A service of N > 1 partitions (Config.Partitions) splits its events by
// sender: an event's partition is Slot(sender) % N, where Slot is FNV-1a of
// the sender's bytes modulo 1024 (store.Slot). The partition is a pure
// function of the sender, which is fixed when the event is written, so it
// is not stored with the event: no write costs more, events stored before
// partitions existed need no rewrite, and changing N rewrites nothing in
// the log. Each partition reads the log after its own offset and skips
// other partitions' events (so each instance reads every event; the
// handlers, not the reads, are what partitions spread). Retry rows keep
// their sender's slot, so a partition's retry phase reads only its own.
//
// Each partition is a row of its own (named "<service>#<p>/<N>") with its
// own offset, lease and fence epoch, and the bus consumes it exactly as it
// consumes a whole service with one partition: the same fenced offset
// commits and retry phases, the same FIFO parking, the same dead letters
// (listed for the service as a whole).
//
// Sharing: every running instance reports in (a members row, renewed at
// every timer poll; it lapses LeaseDuration after the instance stops).
// The live instances share the partitions evenly and stickily (see
// assign): each keeps what it holds up to its share. An instance
// releases a partition that is no longer its own between two batches, and
// takes its own ones once they are free: a join or a clean leave moves
// partitions within about one RunInterval; a dead instance's partitions
// move when its lease (and its members row) lapse. Leases, not the
// assignment, guarantee that no partition has two owners at once: an
// instance that takes a partition raises its epoch, and the fenced writes
// of an earlier owner fail.
//
// Changing N (drain and switch): an instance configured with another count
// than the stored one asks for the change once per Start; the request
// records the sequence number sequenced last (the switch point). Every
// partition of the old count is then consumed up to the switch point and
// no further, and released there. Once every old partition is at the
// switch point and free, one instance replaces them by the new count's
// partitions, all starting at the switch point, in one transaction (their
// epochs above every old one). Waiting retries and parked FIFO events stay
// with their sender's slot, so they belong to the sender's new partition:
// nothing is lost, and one sender's events keep their order. Delivery
// pauses for the drain (the old partitions' backlog up to the switch point).

// partitioned reports whether the consume loop must go partition by
// partition: more than one partition is stored or wanted, or a change is
// pending.
func (b *EventBus) partitioned() bool {
	return b.opts.Partitions > 1 || b.view.Partitions > 1 || b.view.SwitchTo != 0
}

// viewDue reports whether the instance reports in and reads its service's
// partitions now: at every timer poll (and at least every RunInterval)
// while partitioned, every third of LeaseDuration otherwise.
func (b *EventBus) viewDue(kind pollKind) bool {
	if b.viewAt.IsZero() {
		return true
	}
	age := time.Since(b.viewAt)
	if b.partitioned() {
		return kind == pollTimer || age >= b.opts.RunInterval
	}
	return age >= b.opts.LeaseDuration/3
}

// refreshView reports this instance in and reads the partitions; it asks
// for the configured count (once per Start) and performs a pending switch
// once the old partitions are drained.
func (b *EventBus) refreshView(ctx context.Context) error {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	for range 3 {
		start := time.Now()
		// Every instance of a partitioned service reports standby
		// presence, since the service's row has no lease. With one
		// partition, standBy does it for instances without the lease, as
		// before partitions: the owner does not, so RemoveService succeeds
		// at once after it stops gracefully.
		standby := b.partitioned()
		v, err := b.st.ReportMember(ctx, store.MemberParams{Service: b.service, Instance: b.owner,
			LeaseMillis: b.opts.LeaseDuration.Milliseconds(), Standby: standby})
		if err != nil {
			return err
		}
		if !v.Exists {
			b.removed.Store(true)
			b.logRemoved()
			return nil
		}
		b.view, b.viewAt = v, start
		if standby {
			b.standbyAt = start
		}
		changed, err := b.steerCount(ctx, v)
		if err != nil || !changed {
			return err
		}
	}
	return nil
}

// steerCount asks for the configured count or performs a drained switch;
// changed reports that the stored partitions changed (read them again).
//
// An instance looks at the count once per Start, at its first view: it
// asks for its own count if that differs from the stored one and no change
// is pending. It never asks later, so that instances of a rolling change
// (some configured with the old count, some with the new) cannot undo
// each other's change: the last to start with a differing count wins, once.
func (b *EventBus) steerCount(ctx context.Context, v store.PartitionView) (changed bool, err error) {
	first := !b.switchAsked
	b.switchAsked = true
	if v.SwitchTo == 0 {
		if !first || v.Partitions == b.opts.Partitions {
			return false, nil
		}
		ok, err := b.st.RequestSwitch(ctx, b.service, b.opts.Partitions)
		if ok {
			b.log.Info("eventbus: asked to change the partition count; the partitions drain to the last sequenced event, then switch", "from", v.Partitions, "to", b.opts.Partitions)
		}
		return ok, err
	}
	at, ready, behind := drained(v)
	if behind > v.SwitchSeq {
		// A partition went past the switch point before its owner saw
		// the request: the others drain to it.
		return true, b.st.RaiseSwitch(ctx, b.service, v.SwitchTo, behind)
	}
	if !ready {
		return false, nil
	}
	ok, err := b.st.SwitchPartitions(ctx, store.SwitchParams{Service: b.service, From: v.Partitions, To: v.SwitchTo, At: at})
	if ok {
		b.log.Info("eventbus: partition count changed", "from", v.Partitions, "to", v.SwitchTo, "at", at)
	}
	return ok, err
}

// drained reports whether every row of v's count is at the switch point
// and free (at: where the new partitions start), and the highest offset
// past the switch point of several partitions (0 if none).
func drained(v store.PartitionView) (at int64, ready bool, past int64) {
	if v.Partitions <= 1 && len(v.Rows) == 1 {
		r := v.Rows[0] // one row: wherever it stopped past the point
		return r.Offset, r.Offset >= v.SwitchSeq && free(r, v.Now), 0
	}
	if len(v.Rows) != v.Partitions {
		return 0, false, 0
	}
	ready = true
	for _, r := range v.Rows {
		past = max(past, r.Offset)
		ready = ready && r.Offset == v.SwitchSeq && free(r, v.Now)
	}
	if past <= v.SwitchSeq {
		past = 0
	}
	return v.SwitchSeq, ready, past
}

func free(r store.PartitionState, now int64) bool { return r.Owner == "" || r.LeaseUntil < now }

// targets returns the partitions this instance consumes now, in a turn
// that starts at a different one each poll; it releases the ones it held
// that are no longer its own.
func (b *EventBus) targets(ctx context.Context) []*part {
	v := b.view
	n := max(v.Partitions, 1)
	members := slices.Clone(v.Members)
	if !slices.Contains(members, b.owner) {
		members = append(members, b.owner)
	}
	slices.Sort(members) // byte order, whatever the database's collation
	mine := assign(v.Rows, members)[b.owner]
	want := map[string]*part{}
	for _, r := range v.Rows {
		p := r.Part
		if n > 1 && !mine[r.Name] {
			continue
		}
		if v.SwitchTo != 0 && r.Offset >= v.SwitchSeq && !b.holdsRow(r.Name) {
			continue // drained: leave it for the switch
		}
		want[r.Name] = &part{index: p, count: n, row: r.Name}
	}
	for row, p := range b.parts {
		if want[row] == nil {
			b.dropPart(ctx, p)
			delete(b.parts, row)
		}
	}
	var out []*part
	for row, w := range want {
		if b.parts[row] == nil {
			b.parts[row] = w
		}
		out = append(out, b.parts[row])
	}
	slices.SortFunc(out, func(x, y *part) int { return x.index - y.index })
	if len(out) > 1 {
		b.turn++
		k := b.turn % len(out)
		out = append(out[k:], out[:k]...)
	}
	return out
}

// assign shares rows among members (sorted), the same way on every
// instance that reads the same view: each member gets len(rows)/k or one
// more; a member keeps the rows it holds up to its share (those holding
// more get the larger shares first), and the rest (free rows, rows of
// instances that are not members, what a member holds beyond its share)
// go, in partition order, to the members below their share, in name
// order. So a join or a leave moves only as many partitions as the new
// shares need (cooperative and sticky), and a restarted instance that keeps
// its InstanceID keeps its partitions.
func assign(rows []store.PartitionState, members []string) map[string]map[string]bool {
	k := len(members)
	out := make(map[string]map[string]bool, k)
	if k == 0 {
		return out
	}
	held := map[string][]store.PartitionState{}
	var pool []store.PartitionState
	for _, r := range rows {
		if _, ok := slices.BinarySearch(members, r.Owner); ok && r.Owner != "" {
			held[r.Owner] = append(held[r.Owner], r)
		} else {
			pool = append(pool, r)
		}
	}
	byHeld := slices.Clone(members)
	slices.SortStableFunc(byHeld, func(x, y string) int { return len(held[y]) - len(held[x]) })
	share := map[string]int{}
	for i, m := range byHeld {
		share[m] = len(rows) / k
		if i < len(rows)%k {
			share[m]++
		}
	}
	for _, m := range members {
		out[m] = map[string]bool{}
		hs := held[m]
		slices.SortFunc(hs, func(x, y store.PartitionState) int { return x.Part - y.Part })
		for i, r := range hs {
			if i < share[m] {
				out[m][r.Name] = true
			} else {
				pool = append(pool, r)
			}
		}
	}
	slices.SortFunc(pool, func(x, y store.PartitionState) int { return x.Part - y.Part })
	for _, m := range members {
		for len(out[m]) < share[m] && len(pool) > 0 {
			out[m][pool[0].Name] = true
			pool = pool[1:]
		}
	}
	return out
}

// holdsRow reports whether this instance holds the lease of row.
func (b *EventBus) holdsRow(row string) bool {
	p := b.parts[row]
	return p != nil && p.lease != nil
}

// dropPart gives p up: its read-ahead is dropped, its lease released.
func (b *EventBus) dropPart(ctx context.Context, p *part) {
	if p.prefetched != nil {
		<-p.prefetched.done
		p.prefetched = nil
	}
	if l := p.lease; l != nil {
		p.lease = nil
		rctx, cancel := b.bounded(context.WithoutCancel(ctx))
		defer cancel()
		if err := b.st.ReleaseLease(rctx, p.row, b.owner); err != nil {
			b.log.Warn("eventbus: release partition", "partition", p.row, "err", err)
			return
		}
		b.observeLease(ctx, LeaseReleased, l)
	}
}

// enter makes p the partition the consume loop works on; leave puts it back.
func (b *EventBus) enter(p *part) {
	b.cur = p
	b.lease, b.prefetched, b.lastRetried, b.retryMore = p.lease, p.prefetched, p.lastRetried, p.retryMore
}

func (b *EventBus) leave() {
	p := b.cur
	p.lease, p.prefetched, p.lastRetried, p.retryMore = b.lease, b.prefetched, b.lastRetried, b.retryMore
	b.lease, b.prefetched, b.cur = nil, nil, nil
}

// adoptService moves the whole service's lease between the loop's own
// fields (one partition) and the partition list (several), when the mode
// changes.
func (b *EventBus) adoptService(partitioned bool) {
	if partitioned {
		if b.lease == nil && b.prefetched == nil {
			return
		}
		p := &part{count: 1, row: b.service}
		p.lease, p.prefetched, p.lastRetried, p.retryMore = b.lease, b.prefetched, b.lastRetried, b.retryMore
		b.lease, b.prefetched = nil, nil
		if b.parts == nil {
			b.parts = map[string]*part{}
		}
		b.parts[b.service] = p
		return
	}
	if p := b.parts[b.service]; p != nil {
		b.lease, b.prefetched, b.lastRetried, b.retryMore = p.lease, p.prefetched, p.lastRetried, p.retryMore
	}
	for _, p := range b.parts {
		if p.row != b.service {
			b.dropPart(context.Background(), p)
		}
	}
	b.parts = nil
}

// pollParts is pollOnce for a partitioned service: the sequencer, then
// each partition of this instance in turn.
func (b *EventBus) pollParts(ctx context.Context, kind pollKind) (bool, error) {
	b.adoptService(true)
	if b.parts == nil {
		b.parts = map[string]*part{}
	}
	now := time.Now()
	if !b.sequenceBusy.Load() && (kind != pollQuick || now.Sub(b.lastSequenced) >= b.opts.RunInterval) {
		b.lastSequenced = now
		if now.Sub(b.lastTidied) >= tidyEvery {
			b.lastTidied = now
			if _, err := b.tidyRuns(ctx, holeSettle, holeExpire, sweepEvery); err != nil {
				b.log.Warn("eventbus: sequencer upkeep", "err", err)
			}
		}
		if _, err := b.sequence(ctx); err != nil {
			return false, err
		}
	}
	more := false
	for _, p := range b.targets(ctx) {
		if ctx.Err() != nil {
			return more, nil
		}
		b.enter(p)
		m, err := b.pollPart(ctx, kind, now)
		b.leave()
		if err != nil {
			return more, err
		}
		more = more || m
	}
	return more, nil
}

// pollPart takes or renews the current partition's lease and runs its
// batch and retry phases.
func (b *EventBus) pollPart(ctx context.Context, kind pollKind, now time.Time) (bool, error) {
	l, err := b.ensureLease(ctx)
	if err != nil || l == nil {
		return false, err
	}
	if l.offset >= b.consumeCap() {
		// Drained to the switch point: hand the partition to the switch.
		p := b.cur
		b.leave()
		b.dropPart(ctx, p)
		b.enter(p)
		return false, nil
	}
	moreEvents, err := b.batchPhase(ctx, l)
	if err != nil {
		return false, err
	}
	moreRetries, err := b.retryIfDue(ctx, l, kind, now)
	if err != nil {
		return false, err
	}
	return moreRetries || moreEvents, nil
}

// releaseParts releases every partition on a graceful stop and leaves the
// service's members, so that the others take over at their next poll.
func (b *EventBus) releaseParts(ctx context.Context) {
	for row, p := range b.parts {
		b.dropPart(ctx, p)
		delete(b.parts, row)
	}
	if !b.viewAt.IsZero() {
		if err := b.st.LeaveMember(ctx, b.service, b.owner); err != nil && !errors.Is(err, context.Canceled) {
			b.log.Warn("eventbus: leave members", "err", err)
		}
	}
}

// releaseLease hands the service over at once on a graceful stop. It goes by
// owner alone: the lease may still name this instance after it stopped
// trusting it (a renewal that timed out), and no other instance can hold a
// lease that names this one.
func (b *EventBus) releaseLease(ctx context.Context) {
	held := b.lease
	b.lease = nil
	if !b.registered.Load() {
		return
	}
	b.releaseParts(ctx)
	if err := b.st.ReleaseLease(ctx, b.service, b.owner); err != nil {
		b.log.Warn("eventbus: release lease", "err", err)
	} else {
		b.observeLease(ctx, LeaseReleased, held)
	}
}
