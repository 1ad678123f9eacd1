package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/dddbus/eventbus"
)

func init() {
	commands = append(commands,
		command{path: "tx list", summary: "list transactional messages waiting for a resolution (exit 3 if none)", flags: txListFlags, run: txList},
		command{path: "tx show", args: "ID", summary: "show one transactional message and its events", run: txShow},
		command{path: "tx commit", args: "ID", summary: "publish a pending or unresolved transaction's events (asks first)", run: txResolve(true)},
		command{path: "tx rollback", args: "ID", summary: "discard a pending or unresolved transaction's events (asks first)", run: txResolve(false)},
	)
}

func txListFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.service, "service", "", "only this service's (default: every service's)")
	fs.StringVar(&o.state, "state", "all", "pending, unresolved or all")
	fs.Int64Var(&o.after, "after", 0, "only ids above this one (paging, with --service)")
	fs.IntVar(&o.limit, "limit", 100, "at most this many per service (1..1000)")
}

// txRow is a transaction in "tx list" and "tx show".
type txRow struct {
	ID        int64      `json:"id"`
	Service   string     `json:"service"`
	State     string     `json:"state"`
	Checks    int        `json:"checks"`
	LastError string     `json:"last_error"`
	CreatedAt time.Time  `json:"created_at"`
	DueAt     time.Time  `json:"due_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	Events    []eventRow `json:"events"`
}

func newTxRow(t eventbus.TransactionInfo) txRow {
	r := txRow{ID: t.ID, Service: t.Service, State: t.State.String(), Checks: t.Checks, LastError: t.LastError,
		CreatedAt: t.CreatedAt, DueAt: t.DueAt, UpdatedAt: t.UpdatedAt, Events: []eventRow{}}
	for _, e := range t.Events {
		r.Events = append(r.Events, newEventRow(e))
	}
	return r
}

func txList(ctx context.Context, c *cli, o *opts, args []string) error {
	if len(args) > 0 {
		return usageErr("tx list takes no arguments")
	}
	var states []eventbus.TxState
	switch o.state {
	case "all":
	case "pending":
		states = []eventbus.TxState{eventbus.TxPending}
	case "unresolved":
		states = []eventbus.TxState{eventbus.TxUnresolved}
	default:
		return usageErr("--state must be pending, unresolved or all, got %q", o.state)
	}
	services := []string{o.service}
	if o.service == "" {
		bus, err := c.anyBus(ctx)
		if err != nil {
			return err
		}
		counts, err := bus.TransactionCounts(ctx)
		if err != nil {
			return err
		}
		services = services[:0]
		for _, t := range counts {
			services = append(services, t.Service)
		}
	}
	rows := []txRow{}
	for _, s := range services {
		bus, err := c.bus(ctx, s)
		if err != nil {
			return err
		}
		txs, err := bus.Transactions(ctx, o.after, o.limit, states...)
		if err != nil {
			return err
		}
		for _, t := range txs {
			rows = append(rows, newTxRow(t))
		}
	}
	var table [][]string
	for _, r := range rows {
		table = append(table, []string{i64(r.ID), r.Service, r.State, strconv.Itoa(r.Checks), fmtTime(r.CreatedAt), fmtTime(r.DueAt),
			strconv.Itoa(len(r.Events)), orDash(firstLine(r.LastError))})
	}
	if err := c.list(rows, []string{"ID", "SERVICE", "STATE", "CHECKS", "CREATED_AT", "DUE_AT", "EVENTS", "LAST_ERROR"}, table); err != nil {
		return err
	}
	if len(rows) == 0 {
		return notFound("no transactions waiting for a resolution")
	}
	return nil
}

func txID(args []string, cmd string) (int64, error) {
	if len(args) != 1 {
		return 0, usageErr("%s takes one transaction id", cmd)
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErr("%s: %q is not a transaction id", cmd, args[0])
	}
	return id, nil
}

// lookupTx returns the transaction named by the one argument of cmd.
func (c *cli) lookupTx(ctx context.Context, args []string, cmd string) (eventbus.TransactionInfo, error) {
	id, err := txID(args, cmd)
	if err != nil {
		return eventbus.TransactionInfo{}, err
	}
	bus, err := c.anyBus(ctx)
	if err != nil {
		return eventbus.TransactionInfo{}, err
	}
	return bus.Transaction(ctx, id)
}

func txShow(ctx context.Context, c *cli, _ *opts, args []string) error {
	t, err := c.lookupTx(ctx, args, "tx show")
	if err != nil {
		return err
	}
	r := newTxRow(t)
	if c.json {
		return c.printJSON(r)
	}
	if err := c.fields("ID", i64(r.ID), "Service", r.Service, "State", r.State, "Checks", strconv.Itoa(r.Checks),
		"Created at", fmtTime(r.CreatedAt), "Due at", fmtTime(r.DueAt), "Updated at", fmtTime(r.UpdatedAt),
		"Last error", orDash(r.LastError)); err != nil {
		return err
	}
	if len(r.Events) == 0 {
		c.say("Events: none stored (a resolved transaction's events are in the log, or discarded)")
		return nil
	}
	c.say("Events:")
	var table [][]string
	for _, e := range r.Events {
		table = append(table, []string{e.ID, e.Type, e.Sender, e.SendType, string(e.Payload)})
	}
	return c.table([]string{"EVENT_ID", "TYPE", "SENDER", "SEND_TYPE", "PAYLOAD"}, table)
}

// txResolve commits or rolls back a transaction by id, as the service
// that began it.
func txResolve(commit bool) func(ctx context.Context, c *cli, _ *opts, args []string) error {
	verb, done, want := "roll back", "rolled back", eventbus.TxRolledBack
	if commit {
		verb, done, want = "commit", "committed", eventbus.TxCommitted
	}
	return func(ctx context.Context, c *cli, _ *opts, args []string) error {
		t, err := c.lookupTx(ctx, args, "tx "+verb)
		if err != nil {
			return err
		}
		id := t.ID
		result := struct {
			ID      int64  `json:"id"`
			Service string `json:"service"`
			State   string `json:"state"`
			Changed bool   `json:"changed"`
		}{ID: id, Service: t.Service, State: want.String()}
		switch t.State {
		case want:
			// Idempotent, as the library's calls are.
		case eventbus.TxCommitted, eventbus.TxRolledBack:
			return refused(fmt.Errorf("transaction %d is already %s", id, t.State))
		default:
			if err := c.confirm(fmt.Sprintf("%s transaction %d of %s (%d events)", verb, id, t.Service, len(t.Events))); err != nil {
				return err
			}
			owner, err := c.bus(ctx, t.Service)
			if err != nil {
				return err
			}
			if commit {
				err = owner.CommitTransaction(ctx, id)
			} else {
				err = owner.RollbackTransaction(ctx, id)
			}
			if err != nil {
				if errors.Is(err, eventbus.ErrTxCommitted) || errors.Is(err, eventbus.ErrTxRolledBack) {
					return refused(err)
				}
				return err
			}
			result.Changed = true
		}
		if c.json {
			return c.printJSON(result)
		}
		if result.Changed {
			c.say("transaction %d of %s %s", id, t.Service, done)
		} else {
			c.say("transaction %d of %s was already %s", id, t.Service, done)
		}
		return nil
	}
}
