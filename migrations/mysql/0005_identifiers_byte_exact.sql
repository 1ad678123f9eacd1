-- Identifiers compare byte for byte. utf8mb4_bin is a PAD SPACE collation
-- on MariaDB and MySQL 5.7 ("acct" = "acct "), and its NO PAD counterpart
-- has a different name on each server (utf8mb4_nopad_bin on MariaDB,
-- utf8mb4_0900_bin on MySQL 8), so the columns that hold event ids, types,
-- senders, service and owner names become VARBINARY: compared as bytes on
-- every server, whatever the database's or session's collation. Lengths are
-- in bytes, as ddd.DomainEvent.Validate counts them. Each statement can run
-- again after a crash (MySQL commits DDL implicitly).
ALTER TABLE {{prefix}}events
    MODIFY event_id   VARBINARY(64)  NOT NULL,
    MODIFY event_type VARBINARY(255) NOT NULL,
    MODIFY sender     VARBINARY(255) NOT NULL;
ALTER TABLE {{prefix}}services
    MODIFY name  VARBINARY(64) NOT NULL,
    MODIFY owner VARBINARY(64) NOT NULL DEFAULT '';
ALTER TABLE {{prefix}}retries
    MODIFY service  VARBINARY(64)  NOT NULL,
    MODIFY event_id VARBINARY(64)  NOT NULL,
    MODIFY sender   VARBINARY(255) NOT NULL;
ALTER TABLE {{prefix}}transactions
    MODIFY service VARBINARY(64) NOT NULL;
ALTER TABLE {{prefix}}transaction_events
    MODIFY event_id   VARBINARY(64)  NOT NULL,
    MODIFY event_type VARBINARY(255) NOT NULL,
    MODIFY sender     VARBINARY(255) NOT NULL;
