package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

func init() {
	commands = append(commands,
		command{path: "dead list", summary: "list a service's dead letters (exit 3 if none matches)", flags: deadFilterFlags(true), run: deadList},
		command{path: "dead show", args: "ID", summary: "show one dead letter: event, payload, metadata, last error", flags: serviceFlag, run: deadShow},
		command{path: "dead replay", args: "ID...", summary: "retry these dead letters at the next poll, with a fresh retry budget", flags: serviceFlag, run: deadReplay},
		command{path: "dead replay-all", summary: "retry every dead letter that matches the filters (asks first)", flags: deadFilterFlags(false), run: deadReplayAll},
		command{path: "dead discard", args: "ID...", summary: "delete these dead letters, or with --all every one that matches the filters (asks first)", flags: deadDiscardFlags, run: deadDiscard},
	)
}

func serviceFlag(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.service, "service", "", "the service (required)")
}

func deadFilterFlags(paged bool) func(fs *flag.FlagSet, o *opts) {
	return func(fs *flag.FlagSet, o *opts) {
		serviceFlag(fs, o)
		fs.Var(&o.types, "type", "only this event type (repeatable)")
		fs.Var(&o.senders, "sender", "only this sender (repeatable)")
		fs.DurationVar(&o.olderThan, "older-than", 0, "only dead letters that failed at least this long ago")
		fs.DurationVar(&o.newerThn, "newer-than", 0, "only dead letters that failed less than this long ago")
		if paged {
			fs.Int64Var(&o.after, "after", 0, "only after this log position (the SEQ of the last one listed: paging)")
			fs.IntVar(&o.limit, "limit", 100, "at most this many (1..1000)")
		}
	}
}

func deadDiscardFlags(fs *flag.FlagSet, o *opts) {
	deadFilterFlags(false)(fs, o)
	fs.BoolVar(&o.all, "all", false, "discard every dead letter that matches the filters (no IDs)")
}

func (o *opts) deadFilter() eventbus.DeadLetterFilter {
	return eventbus.DeadLetterFilter{Types: o.types, Senders: o.senders, OlderThan: o.olderThan, NewerThan: o.newerThn}
}

func (o *opts) hasFilter() bool {
	return len(o.types) > 0 || len(o.senders) > 0 || o.olderThan > 0 || o.newerThn > 0
}

