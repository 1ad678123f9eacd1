package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/dddbus/eventbus"
	"gorm.io/gorm"
)

// Exit codes, documented in the package comment and the README.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitNotFound = 3
	exitRefused  = 4
)

// stdio is the command's outside world; tests pass their own.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	getenv   func(string) string
	terminal bool // in is an interactive terminal: destructive commands ask
}

// exitErr carries an exit code other than exitError.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitErr{exitUsage, fmt.Errorf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &exitErr{exitNotFound, fmt.Errorf(format, args...)}
}

func refused(err error) error { return &exitErr{exitRefused, err} }

// common are the flags every command takes.
type common struct {
	dsn, driver, prefix string
	json, yes           bool
	timeout             time.Duration
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dsn, "dsn", c.dsn, "database DSN (default $EVENTBUS_DSN): sqlite:PATH, mysql:USER@tcp(HOST:PORT)/DB, postgres://...")
	fs.StringVar(&c.driver, "driver", c.driver, "sqlite, mysql or postgres: the DSN is that driver's, without a prefix")
	fs.StringVar(&c.prefix, "prefix", c.prefix, "table prefix")
	fs.BoolVar(&c.json, "json", c.json, "print JSON instead of a table")
	fs.BoolVar(&c.yes, "yes", c.yes, "do it without asking (needed when stdin is not a terminal)")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "limit of the whole command")
}

// command is one leaf of the command tree.
type command struct {
	path    string // "dead list"
	args    string // what follows the flags, for the usage line
	summary string
	flags   func(fs *flag.FlagSet, o *opts)
	run     func(ctx context.Context, c *cli, o *opts, args []string) error
}

// opts are every command-specific flag; each command registers the ones it takes.
type opts struct {
	service, state, to  string
	types, senders      stringList
	olderThan, newerThn time.Duration
	after               int64
	limit               int
	all                 bool
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

var commands []command // filled by each cmd_*.go in init

// cli is one run: its flags, streams and database.
type cli struct {
	common
	io     stdio
	db     *gorm.DB
	create bool // open may create a missing SQLite file
}

func run(ctx context.Context, args []string, s stdio) int {
	c := &cli{io: s, common: common{prefix: "ddd_", timeout: time.Minute}}
	err := c.dispatch(ctx, args)
	if c.db != nil {
		if sqlDB, derr := c.db.DB(); derr == nil {
			_ = sqlDB.Close()
		}
	}
	if err == nil {
		return exitOK
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "eventbus:") {
		msg = "eventbus: " + msg
	}
	fmt.Fprintln(s.err, msg)
	var e *exitErr
	if errors.As(err, &e) {
		if e.code == exitUsage {
			fmt.Fprintln(s.err, "run 'eventbus help' for usage")
		}
		return e.code
	}
	switch {
	case errors.Is(err, eventbus.ErrServiceActive), errors.Is(err, eventbus.ErrTxCommitted), errors.Is(err, eventbus.ErrTxRolledBack):
		return exitRefused
	case errors.Is(err, eventbus.ErrTxNotFound), errors.Is(err, eventbus.ErrTxCleaned), errors.Is(err, eventbus.ErrServiceNotFound):
		return exitNotFound
	case errors.Is(err, eventbus.ErrInvalidArgument), errors.Is(err, eventbus.ErrInvalidOption), errors.Is(err, eventbus.ErrInvalidServiceName):
		return exitUsage
	}
	return exitError
}

// dispatch finds the command named by the leading words of args (global
// flags may come first) and runs it.
func (c *cli) dispatch(ctx context.Context, args []string) error {
	global := flag.NewFlagSet("eventbus", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	c.register(global)
	if err := global.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	words := global.Args()
	if len(words) == 0 || words[0] == "help" || words[0] == "-h" || words[0] == "--help" {
		c.usage(c.io.out)
		if len(words) == 0 {
			return usageErr("no command")
		}
		return nil
	}
	var cmd *command
	for i := range commands {
		p := strings.Fields(commands[i].path)
		if len(words) >= len(p) && strings.Join(words[:len(p)], " ") == commands[i].path {
			cmd = &commands[i]
			words = words[len(p):]
			break
		}
	}
	if cmd == nil {
		return usageErr("unknown command %q", strings.Join(words[:min(2, len(words))], " "))
	}
	fs := flag.NewFlagSet("eventbus "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	o := &opts{limit: 100}
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	positional, err := parseInterleaved(fs, words)
	if errors.Is(err, flag.ErrHelp) {
		c.commandUsage(c.io.out, cmd, fs)
		return nil
	}
	if err != nil {
		return usageErr("%s: %v", cmd.path, err)
	}
	if c.dsn == "" {
		c.dsn = c.io.getenv("EVENTBUS_DSN")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return cmd.run(ctx, c, o, positional)
}

// parseInterleaved parses flags wherever they stand among the positional
// arguments ("dead show ID --json"), and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `eventbus operates an eventbus event store.

Usage: eventbus <command> [flags] [args]

Commands:
`)
	rank := map[string]int{"migrate": 0, "status": 1, "dead": 2, "tx": 3, "service": 4}
	sorted := append([]command(nil), commands...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return rank[strings.Fields(sorted[i].path)[0]] < rank[strings.Fields(sorted[j].path)[0]]
	})
	for _, cmd := range sorted {
		fmt.Fprintf(w, "  %-20s %s\n", strings.TrimSpace(cmd.path+" "+cmd.args), cmd.summary)
	}
	fmt.Fprint(w, `
Every command takes --dsn (or $EVENTBUS_DSN), --driver, --prefix (default ddd_),
--json, --yes and --timeout (default 1m); 'eventbus <command> -h' lists its flags.
DSN: sqlite:PATH | mysql:USER@tcp(HOST:PORT)/DB | postgres://USER@HOST:PORT/DB

Exit codes: 0 done, 1 error, 2 usage, 3 nothing found (or migrations pending),
4 refused (no --yes off a terminal, service running, already resolved otherwise).
`)
}

func (c *cli) commandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: eventbus %s [flags] %s\n\n%s\n\nFlags:\n", cmd.path, cmd.args, cmd.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// confirm asks before a change: --yes goes ahead; on a terminal the user
// answers; otherwise the command is refused.
func (c *cli) confirm(what string) error {
	if c.yes {
		return nil
	}
	if !c.io.terminal {
		return refused(fmt.Errorf("refusing to %s without --yes (stdin is not a terminal)", what))
	}
	fmt.Fprintf(c.io.err, "%s? [y/N] ", upperFirst(what))
	line, _ := bufio.NewReader(c.io.in).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a == "y" || a == "yes" {
		return nil
	}
	return refused(fmt.Errorf("not confirmed: did not %s", what))
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// bus returns a bus of service on the database, to act as (or on) it. It
// never registers the service, migrates, cleans or consumes.
func (c *cli) bus(ctx context.Context, service string) (*eventbus.EventBus, error) {
	db, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	return eventbus.NewEventBus(service, db, eventbus.WithAutoMigrate(false), eventbus.WithCleanCron(""),
		eventbus.WithTablePrefix(c.prefix), eventbus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
}

// anyBus is a bus for operations that concern every service.
func (c *cli) anyBus(ctx context.Context) (*eventbus.EventBus, error) {
	return c.bus(ctx, "eventbus-cli")
}

func (c *cli) needService(o *opts) error {
	if o.service == "" {
		return usageErr("--service is required")
	}
	return nil
}
