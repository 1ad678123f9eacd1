package eventbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/internal/store"
)

// SeekPosition says where SeekService moves a service's offset.
type SeekPosition struct {
	kind seekKind
	seq  int64
	at   time.Time
}

var (
	// SeekLatest skips everything sequenced so far: the service next
	// receives what is sequenced after the seek.
	SeekLatest = SeekPosition{}
	// SeekEarliest delivers again every event still retained in the log.
	SeekEarliest = SeekPosition{kind: seekEarliest}
)

// SeekAfter moves the offset to log position seq: the service next
// receives the events with a higher seq (SeekAfter(n-1) delivers event n
// again). seq must be between 0 and the last sequence number given out.
func SeekAfter(seq int64) SeekPosition { return SeekPosition{kind: seekAfter, seq: seq} }

// SeekToTime moves the offset just before the first event, in log order,
// that was stored at or after t (database clock): that event and every
// one after it in the log are delivered again (including events stored
// before t whose transactions committed after it). With no such event it
// is SeekLatest. Finding it reads the whole log once (there is no index on
// the storing time).
func SeekToTime(t time.Time) SeekPosition { return SeekPosition{kind: seekTime, at: t} }

// seekKind is where a SeekPosition points.
type seekKind int8

const (
	seekLatest   seekKind = 0 // the zero SeekPosition
	seekEarliest seekKind = 1
	seekAfter    seekKind = 2 // after an explicit seq
	seekTime     seekKind = 3 // before the first event stored at or after a time
)

func (p SeekPosition) String() string {
	switch p.kind {
	case seekEarliest:
		return "earliest"
	case seekAfter:
		return fmt.Sprintf("after seq %d", p.seq)
	case seekTime:
		return "time " + p.at.UTC().Format(time.RFC3339Nano)
	}
	return "latest"
}

// SeekResult says what SeekService did.
type SeekResult struct {
	Service string
	From    int64 // the offset before the seek
	To      int64 // the offset after it
	// RetriesDropped counts the service's retries (and parked FIFO events)
	// whose events lie after the new offset: they were removed from the
	// retry store, because the log delivers those events again.
	RetriesDropped int64
}

// SeekService moves the offset of service name (any service, not only this
// bus's) to pos, so that it consumes again from there (backwards) or skips
// what lies before it (forwards). It may run while the service runs:
//
//   - Leases: the seek takes the lease away from the owner, if any, by
//     raising the service's epoch, in the same transaction as the new
//     offset. The owner's writes are fenced from then on: the batch it has
//     in flight (and at most one more, read before it noticed) is handled
//     but never committed, and it takes the lease again, with the new
//     offset, at its next poll (or a standby does).
//   - Retries: waiting retries and parked FIFO events whose events lie
//     after the new offset are removed (the log delivers those events
//     again, so they would run twice); those at or before it stay and are
//     retried as scheduled.
//   - Dead letters are never touched. One whose event is delivered again
//     stays a dead letter (listed, replayable) whatever that delivery does.
//
// It returns an error wrapping ErrServiceNotFound for an unknown service,
// and ErrInvalidArgument for a seq outside 0..the last sequence number.
func (b *EventBus) SeekService(ctx context.Context, name string, pos SeekPosition) (SeekResult, error) {
	res := SeekResult{Service: name}
	if err := validateServiceName(name); err != nil {
		return res, err
	}
	if pos.kind == seekAfter && pos.seq < 0 {
		return res, fmt.Errorf("%w: seek position must be >= 0, got %d", ErrInvalidArgument, pos.seq)
	}
	byTime := int64(-1) // the offset pos names by time, if it does
	if pos.kind == seekTime {
		first, ok, err := b.st.FirstSeqFrom(ctx, pos.at.UnixMilli())
		if err != nil {
			return res, fmt.Errorf("seek %s: find %s: %w", name, pos, err)
		}
		if ok {
			byTime = first - 1
		}
	}
	target := func(from, head int64) (int64, error) {
		switch pos.kind {
		case seekEarliest:
			return 0, nil
		case seekAfter:
			if pos.seq > head {
				return 0, fmt.Errorf("%w: seek position %d is past the last sequence number %d", ErrInvalidArgument, pos.seq, head)
			}
			return pos.seq, nil
		case seekTime:
			if byTime >= 0 && byTime < head {
				return byTime, nil
			}
		}
		return head, nil
	}
	out, found, err := b.st.Seek(ctx, store.SeekParams{Service: name, Target: target})
	if err == nil && !found {
		err = fmt.Errorf("%w: %s", ErrServiceNotFound, name)
	}
	if err != nil {
		if errors.Is(err, ErrServiceNotFound) || errors.Is(err, ErrInvalidArgument) {
			return res, err
		}
		return res, fmt.Errorf("seek %s to %s: %w", name, pos, err)
	}
	res.From, res.To, res.RetriesDropped = out.From, out.To, out.RetriesDropped
	b.log.Info("eventbus: service seeked", "target", name, "to", pos.String(), "from_offset", res.From, "to_offset", res.To, "retries_dropped", res.RetriesDropped)
	b.Notify()
	return res, nil
}
