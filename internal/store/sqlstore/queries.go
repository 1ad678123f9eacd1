package sqlstore

import (
	"strconv"
	"strings"

	"github.com/dddbus/eventbus/internal/store"
)

// queries holds the portable statements, the same SQL on every database,
// built once per store from the validated table prefix and the database's
// clock and placeholders (sqlText). "?" placeholders are rebound for
// the driver; statements whose length varies (IN lists, multi-row inserts)
// are built by the helpers at the bottom.
type queries struct {
	text                                                sqlText
	now                                                 string
	events, sequencer, services, retries, txs, txEvents string

	changeMark string // the highest id and last_seq (see ChangeMark)

	// consumer
	fetchEvents, fetchRetries string
	dueRetries                string // fetchRetries' SELECT and WHERE, not rebound

	// services and leases
	acquireLease, readLease, renewLease, releaseLease, commitOffset     string
	serviceStatus, removeService, removeServiceRetries, serviceActivity string

	// retries and dead letters
	updateRetry, countDead, replayDead, discardDead string

	// transactions
	insertTx, txState, resolveTx, resolveTxToken, resolveTxClaimed, claimTx, dueTxs string
	txEventsOf, publishTx, deleteTxEvents, rescheduleTx, countUnresolved            string
	txWatermark, raiseTxWatermark                                                   string

	// standbys
	renewStandby, serviceExists string

	smallInserts [smallInsert + 1]string // insertEvents(n) for n <= smallInsert

	// hot are the statements kept prepared (see stmtCache): those with
	// arguments that every poll, batch or unit of work runs.
	hot map[string]bool

	// cleaner
	minConsumed, cleanCandidates, oldDeadServices, oldDeadLetters, oldResolvedTxs string

	// operations: seek, lags, transaction lists
	seekFence, seekRead, seekMove, seekDropRetries, firstSeqFrom string
	lagServices, firstAfter, eventCreated                        string
	txByID, nextTxService, txCounts                              string
}

const (
	eventCols  = "event_id, event_type, sender, send_type, payload, metadata, occurred_at"
	txInfoCols = "id, service, state, check_count, last_error, due_at, created_at, updated_at"
	// deadCols are a dead letter's columns, retries r joined with events e (see scanDeadLetter).
	deadCols = "r.event_pk, r.attempts, r.last_error, r.updated_at, e.seq, e.event_id, e.event_type, e.sender, e.send_type, e.payload, e.metadata, e.occurred_at"
)

