package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers a subscriber adds to a dead letter (a copy of the message it
// gave up on, in the dead-letter stream).
const (
	HeaderDeadSubject  = "Eventbus-Dead-Subject"  // subject of the original message
	HeaderDeadStream   = "Eventbus-Dead-Stream"   // its stream
	HeaderDeadSeq      = "Eventbus-Dead-Seq"      // its sequence there
	HeaderDeadConsumer = "Eventbus-Dead-Consumer" // the durable consumer that gave up
	HeaderDeadAttempts = "Eventbus-Dead-Attempts" // failed attempts
	HeaderDeadError    = "Eventbus-Dead-Error"    // the last error, one line, at most 1 KiB
	HeaderDeadAt       = "Eventbus-Dead-At"       // when, RFC 3339, UTC
)

const maxDeadError = 1 << 10

// DeadLetter is a message a subscriber gave up on.
type DeadLetter struct {
	Seq       uint64           // in the dead-letter stream: page, replay and discard with it
	Event     *ddd.DomainEvent // nil if the message was not a relayed event (see DecodeError)
	Subject   string           // the original message's subject
	StreamSeq uint64           // its sequence in the subscriber's stream
	Attempts  int
	LastError string
	FailedAt  time.Time
	// DecodeError is why Event is nil.
	DecodeError error
	// Header and Data are the dead letter as stored.
	Header nats.Header
	Data   []byte
}

// bury copies d to the dead letters, then terms it. If the copy cannot be
// stored the message is not termed: it is retried here while the
// subscriber runs, else returned (Nak) and handled again later.
func (s *Subscriber) bury(l *lanes, d *delivery, attempts int, cause error) {
	msg := s.deadMessage(d, attempts, cause)
	var backoff time.Duration
	for {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultPublishTimeout)
		_, err := s.js.PublishMsg(ctx, msg)
		cancel()
		if err == nil {
			break
		}
		if permanentPublishError(err) {
			s.log.Error("relay: subscriber: cannot store the dead letter; the message stays unacknowledged and comes back in a minute",
				"stream_seq", d.md.Sequence.Stream, "err", err)
			s.settle(d, "nak", d.msg.NakWithDelay(time.Minute))
			return
		}
		backoff = min(max(backoff*2, 50*time.Millisecond), DefaultMaxBackoff)
		s.log.Warn("relay: subscriber: storing a dead letter failed; retrying", "stream_seq", d.md.Sequence.Stream, "err", err)
		if l.pause(backoff) > 0 {
			s.settle(d, "nak", d.msg.Nak())
			return
		}
	}
	s.dead.Add(1)
	s.log.Warn("relay: subscriber: dead letter", "stream_seq", d.md.Sequence.Stream, "subject", d.msg.Subject(),
		"attempts", attempts, "err", firstLine(cause))
	s.settle(d, "term", d.msg.Term())
}

func (s *Subscriber) deadMessage(d *delivery, attempts int, cause error) *nats.Msg {
	orig := d.msg.Headers()
	h := nats.Header{}
	for k, v := range orig {
		if k == nats.MsgIdHdr || k == HeaderReplayFor || hasPrefixFold(k, "Eventbus-Dead-") {
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	if id := eventID(orig); id != "" {
		h.Set(HeaderEventID, id)
	}
	seq := d.md.Sequence.Stream
	// A second copy of the same delivery (a crash between storing and
	// terming) is dropped by the dead-letter stream's duplicate window.
	h.Set(nats.MsgIdHdr, "dead:"+s.stream+":"+s.durable+":"+strconv.FormatUint(seq, 10))
	h.Set(HeaderDeadSubject, d.msg.Subject())
	h.Set(HeaderDeadStream, s.stream)
	h.Set(HeaderDeadSeq, strconv.FormatUint(seq, 10))
	h.Set(HeaderDeadConsumer, s.durable)
	h.Set(HeaderDeadAttempts, strconv.Itoa(attempts))
	h.Set(HeaderDeadError, headerText(cause.Error(), maxDeadError))
	h.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	return &nats.Msg{Subject: s.cfg.deadSubject, Header: h, Data: d.msg.Data()}
}

// headerText makes s one header line: control characters become blanks,
// surrounding blanks go, and it is cut to at most n bytes of valid UTF-8.
func headerText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > n {
		s = s[:n]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return strings.TrimSpace(s)
}

// DeadLetters lists this subscriber's dead letters with Seq > afterSeq, in
// order, at most limit (1..1000).
func (s *Subscriber) DeadLetters(ctx context.Context, afterSeq uint64, limit int) ([]DeadLetter, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be 1..1000, got %d", eventbus.ErrInvalidOption, limit)
	}
	stream, err := s.js.Stream(ctx, s.cfg.deadStream)
	if err != nil {
		return nil, fmt.Errorf("relay: dead letters: %w", err)
	}
	var out []DeadLetter
	for seq := afterSeq + 1; len(out) < limit; {
		raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.cfg.deadSubject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("relay: dead letters: %w", err)
		}
		out = append(out, deadLetterOf(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

func deadLetterOf(raw *jetstream.RawStreamMsg) DeadLetter {
	h := raw.Header
	dl := DeadLetter{Seq: raw.Sequence, Subject: h.Get(HeaderDeadSubject), LastError: h.Get(HeaderDeadError),
		Header: h, Data: raw.Data}
	dl.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderDeadSeq), 10, 64)
	dl.Attempts, _ = strconv.Atoi(h.Get(HeaderDeadAttempts))
	dl.FailedAt, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDeadAt))
	dl.Event, dl.DecodeError = Decode(h, raw.Data)
	return dl
}

