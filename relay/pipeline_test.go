//go:build unix

package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestRelayPipelineOrderAcrossRestart: a backlog of few senders with many
// events each, so that every batch holds hundreds of one sender's events
// pipelined one after the other; the private nats-server is killed
// (SIGKILL) mid-drain, twice, and started again. The connection keeps
// nats.go's default reconnect buffer: the one-unacked-publish-per-sender
// rule alone must keep each sender's order. Every event is in the stream
// once, in its sender's commit order.
func TestRelayPipelineOrderAcrossRestart(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, database *dbtest.Database) {
		const senders, perSender, chunk = 4, 2000, 250
		srv := privateNATS(t)
		db := database.Open(t)
		_, js := connect(t, srv.url())
		s := newStream(t, js)
		producer := newProducer(t, db)
		p := &produced{ids: map[string][]string{}}
		for from := 0; from < perSender; from += chunk {
			for k := range senders {
				evts, err := newEvents(senderName(k), from, chunk)
				if err != nil {
					t.Fatal(err)
				}
				if err := producer.Dispatch(context.Background(), evts...); err != nil {
					t.Fatal(err)
				}
				p.add(evts)
			}
		}
		total := p.total()
		r := newRelay(t, db, js, s, "relay")
		run(t, r.Run)
		for _, at := range []int{total / 5, total / 2} {
			waitFor(t, 2*time.Minute, "the stream to fill up to the kill", func() bool { return s.msgs(t, js) >= uint64(at) })
			failures := r.Stats().Failures
			srv.kill(t)
			waitFor(t, time.Minute, "the relay to see publishes fail", func() bool { return r.Stats().Failures > failures })
			srv.start(t)
		}
		waitFor(t, 2*time.Minute, "every event in the stream", func() bool { return s.msgs(t, js) >= uint64(total) })
		waitFor(t, time.Minute, "the relay to finish", func() bool { return pending(t, r.Bus()) == 0 })
		checkStream(t, p, s.events(t, js))
		t.Logf("relay: %+v", r.Stats())
	})
}
