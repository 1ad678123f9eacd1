package conformance

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// logSink is a slog handler that keeps every record, so tests can wait for
// what a bus reports (a lost lease, a failed poll) and read its attributes.
// Records also go to testLogger's handler.
type logSink struct {
	mu      *sync.Mutex
	records *[]logRecord
	attrs   []slog.Attr
	next    slog.Handler
}

// logCtxKey marks a context value the sink records as attribute "ctx".
type logCtxKey struct{}

type logRecord struct {
	msg   string
	attrs map[string]string
}

func newLogSink() *logSink {
	return &logSink{mu: &sync.Mutex{}, records: &[]logRecord{}, next: testLogger().Handler()}
}

func (s *logSink) logger() *slog.Logger { return slog.New(s) }

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(ctx context.Context, r slog.Record) error {
	rec := logRecord{msg: r.Message, attrs: map[string]string{}}
	for _, a := range s.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	if v, ok := ctx.Value(logCtxKey{}).(string); ok {
		rec.attrs["ctx"] = v // what a user's handler would read from the context
	}
	s.mu.Lock()
	*s.records = append(*s.records, rec)
	s.mu.Unlock()
	if s.next.Enabled(ctx, r.Level) {
		return s.next.Handle(ctx, r)
	}
	return nil
}

func (s *logSink) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *s
	c.attrs = append(append([]slog.Attr{}, s.attrs...), attrs...)
	c.next = s.next.WithAttrs(attrs)
	return &c
}

func (s *logSink) WithGroup(name string) slog.Handler {
	c := *s
	c.next = s.next.WithGroup(name)
	return &c
}

// count returns how many records contain substr in their message.
func (s *logSink) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range *s.records {
		if strings.Contains(r.msg, substr) {
			n++
		}
	}
	return n
}

// attr returns attribute key of the last record whose message contains substr.
func (s *logSink) attr(substr, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(*s.records) - 1; i >= 0; i-- {
		if r := (*s.records)[i]; strings.Contains(r.msg, substr) {
			return r.attrs[key]
		}
	}
	return ""
}
