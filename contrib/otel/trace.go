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
	// The consumer span's fixed options, built once: each option is an
	// allocation per span otherwise.
	consumerKind = trace.WithSpanKind(trace.SpanKindConsumer)
	processAttrs = trace.WithAttributes(systemAttr, semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess)
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
func (i *Instrumentation) DispatchStart(ctx context.Context, e eventbus.DispatchStart) context.Context {
	if i.noTrace {
		return ctx
	}
	op, opType := operation(e.Transactional)
	dest := destination(e)
	attrs := []attribute.KeyValue{systemAttr, semconv.MessagingOperationName(op), opType, ServiceKey.String(e.Service)}
	name := op
	if dest != "" {
		name += " " + dest
		attrs = append(attrs, semconv.MessagingDestinationName(dest))
	}
	if len(e.Events) == 1 {
		attrs = append(attrs, semconv.MessagingMessageID(e.Events[0].ID), SenderKey.String(e.Events[0].Sender))
	} else {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(e.Events)))
	}
	ctx, _ = i.tracer.Start(ctx, name, producerKind, trace.WithAttributes(attrs...))
	for _, evt := range e.Events {
		if evt.Metadata == nil {
			evt.Metadata = make(map[string]string, 2)
		}
		i.prop.Inject(ctx, propagation.MapCarrier(evt.Metadata))
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
// linked to it), carried by the handler's context.
func (i *Instrumentation) HandlerStart(ctx context.Context, e eventbus.HandlerStart) context.Context {
	if i.noTrace {
		return ctx
	}
	evt := e.Event
	var buf [5]trace.SpanStartOption
	opts := append(buf[:0], consumerKind, processAttrs,
		trace.WithAttributes(semconv.MessagingDestinationName(evt.Type), semconv.MessagingMessageID(evt.ID),
			semconv.MessagingConsumerGroupName(e.Service), SenderKey.String(evt.Sender),
			SeqKey.Int64(e.Seq), AttemptKey.Int(e.Attempt)))
	producer := trace.SpanContextFromContext(i.prop.Extract(context.Background(), propagation.MapCarrier(evt.Metadata)))
	switch {
	case !producer.IsValid():
		// No producer context: a root span, not a child of whatever the
		// bus's own context carries.
		opts = append(opts, newRoot)
	case i.linkOnly:
		opts = append(opts, newRoot, trace.WithLinks(trace.Link{SpanContext: producer}))
	default:
		ctx = trace.ContextWithRemoteSpanContext(ctx, producer)
	}
	ctx, _ = i.tracer.Start(ctx, i.processName(evt.Type), opts...)
	return ctx
}

// HandlerEnd records the outcome on the consumer span and ends it: a
// failure as an error (with an event "dead_letter" when the event became
// one), and counts it.
func (i *Instrumentation) HandlerEnd(ctx context.Context, e eventbus.HandlerEnd) {
	if i.noTrace {
		i.recordHandler(ctx, e)
		return
	}
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(OutcomeKey.String(e.Outcome.String()))
	if e.Err != nil {
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, firstLine(e.Err))
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(e.Err)))
	}
	switch e.Outcome {
	case eventbus.OutcomeRetry:
		span.SetAttributes(RetryInKey.Float64(e.RetryIn.Seconds()))
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

// processName is "process TYPE", built once per type.
func (i *Instrumentation) processName(typ string) string {
	if n, ok := i.names.Load(typ); ok {
		return n.(string)
	}
	n := "process " + typ
	i.names.Store(typ, n)
	return n
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
// (its innermost wrapped one would often be *errors.errorString).
func errorType(err error) string {
	return fmt.Sprintf("%T", err)
}
