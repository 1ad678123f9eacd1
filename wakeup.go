package eventbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/dddbus/eventbus/internal/store"
)

// Wake-ups. A bus polls every RunInterval; a wake-up makes it poll at once.
//
// In one process, Notify (which the engine's post-commit hook calls, and
// Dispatch after a transaction of its own) wakes every started bus of the
// process on the same database and table prefix, whichever bus it is
// called on: the producing bus the engine was built from usually is not
// started, while the consuming buses are. Started buses join the
// database's entry in a process-wide table (wakeHubs) for the time Start
// runs; the entry goes with the last one, so nothing accumulates.
//
// Across processes, while at least one bus of the process runs on the
// database, one goroutine per database (the hub's watcher) learns of
// others' commits and wakes them all:
//
//   - PostgreSQL (ListenNotify, the default): Dispatch issues a NOTIFY in
//     the transaction that writes the events, so it is delivered if and only
//     if that transaction commits; the watcher LISTENs on a connection of
//     its own (not one of the pool, which may hold a single connection),
//     reconnects with backoff when it is lost, and wakes the buses after
//     each reconnection (a notification sent meanwhile is lost).
//     Notifications are coalesced: each bus issues at most one per
//     announceEvery in a transaction, since every committing transaction
//     that sent one takes a lock shared by the whole server at commit.
//     While transactions skip theirs (for owedHorizon after the last
//     skip), Notify after each commit makes sure that a NOTIFY follows:
//     one carried by a later transaction, or at the end of a burst one of
//     its own, outside any transaction and without waiting for its WAL
//     flush (checkOwed). What can still be lost (a Dispatch in a caller's
//     transaction without Notify afterwards; a transaction committing more
//     than owedHorizon after its skip; a later transaction carrying the
//     NOTIFY that rolls back; a NOTIFY sent while the listener
//     reconnects) costs at most one poll: polling stays the fallback.
//   - MySQL/MariaDB and SQLite (and PostgreSQL without ListenNotify): the
//     watcher reads the change probe every ChangeProbeInterval, one
//     index-only read of the highest event id and of last_seq, and wakes
//     the buses when it changes. A transaction that commits after one with
//     a higher id changes neither until some bus sequences its events (its
//     own process's, woken by Notify, or any poll): at worst one poll.

// announceEvery is the least time between two NOTIFYs of one bus.
const announceEvery = 5 * time.Millisecond

// processToken names this process in its NOTIFYs, which its own
// listeners ignore (its buses are woken directly).
var processToken = func() string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}()

// wakeHub is one database's entry: its started buses and their watcher.
type wakeHub struct {
	buses  map[*EventBus]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

var wakeHubs = struct {
	sync.Mutex
	m map[string]*wakeHub
}{m: map[string]*wakeHub{}}

// wakeLocal wakes this bus's poller.
func (b *EventBus) wakeLocal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// wakeProcess wakes every started bus of the process on b's database, and
// b itself.
func (b *EventBus) wakeProcess() {
	b.wakeLocal()
	wakeAll(b.st.Identity())
}

// wakeAll wakes the started buses of the database key.
func wakeAll(key string) {
	wakeHubs.Lock()
	defer wakeHubs.Unlock()
	if h := wakeHubs.m[key]; h != nil {
		for o := range h.buses {
			o.wakeLocal()
		}
	}
}

// joinWakeHub adds a started bus to its database's entry, starting the
// watcher with the first; leave removes it, and the last one out stops
// the watcher and waits for it.
func (b *EventBus) joinWakeHub() (leave func()) {
	key := b.st.Identity()
	wakeHubs.Lock()
	h := wakeHubs.m[key]
	if h == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h = &wakeHub{buses: map[*EventBus]struct{}{}, cancel: cancel, done: make(chan struct{})}
		wakeHubs.m[key] = h
		go func() {
			defer close(h.done)
			b.watch(ctx, key)
		}()
	}
	h.buses[b] = struct{}{}
	wakeHubs.Unlock()
	return func() {
		wakeHubs.Lock()
		delete(h.buses, b)
		last := len(h.buses) == 0
		if last {
			delete(wakeHubs.m, key)
		}
		wakeHubs.Unlock()
		if last {
			h.cancel()
			<-h.done
		}
	}
}

// watch learns of other processes' commits until ctx is done: by
// listening (PostgreSQL) or by the change probe, with the settings of the
// bus that started it.
func (b *EventBus) watch(ctx context.Context, key string) {
	if b.listens() {
		b.listen(ctx, key)
		return
	}
	if b.opts.ChangeProbeInterval > 0 {
		b.probe(ctx, key)
	}
}

// listens reports whether the bus learns of other processes' commits by
// LISTEN/NOTIFY.
func (b *EventBus) listens() bool {
	return b.opts.ListenNotify && b.st.Announces() && b.dsn != ""
}

