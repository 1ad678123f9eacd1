package relay

import (
	"sync"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/nats-io/nats.go/jetstream"
)

// delivery is a message this subscriber holds: received, not yet acked,
// naked or termed.
type delivery struct {
	msg       jetstream.Msg
	md        *jetstream.MsgMetadata
	evt       *ddd.DomainEvent
	decodeErr error     // not a relayed event: straight to the dead letters
	touched   time.Time // when its ack timer last restarted; guarded by lanes.mu
}

// lanes runs the deliveries of each sender one at a time, in arrival order,
// on a goroutine per sender that has deliveries, with at most concurrency
// handler calls at once (the semaphore is taken around the handler only,
// so a FIFO sender waiting for its retry holds no slot).
type lanes struct {
	s        *Subscriber
	sem      chan struct{}
	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu     sync.Mutex
	queues map[string][]*delivery // by sender
	held   map[uint64]*delivery   // by stream sequence
}

func newLanes(s *Subscriber) *lanes {
	return &lanes{
		s:        s,
		sem:      make(chan struct{}, s.cfg.concurrency),
		stopping: make(chan struct{}),
		queues:   map[string][]*delivery{},
		held:     map[uint64]*delivery{},
	}
}

// receive is the consumer's callback (called one message at a time, in
// delivery order): it queues the message behind its sender's earlier ones.
func (l *lanes) receive(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		l.s.log.Error("relay: subscriber: message without JetStream metadata; ignored", "subject", msg.Subject(), "err", err)
		return
	}
	d := &delivery{msg: msg, md: md, touched: time.Now()}
	d.evt, d.decodeErr = Decode(msg.Headers(), msg.Data())
	sender := msg.Headers().Get(HeaderSender)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.held[md.Sequence.Stream]; ok {
		// Delivered again while still held here (its ack timer ran out):
		// the copy held settles it.
		return
	}
	l.held[md.Sequence.Stream] = d
	q, busy := l.queues[sender]
	l.queues[sender] = append(q, d)
	if !busy {
		l.wg.Add(1)
		go l.run(sender)
	}
}

// run settles a sender's deliveries in order until its queue is empty.
func (l *lanes) run(sender string) {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		q := l.queues[sender]
		if len(q) == 0 {
			delete(l.queues, sender)
			l.mu.Unlock()
			return
		}
		d := q[0]
		q[0] = nil
		l.queues[sender] = q[1:]
		l.mu.Unlock()
		select {
		case <-l.stopping:
			l.s.settle(d, "nak", d.msg.Nak())
		default:
			l.s.process(l, d)
		}
		l.mu.Lock()
		delete(l.held, d.md.Sequence.Stream)
		l.mu.Unlock()
	}
}

// acquire takes a handler slot; release gives it back.
func (l *lanes) acquire() { l.sem <- struct{}{} }
func (l *lanes) release() { <-l.sem }

// pause waits d, unless the subscriber stops first; it returns what was
// left of d then (0 if it waited d).
func (l *lanes) pause(d time.Duration) time.Duration {
	t := time.NewTimer(d)
	defer t.Stop()
	start := time.Now()
	select {
	case <-t.C:
		return 0
	case <-l.stopping:
		return max(d-time.Since(start), time.Nanosecond)
	}
}

// stop makes the lanes return the deliveries they have not started.
func (l *lanes) stop() { l.stopOnce.Do(func() { close(l.stopping) }) }

// wait returns when every lane has finished.
func (l *lanes) wait() { l.wg.Wait() }

// keepAlive restarts the ack timer (InProgress) of every delivery held
// longer than every, until quit is closed: a message waiting behind its
// sender's earlier ones, or in a long handler call, is not delivered a
// second time meanwhile.
func (l *lanes) keepAlive(quit <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case now := <-t.C:
			var due []*delivery
			l.mu.Lock()
			for _, d := range l.held {
				if now.Sub(d.touched) >= every {
					d.touched = now
					due = append(due, d)
				}
			}
			l.mu.Unlock()
			for _, d := range due {
				_ = d.msg.InProgress() // best effort: a lost one means a redelivery, which receive ignores
			}
		}
	}
}
