package eventbusotel

import (
	"context"

	"github.com/dddbus/eventbus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Metric names (README.md, "Operating it", lists them with their attributes).
const (
	MetricSent            = "messaging.client.sent.messages"      // counter: events stored by Dispatch/DispatchBegin
	MetricDispatchTime    = "messaging.client.operation.duration" // histogram, s: one Dispatch/DispatchBegin call
	MetricProcessTime     = "messaging.process.duration"          // histogram, s: one handler call, by outcome (its count counts them)
	MetricLag             = "eventbus.consumer.lag"               // gauge: events after the offset
	MetricLagAge          = "eventbus.consumer.lag.age"           // gauge, s: age of the oldest of them
	MetricRetries         = "eventbus.consumer.retries"           // gauge: events waiting for a retry (or parked)
	MetricDeadLetters     = "eventbus.consumer.dead_letters"      // gauge: dead letters
	MetricTransactions    = "eventbus.transactions"               // gauge: pending and unresolved transactional messages
	MetricSequencerSize   = "eventbus.sequencer.batch.size"       // histogram: events sequenced per batch
	MetricSequencerTime   = "eventbus.sequencer.batch.duration"   // histogram, s
	MetricLeaseChanges    = "eventbus.lease.changes"              // counter: acquired, lost, released
	MetricStoreReadErrors = "eventbus.store.read.errors"          // counter: failed periodic reads of the gauges
)

// Bucket boundaries in seconds, as the messaging conventions recommend.
var secondsBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

type instruments struct {
	sent, leases, storeErrors          metric.Int64Counter
	dispatchTime, processTime, seqTime metric.Float64Histogram
	seqSize                            metric.Int64Histogram
	lag, retries, deadLetters, txs     metric.Int64ObservableGauge
	lagAge                             metric.Float64ObservableGauge
}

func (m *instruments) init(meter metric.Meter) error {
	var errs [12]error
	m.sent, errs[0] = meter.Int64Counter(MetricSent, metric.WithUnit("{message}"), metric.WithDescription("Events stored by Dispatch (send) or DispatchBegin (create)."))
	m.dispatchTime, errs[1] = meter.Float64Histogram(MetricDispatchTime, metric.WithUnit("s"), metric.WithDescription("Duration of a Dispatch or DispatchBegin call."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	m.processTime, errs[2] = meter.Float64Histogram(MetricProcessTime, metric.WithUnit("s"), metric.WithDescription("Duration of a handler call, by outcome: handled, skipped, retry, dead_letter, abandoned (failed = retry + dead_letter); its count counts the calls."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	m.lag, errs[3] = meter.Int64ObservableGauge(MetricLag, metric.WithUnit("{event}"), metric.WithDescription("Events a service has not consumed yet (after its offset, or not sequenced yet)."))
	m.lagAge, errs[4] = meter.Float64ObservableGauge(MetricLagAge, metric.WithUnit("s"), metric.WithDescription("Age of the oldest event a service has not consumed (0 when none)."))
	m.retries, errs[5] = meter.Int64ObservableGauge(MetricRetries, metric.WithUnit("{event}"), metric.WithDescription("Events in a service's retry store: waiting for a retry, or parked."))
	m.deadLetters, errs[6] = meter.Int64ObservableGauge(MetricDeadLetters, metric.WithUnit("{event}"), metric.WithDescription("A service's dead letters."))
	m.txs, errs[7] = meter.Int64ObservableGauge(MetricTransactions, metric.WithUnit("{transaction}"), metric.WithDescription("Transactional messages waiting for a resolution, by state."))
	m.seqSize, errs[8] = meter.Int64Histogram(MetricSequencerSize, metric.WithUnit("{event}"), metric.WithDescription("Events sequenced by one sequencer batch."),
		metric.WithExplicitBucketBoundaries(1, 10, 50, 100, 500, 1000, 2500, 5000))
	m.seqTime, errs[9] = meter.Float64Histogram(MetricSequencerTime, metric.WithUnit("s"), metric.WithDescription("Duration of one sequencer batch."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	m.leases, errs[10] = meter.Int64Counter(MetricLeaseChanges, metric.WithUnit("{change}"), metric.WithDescription("Lease changes of this process's instances: acquired, lost, released."))
	m.storeErrors, errs[11] = meter.Int64Counter(MetricStoreReadErrors, metric.WithUnit("{error}"), metric.WithDescription("Failed reads of the store's gauges."))
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// attrKey names one attribute set of the per-event metrics; the sets are
// built once and kept, so recording allocates nothing.
type attrKey struct {
	kind                       setKind
	service, typ, outcome, err string
}

// setKind is the metric (and, for Dispatch, the operation) a set is for.
type setKind int8

const (
	setSendTime setKind = iota + 1
	setCreateTime
	setSent
	setCreated
	setProcess
	setSequencer
	setLease
)

// measureOpts is one attribute set as the option lists Record and Add take:
// kept as slices, since a variadic argument passed to an interface method
// is otherwise an allocation per call.
type measureOpts struct {
	rec []metric.RecordOption
	add []metric.AddOption
}

func (i *Instrumentation) set(k attrKey, build func() []attribute.KeyValue) *measureOpts {
	if o, ok := i.sets.Load(k); ok {
		return o.(*measureOpts)
	}
	opt := metric.WithAttributeSet(attribute.NewSet(build()...))
	o, _ := i.sets.LoadOrStore(k, &measureOpts{rec: []metric.RecordOption{opt}, add: []metric.AddOption{opt}})
	return o.(*measureOpts)
}

// withErr adds error.type to attrs when errType is set.
func withErr(attrs []attribute.KeyValue, errType string) []attribute.KeyValue {
	if errType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
	}
	return attrs
}

func (i *Instrumentation) recordDispatch(ctx context.Context, e eventbus.DispatchEnd) {
	errType := errorType(e.Err)
	k, countKind := attrKey{kind: setSendTime, service: e.Service, err: errType}, setSent
	if e.Transactional {
		k.kind, countKind = setCreateTime, setCreated
	}
	i.m.dispatchTime.Record(ctx, e.Duration.Seconds(), i.set(k, func() []attribute.KeyValue {
		op, opType := operation(e.Transactional)
		return withErr([]attribute.KeyValue{systemAttr, semconv.MessagingOperationName(op), opType, ServiceKey.String(e.Service)}, errType)
	}).rec...)
	// Counted by type: runs of one type are one Add.
	k.kind = countKind
	for j := 0; j < len(e.Events); {
		typ, n := e.Events[j].Type, 1
		for j+n < len(e.Events) && e.Events[j+n].Type == typ {
			n++
		}
		j += n
		k.typ = typ
		i.m.sent.Add(ctx, int64(n), i.set(k, func() []attribute.KeyValue {
			op, _ := operation(e.Transactional)
			return withErr([]attribute.KeyValue{systemAttr, semconv.MessagingOperationName(op), semconv.MessagingDestinationName(typ), ServiceKey.String(e.Service)}, errType)
		}).add...)
	}
}

func (i *Instrumentation) recordHandler(ctx context.Context, e eventbus.HandlerEnd) {
	errType := errorType(e.Err)
	typ, outcome := e.Event.Type, e.Outcome.String()
	// One histogram: its count by outcome is the count of calls.
	i.m.processTime.Record(ctx, e.Duration.Seconds(), i.set(attrKey{kind: setProcess, service: e.Service, typ: typ, outcome: outcome, err: errType}, func() []attribute.KeyValue {
		return withErr([]attribute.KeyValue{systemAttr, semconv.MessagingOperationName("process"), semconv.MessagingDestinationName(typ),
			semconv.MessagingConsumerGroupName(e.Service), OutcomeKey.String(outcome)}, errType)
	}).rec...)
}

func (i *Instrumentation) recordSequencer(ctx context.Context, e eventbus.SequencerBatch) {
	errType := errorType(e.Err)
	set := i.set(attrKey{kind: setSequencer, err: errType}, func() []attribute.KeyValue {
		return withErr([]attribute.KeyValue{systemAttr}, errType)
	})
	i.m.seqSize.Record(ctx, int64(e.Events), set.rec...)
	i.m.seqTime.Record(ctx, e.Duration.Seconds(), set.rec...)
}

func (i *Instrumentation) recordLease(ctx context.Context, e eventbus.LeaseChange) {
	kind := e.Kind.String()
	i.m.leases.Add(ctx, 1, i.set(attrKey{kind: setLease, service: e.Service, outcome: kind}, func() []attribute.KeyValue {
		return []attribute.KeyValue{systemAttr, semconv.MessagingConsumerGroupName(e.Service), LeaseChangeKey.String(kind)}
	}).add...)
}