func newQueries(text sqlText, prefix string) *queries {
	q := &queries{
		text:      text,
		now:       text.now,
		events:    prefix + "events",
		sequencer: prefix + "sequencer",
		services:  prefix + "services",
		retries:   prefix + "retries",
		txs:       prefix + "transactions",
		txEvents:  prefix + "transaction_events",
	}
	r := q.r
	q.changeMark = "SELECT COALESCE((SELECT MAX(id) FROM " + q.events + "), 0), COALESCE((SELECT last_seq FROM " + q.sequencer + " WHERE id = 1), 0)"

	// Consumer.
	q.fetchEvents = r("SELECT id, seq, " + eventCols + " FROM " + q.events +
		" WHERE seq > ? ORDER BY seq LIMIT ?")
	// Due retries. A FIFO row runs only when no earlier FIFO row of its
	// sender still waits (parked rows wait behind the head).
	q.dueRetries = strings.ReplaceAll("SELECT r.event_pk, r.attempts, e.seq, e.event_id, e.event_type, e.sender, e.send_type, e.payload, e.metadata, e.occurred_at"+
		" FROM "+q.retries+" r JOIN "+q.events+" e ON e.id = r.event_pk"+
		" WHERE r.service = ? AND r.state = {retry} AND r.next_at <= {now}"+
		" AND (r.fifo = 0 OR NOT EXISTS (SELECT 1 FROM "+q.retries+" h WHERE h.service = r.service"+
		" AND h.sender = r.sender AND h.fifo = 1 AND h.state = {retry} AND h.seq < r.seq))", "{now}", q.now)
	q.dueRetries = stateCodes.Replace(q.dueRetries)
	q.fetchRetries = text.bind(q.dueRetries + " ORDER BY e.seq LIMIT ?")

	// Services and leases. version changes on every fenced write, so the
	// affected-row count is exact on MySQL too (it counts changed rows).
	q.acquireLease = r("UPDATE " + q.services + " SET owner = ?, epoch = epoch + 1, version = version + 1," +
		" lease_until = {now} + ?, updated_at = {now} WHERE name = ? AND (lease_until < {now} OR owner = '' OR owner = ?)" +
		" AND partitions <= 1") // a partitioned service is consumed by its partitions' rows
	q.readLease = r("SELECT owner, epoch, consumed_seq FROM " + q.services + " WHERE name = ?")
	q.renewLease = r("UPDATE " + q.services + " SET version = version + 1, lease_until = {now} + ?, updated_at = {now}" +
		" WHERE name = ? AND owner = ? AND epoch = ?")
	q.releaseLease = r("UPDATE " + q.services + " SET owner = '', version = version + 1, lease_until = 0, updated_at = {now}" +
		" WHERE name = ? AND owner = ?")
	q.commitOffset = r("UPDATE " + q.services + " SET consumed_seq = ?, version = version + 1, lease_until = {now} + ?, updated_at = {now}" +
		" WHERE name = ? AND owner = ? AND epoch = ? AND consumed_seq <= ?")
	// Pending counts committed events not sequenced yet: the sequencer runs
	// only while some instance polls, and they are every service's backlog.
	q.serviceStatus = r("SELECT s.name, s.consumed_seq, s.owner, s.lease_until, s.standby_until, s.updated_at, s.partitions, s.parent, s.part, q.last_seq," +
		" (SELECT COUNT(*) FROM " + q.events + " e WHERE e.seq > s.consumed_seq OR e.seq IS NULL)," +
		" (SELECT COUNT(*) FROM " + q.retries + " r WHERE r.service = s.name AND r.state = {retry})," +
		" (SELECT COUNT(*) FROM " + q.retries + " r WHERE r.service = s.name AND r.state = {dead})" +
		" FROM " + q.services + " s CROSS JOIN " + q.sequencer + " q WHERE q.id = 1 ORDER BY s.name")
	// A service is removable when no instance runs it: no live lease, and
	// no standby reported in for LeaseDuration.
	q.removeService = r("DELETE FROM " + q.services + " WHERE name = ? AND (lease_until < {now} OR owner = '') AND standby_until < {now}")
	q.serviceActivity = r("SELECT owner, lease_until, standby_until, {now} FROM " + q.services + " WHERE name = ?")
	q.removeServiceRetries = r("DELETE FROM " + q.retries + " WHERE service = ?")

	// Retries and dead letters.
	q.updateRetry = r("UPDATE " + q.retries + " SET state = ?, attempts = ?, next_at = {now} + ?, last_error = ?, updated_at = {now}" +
		" WHERE service = ? AND event_pk = ? AND state = {retry}")
	q.countDead = r("SELECT COUNT(*) FROM " + q.retries + " WHERE service = ? AND state = {dead}")
	q.replayDead = r("UPDATE " + q.retries + " SET state = {retry}, attempts = 0, next_at = {now}, updated_at = {now}" +
		" WHERE service = ? AND state = {dead} AND event_id = ?")
	q.discardDead = r("DELETE FROM " + q.retries + " WHERE service = ? AND state = {dead} AND event_id = ?")

	// Transactions. A context resolves by id and token (only what it
	// began), an operator by id, the checker by id while its claim holds:
	// the check_count it set is unchanged (no other instance claimed since)
	// and the claim has not lapsed.
	q.insertTx = r("INSERT INTO " + q.txs + " (service, token, state, check_count, due_at, last_error, created_at, updated_at)" +
		" VALUES (?, ?, {pending}, 0, {now} + ?, '', {now}, {now})")
	q.txState = r("SELECT state, service, token FROM " + q.txs + " WHERE id = ?")
	resolve := "UPDATE " + q.txs + " SET state = ?, updated_at = {now} WHERE id = ? AND service = ?"
	q.resolveTx = r(resolve + " AND state IN ({pending}, {unresolved})")
	q.resolveTxToken = r(resolve + " AND state IN ({pending}, {unresolved}) AND token = ?")
	q.resolveTxClaimed = r(resolve + " AND state = {pending} AND check_count = ? AND due_at > {now}")
	// A claim is a compare-and-set on check_count, read with the due list:
	// the claimant knows which check is its own.
	q.claimTx = r("UPDATE " + q.txs + " SET check_count = check_count + 1, due_at = {now} + ?, updated_at = {now}" +
		" WHERE id = ? AND state = {pending} AND due_at <= {now} AND check_count = ?")
	q.dueTxs = r("SELECT id, check_count FROM " + q.txs + " WHERE service = ? AND state = {pending} AND due_at <= {now} ORDER BY due_at LIMIT ?")
	q.txEventsOf = r("SELECT " + eventCols + " FROM " + q.txEvents + " WHERE tx_id = ? ORDER BY ordinal")
	q.publishTx = r("INSERT INTO " + q.events + " (" + eventCols + ", created_at) SELECT " + eventCols + ", {now} FROM " +
		q.txEvents + " WHERE tx_id = ? ORDER BY ordinal")
	q.deleteTxEvents = r("DELETE FROM " + q.txEvents + " WHERE tx_id = ?")
	q.rescheduleTx = r("UPDATE " + q.txs + " SET state = ?, due_at = {now} + ?, last_error = ?, updated_at = {now}" +
		" WHERE id = ? AND state = {pending} AND check_count = ? AND due_at > {now}")
	q.countUnresolved = r("SELECT COUNT(*) FROM " + q.txs + " WHERE service = ? AND state = {unresolved}")
	q.txWatermark = "SELECT max_tx_id FROM " + prefix + "cleaned WHERE id = 1"
	q.raiseTxWatermark = r("UPDATE " + prefix + "cleaned SET max_tx_id = ? WHERE id = 1 AND max_tx_id < ?")

	// Standbys: a running instance that does not hold the lease says so.
	q.renewStandby = r("UPDATE " + q.services + " SET standby_until = {now} + ? WHERE name = ?")
	q.serviceExists = r("SELECT COUNT(*) FROM " + q.services + " WHERE name = ?")

	// Cleaner.
	// The row of a service split into partitions is not consumed (its
	// partitions' rows are): it holds nothing back.
	q.minConsumed = r("SELECT COUNT(*), COALESCE(MIN(consumed_seq), 0) FROM " + q.services + " WHERE partitions <= 1")
	// An anti-join written as LEFT JOIN ... IS NULL: MariaDB turns NOT EXISTS
	// into a materialised subquery that scans the whole retry index on every
	// batch; this form looks each candidate up in retries_event.
	q.cleanCandidates = r("SELECT e.id FROM " + q.events + " e LEFT JOIN " + q.retries + " r ON r.event_pk = e.id" +
		" WHERE e.seq <= ? AND e.created_at < {now} - ? AND r.event_pk IS NULL ORDER BY e.seq LIMIT ?")
	q.oldDeadServices = r("SELECT DISTINCT service FROM " + q.retries + " WHERE state = {dead} AND updated_at < {now} - ?")
	q.oldDeadLetters = r("SELECT event_pk FROM " + q.retries + " WHERE service = ? AND state = {dead} AND updated_at < {now} - ?" +
		" ORDER BY event_pk LIMIT ?")
	for n := 1; n <= smallInsert; n++ {
		q.smallInserts[n] = q.insertEvents(n)
	}
	q.oldResolvedTxs = r("SELECT id FROM " + q.txs + " WHERE state IN ({committed}, {rolledback}) AND updated_at < {now} - ? ORDER BY id LIMIT ?")

	// Seek: fence the owner first (this write also locks the service's
	// row), read, move, drop the retries the log delivers again.
	q.seekFence = r("UPDATE " + q.services + " SET owner = '', epoch = epoch + 1, version = version + 1," +
		" lease_until = 0, updated_at = {now} WHERE name = ?")
	q.seekRead = r("SELECT s.consumed_seq, q.last_seq FROM " + q.services + " s CROSS JOIN " + q.sequencer +
		" q WHERE q.id = 1 AND s.name = ?")
	q.seekMove = r("UPDATE " + q.services + " SET consumed_seq = ? WHERE name = ?")
	q.seekDropRetries = r("DELETE FROM " + q.retries + " WHERE service = ? AND state = {retry} AND seq > ?")
	q.firstSeqFrom = r("SELECT MIN(seq) FROM " + q.events + " WHERE created_at >= ? AND seq IS NOT NULL")

	// Lags.
	q.lagServices = r("SELECT name, consumed_seq, {now} FROM " + q.services + " WHERE partitions <= 1 ORDER BY name")
	// The first event after an offset, through the seq index.
	q.firstAfter = r("SELECT created_at FROM " + q.events + " WHERE seq > ? ORDER BY seq LIMIT 1")
	q.eventCreated = r("SELECT created_at FROM " + q.events + " WHERE id = ?")

	// Transaction lists. TransactionCounts walks the next service name (a
	// loose index scan of transactions_due), then one service's counts.
	q.txByID = r("SELECT " + txInfoCols + " FROM " + q.txs + " WHERE id = ?")
	q.nextTxService = r("SELECT MIN(service) FROM " + q.txs + " WHERE service > ?")
	q.txCounts = r("SELECT (SELECT COUNT(*) FROM " + q.txs + " WHERE service = ? AND state = {pending})," +
		" (SELECT COUNT(*) FROM " + q.txs + " WHERE service = ? AND state = {unresolved})")

	// The fetch of new events and of due retries, the offset commit and the
	// lease renewal (also the fence of the retry phase), and the INSERT of
	// the common event counts. Statements without arguments need no
	// preparing on MySQL (one round trip as they are); the rest run less
	// often than once a poll.
	q.hot = map[string]bool{q.fetchEvents: true, q.fetchRetries: true, q.commitOffset: true, q.renewLease: true}
	for _, ins := range q.smallInserts[1:] {
		q.hot[ins] = true
	}
	return q
}

