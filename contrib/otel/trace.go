package eventbusotel

import (
	"context"
	"fmt"

	"github.com/dddbus/eventbus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

var (
	systemAttr = semconv.MessagingSystemKey.String(System)
	// Fixed span options, built once: each option is an allocation per
	// span otherwise.
	consumerKind = trace.WithSpanKind(trace.SpanKindConsumer)
	newRoot      = trace.WithNewRoot()
	producerKind = trace.WithSpanKind(trace.SpanKindProducer)
)

// destination is the event type of events when they share one ("" otherwise).
func destination(e eventbus.DispatchStart) string {
	t := e.Events[0].Type
	for _, evt := range e.Events[1:] {
		if evt.Type != t {
			return ""
		}
	}
	return t
}

func operation(transactional bool) (string, attribute.KeyValue) {
	if transactional {
		// DispatchBegin creates messages that Commit publishes later.
		return "create", semconv.MessagingOperationTypeCreate
	}
	return "send", semconv.MessagingOperationTypeSend
}

// DispatchStart starts the producer span ("send TYPE", or "create TYPE"
// for DispatchBegin) and writes its context into every event's metadata.
// The attributes a sampler may look at (system, operation, destination,
// service) are given at the start; the message's own (id, sender, batch
// size) only to a span that records.
func (i *Instrumentation) DispatchStart(ctx context.Context, e eventbus.DispatchStart) context.Context {
	if i.noTrace {
		return ctx
	}
	start := i.producerStart(e.Service, destination(e), e.Transactional)
	ctx, span := i.tracer.Start(ctx, start.name, start.opts...)
	if span.IsRecording() {
		if len(e.Events) == 1 {
			span.SetAttributes(semconv.MessagingMessageID(e.Events[0].ID), SenderKey.String(e.Events[0].Sender))
		} else {
			span.SetAttributes(semconv.MessagingBatchMessageCount(len(e.Events)))
		}
	}
	// Every event carries the same context: written once, copied.
	first := e.Events[0]
	if first.Metadata == nil {
		first.Metadata = make(map[string]string, 2)
	}
	i.prop.Inject(ctx, propagation.MapCarrier(first.Metadata))
	for _, evt := range e.Events[1:] {
		if evt.Metadata == nil {
			evt.Metadata = make(map[string]string, 2)
		}
		for _, f := range i.fields {
			if v, ok := first.Metadata[f]; ok {
				evt.Metadata[f] = v
			} else {
				delete(evt.Metadata, f)
			}
		}
	}
	return ctx
}

// DispatchEnd ends the producer span, with the error if there was one.
func (i *Instrumentation) DispatchEnd(ctx context.Context, e eventbus.DispatchEnd) {
	if i.noTrace {
		i.recordDispatch(ctx, e)
		return
	}
	span := trace.SpanFromContext(ctx)
	if e.Err != nil {
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, firstLine(e.Err))
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(e.Err)))
	}
	span.End()
	i.recordDispatch(ctx, e)
}

// HandlerStart starts the consumer span ("process TYPE") of one handler
// call: a child of the producer's span (or, with WithLinkOnly, a new trace
// linked to it), carried by the handler's context. As for the producer,
// the attributes a sampler may look at are given at the start (built once
// per service and type); the call's own (message id, sender, sequence,
// attempt) are set with its outcome when it ends, and only on a span that
// records, so an unsampled call costs little more than the span's context.
func (i *Instrumentation) HandlerStart(ctx context.Context, e eventbus.HandlerStart) context.Context {
	if i.noTrace {
		return ctx
	}
	evt := e.Event
	start := i.consumerStart(e.Service, evt.Type)
	opts := start.opts // a child of the producer's span
	ctx = i.extract(ctx, evt.Metadata)
	switch producer := trace.SpanContextFromContext(ctx); {
	case !producer.IsValid() || !producer.IsRemote():
		// No producer context: a root span, not a child of whatever the
		// bus's own context carries.
		opts = start.rootOpts
	case i.linkOnly:
		opts = append(start.rootOpts[:len(start.rootOpts):len(start.rootOpts)], trace.WithLinks(trace.Link{SpanContext: producer}))
	}
	ctx, _ = i.tracer.Start(ctx, start.name, opts...)
	return ctx
}

// extract adds what the producer's metadata carries to ctx: its span
// context as the remote parent, and whatever else the propagator reads
// (baggage, with a propagator that carries it). Without any of the
// propagator's fields there is nothing to parse.
func (i *Instrumentation) extract(ctx context.Context, md map[string]string) context.Context {
	for _, f := range i.fields {
		if _, ok := md[f]; ok {
			return i.prop.Extract(ctx, propagation.MapCarrier(md))
		}
	}
	return ctx
}

