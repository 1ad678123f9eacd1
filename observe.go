package eventbus

import (
	"context"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// WithObserver adds an observer (see Observer). Several may be added; they
// are called in the order given. A nil observer is ignored. Default none.
func WithObserver(obs Observer) Option {
	return func(o *Config) {
		switch {
		case obs == nil:
		case o.Observer == nil:
			o.Observer = obs
		default:
			if m, ok := o.Observer.(multiObserver); ok {
				o.Observer = append(m[:len(m):len(m)], obs)
			} else {
				o.Observer = multiObserver{o.Observer, obs}
			}
		}
	}
}

// multiObserver calls several observers in order.
type multiObserver []Observer

func (m multiObserver) DispatchStart(ctx context.Context, e DispatchStart) context.Context {
	for _, o := range m {
		ctx = o.DispatchStart(ctx, e)
	}
	return ctx
}

func (m multiObserver) DispatchEnd(ctx context.Context, e DispatchEnd) {
	for _, o := range m {
		o.DispatchEnd(ctx, e)
	}
}

func (m multiObserver) HandlerStart(ctx context.Context, e HandlerStart) context.Context {
	for _, o := range m {
		ctx = o.HandlerStart(ctx, e)
	}
	return ctx
}

func (m multiObserver) HandlerEnd(ctx context.Context, e HandlerEnd) {
	for _, o := range m {
		o.HandlerEnd(ctx, e)
	}
}

func (m multiObserver) SequencerBatch(ctx context.Context, e SequencerBatch) {
	for _, o := range m {
		o.SequencerBatch(ctx, e)
	}
}

func (m multiObserver) LeaseChange(ctx context.Context, e LeaseChange) {
	for _, o := range m {
		o.LeaseChange(ctx, e)
	}
}

// The bus's side: each call checks for an observer first (no cost without
// one) and recovers a panic.

// observerPanicked recovers a panic of an observer's method and logs it,
// at most once a minute per bus.
func (b *EventBus) observerPanicked(method string) {
	p := recover()
	if p == nil {
		return
	}
	now := time.Now().UnixNano()
	last := b.obsPanic.Load()
	if now-last >= int64(time.Minute) && b.obsPanic.CompareAndSwap(last, now) {
		b.log.Error("eventbus: observer panicked; ignored (logged at most once a minute)", "method", method, "panic", p)
	}
}

// observeDispatch reports a Dispatch or DispatchBegin and returns the
// context for its writes and the function to call with its error.
func (b *EventBus) observeDispatch(ctx context.Context, events []*ddd.DomainEvent, transactional bool) (context.Context, func(error)) {
	obs := b.opts.Observer
	if obs == nil {
		return ctx, func(error) {}
	}
	start := time.Now()
	octx := callStart(b, "DispatchStart", obs.DispatchStart, ctx, DispatchStart{Service: b.service, Time: start, Events: events, Transactional: transactional})
	return octx, func(err error) {
		defer b.observerPanicked("DispatchEnd")
		end := time.Now()
		obs.DispatchEnd(octx, DispatchEnd{Service: b.service, Events: events, Transactional: transactional, Err: err, Time: end, Duration: end.Sub(start)})
	}
}

// callStart calls an observer's start method; ctx if it panics or
// returns nil.
func callStart[E any](b *EventBus, method string, start func(context.Context, E) context.Context, ctx context.Context, e E) (out context.Context) {
	out = ctx
	defer b.observerPanicked(method)
	if c := start(ctx, e); c != nil {
		out = c
	}
	return out
}

// handlerObservation is one observed handler call, between its start and
// its end; the zero value is an unobserved call.
type handlerObservation struct {
	ctx   context.Context
	start time.Time
	seq   int64
	try   int
}

// observeHandlerStart reports a handler call about to start and returns
// the handler's context.
func (b *EventBus) observeHandlerStart(ctx context.Context, r *record, attempt int) (context.Context, handlerObservation) {
	obs := b.opts.Observer
	if obs == nil {
		return ctx, handlerObservation{}
	}
	o := handlerObservation{ctx: ctx, start: time.Now(), seq: r.seq, try: attempt}
	o.ctx = callStart(b, "HandlerStart", obs.HandlerStart, ctx, HandlerStart{Service: b.service, Event: r.evt, Seq: r.seq, Attempt: attempt, Time: o.start})
	return o.ctx, o
}

// observeHandlerEnd reports what became of the call; res has been through
// the retry strategy.
func (b *EventBus) observeHandlerEnd(o handlerObservation, evt *ddd.DomainEvent, res result) {
	if o.ctx == nil {
		return
	}
	end := time.Now()
	e := HandlerEnd{Service: b.service, Event: evt, Seq: o.seq, Attempt: o.try, Time: end, Duration: end.Sub(o.start)}
	switch res.verdict {
	case handled:
		e.Outcome = OutcomeHandled
	case skipped:
		e.Outcome = OutcomeSkipped
	case failed:
		e.Outcome, e.Err = OutcomeDeadLetter, res.err
		if res.retry {
			e.Outcome, e.RetryIn = OutcomeRetry, res.delay
		}
	default:
		e.Outcome = OutcomeAbandoned
	}
	defer b.observerPanicked("HandlerEnd")
	b.opts.Observer.HandlerEnd(o.ctx, e)
}

// observeLease reports a change of l.
func (b *EventBus) observeLease(ctx context.Context, kind LeaseChangeKind, l *lease) {
	obs := b.opts.Observer
	if obs == nil || l == nil {
		return
	}
	defer b.observerPanicked("LeaseChange")
	e := LeaseChange{Service: b.service, Owner: b.owner, Kind: kind, Epoch: l.epoch, Offset: l.offset}
	if l.row != b.service {
		e.Partition = l.row
	}
	obs.LeaseChange(ctx, e)
}