// State codes, as stored in the state columns: the one place that names
// them. Statements say {retry}, {pending}, ... and q.sql writes the codes.
const (
	stateRetry = 0 // retries: waiting for its next attempt (or parked behind its sender's FIFO head)
	stateDead  = 1 // retries: dead letter
)

// txCode is the stored code of a transaction state: store.TxState's
// values are the codes (migration 0001).
func txCode(s store.TxState) int { return int(s) }

var stateCodes = strings.NewReplacer(
	"{retry}", strconv.Itoa(stateRetry),
	"{dead}", strconv.Itoa(stateDead),
	"{pending}", strconv.Itoa(txCode(store.TxPending)),
	"{committed}", strconv.Itoa(txCode(store.TxCommitted)),
	"{rolledback}", strconv.Itoa(txCode(store.TxRolledBack)),
	"{unresolved}", strconv.Itoa(txCode(store.TxUnresolved)),
)

// r writes the clock and the state codes into a statement and rebinds it.
func (q *queries) r(s string) string { return q.sql(strings.ReplaceAll(s, "{now}", q.now)) }

// sql writes the state codes into a statement and rebinds it for the driver.
func (q *queries) sql(s string) string { return q.text.bind(stateCodes.Replace(s)) }

// smallInsert is the largest event count whose INSERT is built once and
// kept prepared.
const smallInsert = 16
