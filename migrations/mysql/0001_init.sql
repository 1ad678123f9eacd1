-- The event log. id orders inserts; seq, given by the sequencer once the row
-- is committed, orders delivery. Times are Unix milliseconds of the database clock.
-- InnoDB keeps the primary key in every secondary index, so events_seq also
-- serves the sequencer's "seq IS NULL ORDER BY id".
CREATE TABLE IF NOT EXISTS {{prefix}}events (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    seq         BIGINT       NULL,
    event_id    VARCHAR(64)  NOT NULL,
    event_type  VARCHAR(255) NOT NULL,
    sender      VARCHAR(255) NOT NULL,
    send_type   SMALLINT     NOT NULL,
    payload     LONGBLOB     NOT NULL,
    metadata    LONGTEXT     NULL,
    occurred_at BIGINT       NOT NULL,
    created_at  BIGINT       NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY {{prefix}}events_seq (seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {{prefix}}sequencer (
    id       INT    NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;
INSERT IGNORE INTO {{prefix}}sequencer (id, last_seq) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS {{prefix}}services (
    name         VARCHAR(64) NOT NULL,
    consumed_seq BIGINT      NOT NULL,
    owner        VARCHAR(64) NOT NULL DEFAULT '',
    epoch        BIGINT      NOT NULL DEFAULT 0,
    version      BIGINT      NOT NULL DEFAULT 0,
    lease_until  BIGINT      NOT NULL DEFAULT 0,
    created_at   BIGINT      NOT NULL,
    updated_at   BIGINT      NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {{prefix}}retries (
    service    VARCHAR(64)  NOT NULL,
    event_pk   BIGINT       NOT NULL,
    seq        BIGINT       NOT NULL,
    event_id   VARCHAR(64)  NOT NULL,
    sender     VARCHAR(255) NOT NULL,
    fifo       SMALLINT     NOT NULL,
    state      SMALLINT     NOT NULL,
    attempts   INT          NOT NULL,
    next_at    BIGINT       NOT NULL,
    last_error MEDIUMTEXT   NOT NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (service, event_pk),
    KEY {{prefix}}retries_due (service, state, next_at),
    KEY {{prefix}}retries_sender (service, sender, seq),
    KEY {{prefix}}retries_event (event_pk)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {{prefix}}transactions (
    id          BIGINT      NOT NULL AUTO_INCREMENT,
    service     VARCHAR(64) NOT NULL,
    state       SMALLINT    NOT NULL,
    check_count INT         NOT NULL DEFAULT 0,
    due_at      BIGINT      NOT NULL,
    last_error  MEDIUMTEXT  NOT NULL,
    created_at  BIGINT      NOT NULL,
    updated_at  BIGINT      NOT NULL,
    PRIMARY KEY (id),
    KEY {{prefix}}transactions_due (service, state, due_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {{prefix}}transaction_events (
    tx_id       BIGINT       NOT NULL,
    ordinal     INT          NOT NULL,
    event_id    VARCHAR(64)  NOT NULL,
    event_type  VARCHAR(255) NOT NULL,
    sender      VARCHAR(255) NOT NULL,
    send_type   SMALLINT     NOT NULL,
    payload     LONGBLOB     NOT NULL,
    metadata    LONGTEXT     NULL,
    occurred_at BIGINT       NOT NULL,
    PRIMARY KEY (tx_id, ordinal)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
