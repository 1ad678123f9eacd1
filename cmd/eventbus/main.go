// Command eventbus operates an event store of github.com/dddbus/eventbus:
// schema migrations, the status of every service, dead letters,
// transactional messages and service offsets.
//
//	eventbus [flags] <command> [subcommand] [flags] [args]
//
//	migrate up | status
//	status
//	dead list | show ID | replay ID... | replay-all | discard ID... (or --all)
//	tx list | show ID | commit ID | rollback ID
//	service seek --to earliest|latest|SEQ|TIME | remove
//
// The database comes from --dsn or the EVENTBUS_DSN environment variable,
// with a driver prefix (sqlite:PATH, mysql:USER@tcp(HOST:PORT)/DB,
// postgres://...) or with --driver and a DSN of that driver. Output is a
// table, or JSON with --json. Commands that change or delete something ask
// for confirmation on a terminal and are refused without --yes otherwise.
//
// Exit codes: 0 done; 1 error; 2 usage; 3 nothing found (no match, unknown
// id, or migrations pending for "migrate status"); 4 refused (no --yes, a
// running service, a transaction already resolved the other way).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, getenv: os.Getenv, terminal: isTerminal(os.Stdin)})
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is an interactive terminal, without a
// dependency: a character device other than /dev/null (a script's usual
// stdin among character devices).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(st, null)
}
