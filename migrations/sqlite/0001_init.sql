-- The event log. id orders inserts; seq, given by the sequencer once the row
-- is committed, orders delivery. Times are Unix milliseconds of the database clock.
CREATE TABLE IF NOT EXISTS {{prefix}}events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seq         INTEGER,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    send_type   INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    metadata    TEXT,
    occurred_at INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS {{prefix}}events_seq ON {{prefix}}events (seq);
CREATE INDEX IF NOT EXISTS {{prefix}}events_unsequenced ON {{prefix}}events (id) WHERE seq IS NULL;

CREATE TABLE IF NOT EXISTS {{prefix}}sequencer (
    id       INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO {{prefix}}sequencer (id, last_seq) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS {{prefix}}services (
    name         TEXT    PRIMARY KEY,
    consumed_seq INTEGER NOT NULL,
    owner        TEXT    NOT NULL DEFAULT '',
    epoch        INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS {{prefix}}retries (
    service    TEXT    NOT NULL,
    event_pk   INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    event_id   TEXT    NOT NULL,
    sender     TEXT    NOT NULL,
    fifo       INTEGER NOT NULL,
    state      INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    next_at    INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (service, event_pk)
);
CREATE INDEX IF NOT EXISTS {{prefix}}retries_due ON {{prefix}}retries (service, state, next_at);
CREATE INDEX IF NOT EXISTS {{prefix}}retries_sender ON {{prefix}}retries (service, sender, seq);
CREATE INDEX IF NOT EXISTS {{prefix}}retries_event ON {{prefix}}retries (event_pk);

CREATE TABLE IF NOT EXISTS {{prefix}}transactions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    service     TEXT    NOT NULL,
    state       INTEGER NOT NULL,
    check_count INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    last_error  TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {{prefix}}transactions_due ON {{prefix}}transactions (service, state, due_at);

CREATE TABLE IF NOT EXISTS {{prefix}}transaction_events (
    tx_id       INTEGER NOT NULL,
    ordinal     INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    send_type   INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    metadata    TEXT,
    occurred_at INTEGER NOT NULL,
    PRIMARY KEY (tx_id, ordinal)
);