// deadRow is a dead letter in "dead list" and "dead show".
type deadRow struct {
	Seq       int64             `json:"seq"`
	EventID   string            `json:"event_id"`
	Type      string            `json:"type"`
	Sender    string            `json:"sender"`
	SendType  string            `json:"send_type"`
	Attempts  int               `json:"attempts"`
	FailedAt  time.Time         `json:"failed_at"`
	CreatedAt time.Time         `json:"created_at"`
	LastError string            `json:"last_error"`
	Payload   json.RawMessage   `json:"payload,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

func newDeadRow(dl eventbus.DeadLetter, full bool) deadRow {
	e := dl.Event
	r := deadRow{Seq: dl.Seq, EventID: e.ID, Type: e.Type, Sender: e.Sender, SendType: e.SendType.String(),
		Attempts: dl.Attempts, FailedAt: dl.FailedAt, CreatedAt: e.CreatedAt, LastError: dl.LastError}
	if full {
		r.Payload, r.Metadata = e.Payload, e.Metadata
	} else {
		r.LastError = firstLine(r.LastError)
	}
	return r
}

func deadList(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := c.needService(o); err != nil {
		return err
	}
	if len(args) > 0 {
		return usageErr("dead list takes no arguments (filter with --type, --sender, --older-than, --newer-than)")
	}
	bus, err := c.bus(ctx, o.service)
	if err != nil {
		return err
	}
	dls, err := bus.DeadLettersWhere(ctx, o.deadFilter(), o.after, o.limit)
	if err != nil {
		return err
	}
	rows := []deadRow{}
	for _, dl := range dls {
		rows = append(rows, newDeadRow(dl, false))
	}
	var table [][]string
	for _, r := range rows {
		table = append(table, []string{i64(r.Seq), r.EventID, r.Type, r.Sender, strconv.Itoa(r.Attempts), fmtTime(r.FailedAt), r.LastError})
	}
	if err := c.list(rows, []string{"SEQ", "EVENT_ID", "TYPE", "SENDER", "ATTEMPTS", "FAILED_AT", "LAST_ERROR"}, table); err != nil {
		return err
	}
	if len(rows) == 0 {
		return notFound("no dead letters of %s match", o.service)
	}
	return nil
}

func deadShow(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := c.needService(o); err != nil {
		return err
	}
	if len(args) != 1 {
		return usageErr("dead show takes one event ID")
	}
	bus, err := c.bus(ctx, o.service)
	if err != nil {
		return err
	}
	dls, err := bus.DeadLettersWhere(ctx, eventbus.DeadLetterFilter{EventIDs: args}, -1, 1)
	if err != nil {
		return err
	}
	if len(dls) == 0 {
		return notFound("%s has no dead letter with event ID %s", o.service, args[0])
	}
	r := newDeadRow(dls[0], true)
	if c.json {
		return c.printJSON(r)
	}
	meta, _ := json.Marshal(r.Metadata)
	if err := c.fields("Event ID", r.EventID, "Type", r.Type, "Sender", r.Sender, "Send type", r.SendType,
		"Seq", i64(r.Seq), "Created at", fmtTime(r.CreatedAt), "Failed at", fmtTime(r.FailedAt),
		"Attempts", strconv.Itoa(r.Attempts), "Metadata", string(meta), "Payload", string(r.Payload)); err != nil {
		return err
	}
	c.say("Last error:\n%s", r.LastError)
	return nil
}

// countResult is the JSON of commands that act on several things.
type countResult struct {
	Service string `json:"service"`
	Action  string `json:"action"`
	Count   int    `json:"count"`
}

func (c *cli) reportCount(service, action string, n int) error {
	if c.json {
		if err := c.printJSON(countResult{service, action, n}); err != nil {
			return err
		}
	} else {
		c.say("%s: %s %d dead letter(s)", service, action, n)
	}
	if n == 0 {
		return notFound("no dead letters of %s matched", service)
	}
	return nil
}

func deadReplay(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := c.needService(o); err != nil {
		return err
	}
	if len(args) == 0 {
		return usageErr("dead replay takes event IDs (replay-all replays by filter)")
	}
	bus, err := c.bus(ctx, o.service)
	if err != nil {
		return err
	}
	n, err := bus.ReplayDeadLetters(ctx, args...)
	if err != nil {
		return err
	}
	return c.reportCount(o.service, "replayed", n)
}

func deadReplayAll(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := c.needService(o); err != nil {
		return err
	}
	if len(args) > 0 {
		return usageErr("dead replay-all takes no IDs (dead replay does)")
	}
	bus, err := c.bus(ctx, o.service)
	if err != nil {
		return err
	}
	if err := c.confirm(fmt.Sprintf("replay every dead letter of %s%s", o.service, o.describeFilter())); err != nil {
		return err
	}
	n, err := bus.ReplayDeadLettersWhere(ctx, o.deadFilter())
	if err != nil {
		return err
	}
	return c.reportCount(o.service, "replayed", n)
}

func deadDiscard(ctx context.Context, c *cli, o *opts, args []string) error {
	if err := c.needService(o); err != nil {
		return err
	}
	switch {
	case o.all && len(args) > 0:
		return usageErr("dead discard takes event IDs or --all, not both")
	case !o.all && len(args) == 0:
		return usageErr("dead discard takes event IDs, or --all (with filters) to discard every match")
	case !o.all && o.hasFilter():
		return usageErr("filters apply to --all only")
	}
	bus, err := c.bus(ctx, o.service)
	if err != nil {
		return err
	}
	var n int
	if o.all {
		if err := c.confirm(fmt.Sprintf("discard every dead letter of %s%s", o.service, o.describeFilter())); err != nil {
			return err
		}
		n, err = bus.DiscardDeadLettersWhere(ctx, o.deadFilter())
	} else {
		if err := c.confirm(fmt.Sprintf("discard %d dead letter(s) of %s", len(args), o.service)); err != nil {
			return err
		}
		n, err = bus.DiscardDeadLetters(ctx, args...)
	}
	if err != nil {
		return err
	}
	return c.reportCount(o.service, "discarded", n)
}

func (o *opts) describeFilter() string {
	if !o.hasFilter() {
		return ""
	}
	s := " matching"
	if len(o.types) > 0 {
		s += " type " + o.types.String()
	}
	if len(o.senders) > 0 {
		s += " sender " + o.senders.String()
	}
	if o.olderThan > 0 {
		s += " older than " + o.olderThan.String()
	}
	if o.newerThn > 0 {
		s += " newer than " + o.newerThn.String()
	}
	return s
}

// eventRow is an event in JSON output.
type eventRow struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	Sender    string            `json:"sender"`
	SendType  string            `json:"send_type"`
	CreatedAt time.Time         `json:"created_at"`
	Payload   json.RawMessage   `json:"payload"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

func newEventRow(e *ddd.DomainEvent) eventRow {
	return eventRow{ID: e.ID, Type: e.Type, Sender: e.Sender, SendType: e.SendType.String(), CreatedAt: e.CreatedAt, Payload: e.Payload, Metadata: e.Metadata}
}
