package eventbus

import (
	"strings"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// maxErrorText bounds the stored last error (a panic's stack can be long).
const maxErrorText = 16 << 10

type verdict int8

const (
	unfinished verdict = iota // not run (stopping, or lease lost)
	handled
	skipped
	failed
	parked  // stored to run later: behind a failed FIFO event of its sender, or while its sender is held
	pending // set aside (HandlerTimeout 0): stored; its call's result is recorded when it returns
)

// result is what became of one record.
type result struct {
	verdict  verdict
	err      error
	attempts int           // failed: attempts so far, this one included
	retry    bool          // failed: the strategy schedules another attempt
	delay    time.Duration // failed and retry: wait before it
}

// outcome classifies what a handler returned. An event is skipped only
// when no handler exists for it (ddd.IsNoHandler); a failure joined with
// ErrNoHandler is a failure.
func outcome(err error) result {
	switch {
	case err == nil:
		return result{verdict: handled}
	case ddd.IsNoHandler(err):
		return result{verdict: skipped}
	default:
		return result{verdict: failed, err: err}
	}
}

// errorText is err as storable text: bounded, valid UTF-8, no NUL bytes
// (which PostgreSQL's text and MySQL's utf8mb4 reject).
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText] + "...(truncated)"
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

func firstLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