// CountDeadLetters returns how many dead letters this subscriber has.
func (s *Subscriber) CountDeadLetters(ctx context.Context) (int64, error) {
	stream, err := s.js.Stream(ctx, s.cfg.deadStream)
	if err != nil {
		return 0, fmt.Errorf("relay: count dead letters: %w", err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(s.cfg.deadSubject))
	if err != nil {
		return 0, fmt.Errorf("relay: count dead letters: %w", err)
	}
	return int64(info.State.Subjects[s.cfg.deadSubject]), nil
}

// ReplayDeadLetters publishes the dead letters with these sequences again
// to their original subjects, marked for this durable consumer only
// (HeaderReplayFor: subscribers of other durables acknowledge them
// unhandled), then deletes them from the dead letters, and returns how many
// it found. The replay is a new message, so it starts with a fresh retry
// budget and comes after the sender's later events. Replaying a dead letter
// that is gone (replayed or discarded) does nothing; replaying twice within
// the stream's duplicate window delivers once.
func (s *Subscriber) ReplayDeadLetters(ctx context.Context, seqs ...uint64) (int, error) {
	return s.eachDeadLetter(ctx, seqs, func(raw *jetstream.RawStreamMsg) error {
		h := nats.Header{}
		for k, v := range raw.Header {
			if k != nats.MsgIdHdr && !hasPrefixFold(k, "Eventbus-Dead-") {
				h[k] = v
			}
		}
		h.Set(nats.MsgIdHdr, "replay:"+s.cfg.deadStream+":"+strconv.FormatUint(raw.Sequence, 10))
		h.Set(HeaderReplayFor, s.durable)
		msg := &nats.Msg{Subject: raw.Header.Get(HeaderDeadSubject), Header: h, Data: raw.Data}
		if _, err := s.js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("republish to %s: %w", msg.Subject, err)
		}
		return nil
	})
}

// DiscardDeadLetters deletes the dead letters with these sequences and
// returns how many it found.
func (s *Subscriber) DiscardDeadLetters(ctx context.Context, seqs ...uint64) (int, error) {
	return s.eachDeadLetter(ctx, seqs, nil)
}

// eachDeadLetter runs do (if not nil) on each of this subscriber's dead
// letters among seqs, then deletes it.
func (s *Subscriber) eachDeadLetter(ctx context.Context, seqs []uint64, do func(*jetstream.RawStreamMsg) error) (int, error) {
	stream, err := s.js.Stream(ctx, s.cfg.deadStream)
	if err != nil {
		return 0, fmt.Errorf("relay: dead letters: %w", err)
	}
	n := 0
	for _, seq := range seqs {
		raw, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("relay: dead letter %d: %w", seq, err)
		}
		if raw.Subject != s.cfg.deadSubject {
			continue // another subscriber's
		}
		if do != nil {
			if err := do(raw); err != nil {
				return n, fmt.Errorf("relay: dead letter %d: %w", seq, err)
			}
		}
		if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("relay: dead letter %d: delete: %w", seq, err)
		}
		n++
	}
	return n, nil
}
