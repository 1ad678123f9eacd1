package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishBatch is the relay's batch handler (eventbus.BatchHandler): it
// publishes evts pipelined and returns how many of them, from the first,
// JetStream acknowledged.
//
// Order: each sender has at most one publish in flight; its next event is
// sent only once the previous one's ack arrived. All senders of the batch
// are in flight together, up to maxInFlight publishes. So a sender's event
// reaches the stream only after its predecessor is stored: a failure (a
// refused message, a lost connection, an ack that does not come) can never
// let a later event of the sender be stored before an earlier one, whatever
// the connection buffers during a reconnect, and the failed sender's later
// events wait for the next call. Events of other senders after the first
// failure (in log order) are not sent either: they would be redelivered
// anyway.
//
// finished is the prefix, in log order, whose acks all arrived; the rest
// is delivered again by the bus and the events of it that were stored are
// duplicates JetStream drops (Nats-Msg-Id). If the first unfinished event
// can never be published (no valid subject, too large) the error is
// ddd.Permanent and the bus makes it a dead letter; any other failure is
// returned as is and the bus backs off before the next call.
func (r *Relay) publishBatch(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
	p := pipeline{r: r, ctx: ctx, evts: evts, errs: make([]error, len(evts)), acked: make([]bool, len(evts)),
		perm: make([]bool, len(evts)), firstBad: len(evts)}
	p.run()
	n := 0
	for n < len(evts) && p.acked[n] {
		n++
	}
	if n == len(evts) {
		return n, nil
	}
	err := p.errs[n]
	if err == nil { // not sent: a stop, or behind an earlier failure
		err = p.firstErr
		if ctx.Err() != nil {
			err = fmt.Errorf("relay: stopped: %w", ctx.Err())
		}
	}
	if err == nil {
		err = errors.New("relay: event not published")
	}
	failed := 0
	for i := range evts {
		if p.errs[i] != nil {
			failed++
		}
	}
	r.cfg.log.Warn("relay: publishing a batch failed; the bus delivers its unpublished rest again",
		"events", len(evts), "published", n, "failed", failed, "first_failed", evts[n].ID, "err", err)
	if p.perm[n] {
		return n, ddd.Permanent(err)
	}
	return n, err
}

// pipeline is one publishBatch call's state.
type pipeline struct {
	r        *Relay
	ctx      context.Context
	evts     []*ddd.DomainEvent
	acked    []bool
	perm     []bool
	errs     []error
	firstBad int // index of the first failure (len(evts): none)
	firstErr error
}

func (p *pipeline) run() {
	// Each sender's events, in log order; senders by first appearance.
	queues := map[string][]int{}
	var ready []string
	for i, e := range p.evts {
		if _, ok := queues[e.Sender]; !ok {
			ready = append(ready, e.Sender)
		}
		queues[e.Sender] = append(queues[e.Sender], i)
	}
	// Publishes waiting for their ack, oldest first. One stream acks in the
	// order it received, so waiting for the oldest costs nothing, and no
	// goroutine per publish is needed.
	var inFlight []sent
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for len(ready) > 0 && len(inFlight) < p.r.cfg.maxInFlight && p.ctx.Err() == nil {
			s := ready[0]
			ready = ready[1:]
			i := queues[s][0]
			if i > p.firstBad {
				continue // would be delivered again anyway
			}
			if f, ok := p.send(i); ok {
				inFlight = append(inFlight, f)
			}
		}
		if len(inFlight) == 0 {
			return
		}
		f := inFlight[0]
		inFlight = inFlight[1:]
		ack, err := p.wait(f, timer)
		if err != nil {
			p.fail(f.i, fmt.Errorf("publish %s to %s: %w", p.evts[f.i].ID, f.subject, err))
			continue // the sender stops here
		}
		p.acked[f.i] = true
		if ack.Duplicate {
			p.r.duplicates.Add(1)
		} else {
			p.r.published.Add(1)
		}
		s := p.evts[f.i].Sender
		if q := queues[s][1:]; len(q) > 0 {
			queues[s] = q
			ready = append(ready, s)
		}
	}
}

// sent is a publish waiting for its ack.
type sent struct {
	i       int
	subject string
	fut     jetstream.PubAckFuture
	at      time.Time
}

// send publishes evts[i] asynchronously; it reports false if the publish
// failed at once.
func (p *pipeline) send(i int) (sent, bool) {
	evt := p.evts[i]
	subject, err := p.r.subjectOf(evt)
	if err == nil {
		err = ValidateSubject(subject)
	}
	if err != nil {
		p.failPermanent(i, fmt.Errorf("subject of %s %s: %w", evt.Type, evt.ID, err))
		return sent{}, false
	}
	msg, err := Encode(subject, evt)
	if err != nil {
		p.failPermanent(i, err)
		return sent{}, false
	}
	fut, err := p.r.js.PublishMsgAsync(msg)
	if err != nil {
		p.fail(i, fmt.Errorf("publish %s to %s: %w", evt.ID, subject, err))
		return sent{}, false
	}
	return sent{i: i, subject: subject, fut: fut, at: time.Now()}, true
}

// wait returns f's ack, or its error, the publish timeout (counted from
// the send), or the call's context ending.
func (p *pipeline) wait(f sent, timer *time.Timer) (*jetstream.PubAck, error) {
	select { // most acks are in already: no timer then
	case ack := <-f.fut.Ok():
		return ack, nil
	case err := <-f.fut.Err():
		return nil, err
	default:
	}
	timer.Reset(time.Until(f.at.Add(p.r.cfg.publishTimeout)))
	defer timer.Stop()
	select {
	case ack := <-f.fut.Ok():
		return ack, nil
	case err := <-f.fut.Err():
		return nil, err
	case <-timer.C:
		return nil, fmt.Errorf("no ack within %s: %w", p.r.cfg.publishTimeout, context.DeadlineExceeded)
	case <-p.ctx.Done():
		return nil, p.ctx.Err()
	}
}

func (p *pipeline) fail(i int, err error) {
	p.r.failures.Add(1)
	if permanentPublishError(err) {
		p.failPermanent(i, err)
		return
	}
	p.note(i, err)
}

func (p *pipeline) failPermanent(i int, err error) {
	p.perm[i] = true
	p.note(i, err)
}

func (p *pipeline) note(i int, err error) {
	p.errs[i] = err
	if i < p.firstBad {
		p.firstBad, p.firstErr = i, err
	}
}

// permanentPublishError reports errors that retrying cannot fix.
func permanentPublishError(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return true
	}
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject)
}
