package eventbus

// SQLiteDSNParams are the DSN parameters (mattn/go-sqlite3) the bus needs on
// SQLite: WAL so the poller's reads never block writers, a busy timeout so
// concurrent writers wait for the lock instead of failing with "database is
// locked", and BEGIN IMMEDIATE so a transaction that reads before it writes
// cannot fail when upgrading its lock. synchronous=NORMAL is safe with WAL:
// a power loss may drop the last commits but never corrupts the file.
// Package github.com/dddbus/eventbus/sqlite opens a database with them; the
// constant stays here, free of cgo, because NewEventBus checks for them.
const SQLiteDSNParams = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate&_synchronous=NORMAL&_foreign_keys=1"