// HandlerEnd sets the call's attributes and outcome on the consumer span
// and ends it: a failure as an error (with an event "dead_letter" when the
// event became one), and counts it.
func (i *Instrumentation) HandlerEnd(ctx context.Context, e eventbus.HandlerEnd) {
	if i.noTrace {
		i.recordHandler(ctx, e)
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		span.End()
		i.recordHandler(ctx, e)
		return
	}
	// The call's own attributes, set once: each SetAttributes call on a
	// recording span grows its attribute list again.
	evt := e.Event
	attrs := make([]attribute.KeyValue, 0, 5) // 7 with an error and a retry delay
	attrs = append(attrs, semconv.MessagingMessageID(evt.ID), SenderKey.String(evt.Sender),
		SeqKey.Int64(e.Seq), AttemptKey.Int(e.Attempt), OutcomeKey.String(e.Outcome.String()))
	if e.Err != nil {
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, firstLine(e.Err))
		attrs = append(attrs, semconv.ErrorTypeKey.String(errorType(e.Err)))
	}
	if e.Outcome == eventbus.OutcomeRetry {
		attrs = append(attrs, RetryInKey.Float64(e.RetryIn.Seconds()))
	}
	span.SetAttributes(attrs...)
	switch e.Outcome {
	case eventbus.OutcomeDeadLetter:
		span.AddEvent("dead_letter", trace.WithAttributes(AttemptKey.Int(e.Attempt)))
	case eventbus.OutcomeAbandoned:
		span.SetStatus(codes.Error, "abandoned: the bus stopped waiting for the handler")
	}
	span.End()
	i.recordHandler(ctx, e)
}

// SequencerBatch counts a sequencer batch.
func (i *Instrumentation) SequencerBatch(ctx context.Context, e eventbus.SequencerBatch) {
	i.recordSequencer(ctx, e)
}

// LeaseChange counts a lease change.
func (i *Instrumentation) LeaseChange(ctx context.Context, e eventbus.LeaseChange) {
	i.recordLease(ctx, e)
}

// spanStart is a span's name and its start options (kind and the
// attributes a sampler may look at), built once per (kind, service, type)
// and kept: each option, and the list that passes them, is otherwise an
// allocation per span.
type spanStart struct {
	name     string
	opts     []trace.SpanStartOption // a producer's span, or a consumer's child of the producer's
	rootOpts []trace.SpanStartOption // a consumer's span in a new trace
}

type startKey struct {
	kind          int8 // 0 process, 1 send, 2 create
	service, dest string
}

func (i *Instrumentation) consumerStart(service, typ string) *spanStart {
	return i.spanStart(startKey{0, service, typ}, func() *spanStart {
		attrs := trace.WithAttributes(systemAttr, semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess, semconv.MessagingDestinationName(typ), semconv.MessagingConsumerGroupName(service))
		return &spanStart{name: "process " + typ, opts: []trace.SpanStartOption{consumerKind, attrs},
			rootOpts: []trace.SpanStartOption{consumerKind, attrs, newRoot}}
	})
}

func (i *Instrumentation) producerStart(service, dest string, transactional bool) *spanStart {
	k := startKey{1, service, dest}
	if transactional {
		k.kind = 2
	}
	return i.spanStart(k, func() *spanStart {
		op, opType := operation(transactional)
		attrs := []attribute.KeyValue{systemAttr, semconv.MessagingOperationName(op), opType, ServiceKey.String(service)}
		name := op
		if dest != "" {
			name += " " + dest
			attrs = append(attrs, semconv.MessagingDestinationName(dest))
		}
		return &spanStart{name: name, opts: []trace.SpanStartOption{producerKind, trace.WithAttributes(attrs...)}}
	})
}

func (i *Instrumentation) spanStart(k startKey, build func() *spanStart) *spanStart {
	if v, ok := i.starts.Load(k); ok {
		return v.(*spanStart)
	}
	v, _ := i.starts.LoadOrStore(k, build())
	return v.(*spanStart)
}

func firstLine(err error) string {
	s := err.Error()
	for j := 0; j < len(s); j++ {
		if s[j] == '\n' {
			return s[:j]
		}
	}
	return s
}

// errorType is the low-cardinality error.type: the Go type of the error
// (its innermost wrapped one would often be *errors.errorString); "" for
// none.
func errorType(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("%T", err)
}