// listen keeps a listener connected, reconnecting with backoff (from
// 100ms up to 10s), and wakes the buses after each connection.
func (b *EventBus) listen(ctx context.Context, key string) {
	var backoff time.Duration
	for ctx.Err() == nil {
		began := time.Now()
		err := b.st.Listen(ctx, store.ListenParams{
			DSN:       b.dsn,
			AppName:   b.ListenerName(),
			Self:      processToken,
			Listening: func() { wakeAll(key) }, // what was sent while it was away
			Wake:      func() { wakeAll(key) },
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = 0
		}
		backoff = nextBackoff(backoff, 100*time.Millisecond)
		b.log.Warn("eventbus: wake-up listener lost; reconnecting (polling meanwhile)", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// probe reads the change probe every ChangeProbeInterval and wakes the
// buses when it changed, and after its first read (what committed before
// it is then sure to be seen).
func (b *EventBus) probe(ctx context.Context, key string) {
	tick := time.NewTicker(b.opts.ChangeProbeInterval)
	defer tick.Stop()
	var last store.ChangeMark
	known, failing := false, false
	for {
		rctx, cancel := context.WithTimeout(ctx, max(time.Second, b.opts.ChangeProbeInterval))
		m, err := b.st.ChangeMark(rctx)
		cancel()
		switch {
		case err != nil:
			if !failing && ctx.Err() == nil {
				b.log.Warn("eventbus: change probe failed (polling meanwhile)", "err", err)
			}
			failing = true
		case !known || m != last:
			wakeAll(key)
			failing, known, last = false, true, m
		default:
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// owedHorizon: after a transaction skipped its NOTIFY, each Notify (after
// a commit) makes sure that a NOTIFY follows, for this long; a
// transaction that commits later than this after its Dispatch may wait
// for a poll.
const owedHorizon = 10 * time.Second

// announces reports whether b sends wake-up notifications.
func (b *EventBus) announces() bool { return b.opts.ListenNotify && b.st.Announces() }

// announceIn issues the NOTIFY in the caller's transaction on, unless a
// transaction of b carried one less than announceEvery ago: then this one
// skips it, and the Notify after its commit makes sure one follows.
func (b *EventBus) announceIn(ctx context.Context, on store.Conn) error {
	if !b.announces() {
		return nil
	}
	now := time.Now().UnixNano()
	if last := b.ann.issued.Load(); now-last < int64(announceEvery) || !b.ann.issued.CompareAndSwap(last, now) {
		b.ann.lastSkip.Store(now)
		return nil
	}
	return b.st.Announce(ctx, on, processToken)
}

// announceOwed, after a commit, makes sure a NOTIFY follows it if
// transactions skipped theirs lately (see owedHorizon): one carried by a
// later transaction, or else one of its own (checkOwed).
func (b *EventBus) announceOwed() {
	if !b.announces() {
		return
	}
	now := time.Now().UnixNano()
	b.ann.notified.Store(now)
	if now-b.ann.lastSkip.Load() < int64(owedHorizon) {
		b.checkLater(0)
	}
}

// checkLater schedules checkOwed, unless one is pending: it starts after
// this call, so it covers it.
func (b *EventBus) checkLater(wait time.Duration) {
	if !b.ann.pending.CompareAndSwap(false, true) {
		return
	}
	since := time.Now().UnixNano()
	time.AfterFunc(max(wait, 2*announceEvery), func() { b.checkOwed(since) })
}

// checkOwed runs 2*announceEvery after a commit's Notify (since: when it
// was scheduled). If a transaction carried a NOTIFY after the last Notify,
// every commit so far is followed by one. If transactions still carry
// them (a burst goes on) it checks again later. Otherwise it sends one of
// its own, outside any transaction. So under a steady load the
// transactions' own NOTIFYs (one per announceEvery) do, and a NOTIFY of
// its own goes out only at the end of a burst. Its goroutine ends within
// 2*announceEvery plus the NOTIFY's round trip.
func (b *EventBus) checkOwed(since int64) {
	b.ann.pending.Store(false) // first: a later Notify schedules another check
	issued := b.ann.issued.Load()
	switch {
	case issued > b.ann.notified.Load():
		return
	case issued > since:
		b.checkLater(0)
		return
	}
	b.announceNow()
}

// announceLater sends a NOTIFY of its own after a commit of the bus's own
// transaction, on a timer, never in the caller's path: at once if the
// last was announceEvery ago, else once that much has passed. A call while
// one is pending is covered by it, since it starts after.
func (b *EventBus) announceLater() {
	if !b.ann.pending.CompareAndSwap(false, true) {
		return
	}
	wait := max(0, time.Duration(b.ann.sent.Load()+int64(announceEvery)-time.Now().UnixNano()))
	time.AfterFunc(wait, func() {
		b.ann.pending.Store(false) // first: a later call schedules another
		b.announceNow()
	})
}

// announceNow sends a NOTIFY outside any transaction.
func (b *EventBus) announceNow() {
	b.ann.sent.Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.st.Announce(ctx, nil, processToken); err != nil {
		b.log.Debug("eventbus: wake-up notification not sent (others poll)", "err", err)
	}
}

// ListenerName is the application_name of the connection on which this
// process listens for the wake-ups of b's database (PostgreSQL; see
// pg_stat_activity), whether or not it is connected; "" on other
// databases.
func (b *EventBus) ListenerName() string {
	c, ok := b.st.(interface{ Channel() string })
	if !ok || !b.st.Announces() {
		return ""
	}
	return "eventbus listener " + c.Channel()
}

// Notify wakes the poller of every started bus of this process on the
// same database and table prefix (any service), and of b. On PostgreSQL it
// also sends the wake-up notification for other processes that a
// coalesced Dispatch left owing (see wakeup.go). Call it after committing
// a transaction in which you dispatched events yourself; the engine does
// it for you.
func (b *EventBus) Notify() {
	b.wakeProcess()
	b.announceOwed()
}

// committed is Notify after a transaction of the bus's own wrote or
// published events: it owes other processes a notification.
func (b *EventBus) committed() {
	b.wakeProcess()
	if b.announces() {
		b.ann.notified.Store(time.Now().UnixNano()) // a check pending in its stead must cover it too
		b.announceLater()
	}
}
