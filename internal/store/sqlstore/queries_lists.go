package sqlstore

import "strings"

// Portable statements whose length varies with their arguments: multi-row
// INSERTs and IN lists, built per call (the common INSERTs of events are
// built once, see smallInserts).

// insertEvents returns a multi-row INSERT of n events into table.
func (q *queries) insertEvents(n int) string {
	if n >= 1 && n <= smallInsert && q.smallInserts[n] != "" {
		return q.smallInserts[n]
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + q.events + " (" + eventCols + ", created_at) VALUES ")
	row := "(?, ?, ?, ?, ?, ?, ?, " + q.now + ")"
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return q.sql(b.String())
}

// insertTxEvents returns a multi-row INSERT of n events of a pending transaction.
func (q *queries) insertTxEvents(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + q.txEvents + " (tx_id, ordinal, " + eventCols + ") VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return q.sql(b.String())
}

// retryValues is the column list and n rows of an INSERT into retries,
// not rendered; each database writes the INSERT around it (see
// engine.insertRetries).
func (q *queries) retryValues(n int) string {
	var b strings.Builder
	b.WriteString(" (service, event_pk, seq, event_id, sender, fifo, state, attempts, next_at, last_error, created_at, updated_at, slot) VALUES ")
	row := "(?, ?, ?, ?, ?, ?, ?, ?, " + q.now + " + ?, ?, " + q.now + ", " + q.now + ", ?)"
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// in returns "(?, ?, ...)" with n placeholders (not rebound).
func in(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// deleteEventsByID returns the cleaner's DELETE of n event ids at or below
// a consumed position. It reads no other table: on MySQL a subquery of a
// DELETE is a locking read, which would wait for (and hold up) consumers'
// offset commits and lease renewals. See CleanEvents.
func (q *queries) deleteEventsByID(n int) string {
	return q.sql("DELETE FROM " + q.events + " WHERE seq <= ? AND id IN " + in(n))
}

// cleanRecheck returns the cleaner's plain read, after its DELETE of n
// event ids: the number of services, their lowest consumed position, and
// how many retry rows reference those ids.
func (q *queries) cleanRecheck(n int) string {
	return q.sql("SELECT COUNT(*), COALESCE(MIN(consumed_seq), 0), (SELECT COUNT(*) FROM " + q.retries +
		" WHERE event_pk IN " + in(n) + ") FROM " + q.services + " WHERE partitions <= 1")
}

// deleteDeadByPK returns the cleaner's DELETE of n dead letters of one
// service; the age is checked again in case one was replayed and failed anew.
func (q *queries) deleteDeadByPK(n int) string {
	return q.sql("DELETE FROM " + q.retries + " WHERE service = ? AND state = {dead} AND updated_at < " + q.now + " - ?" +
		" AND event_pk IN " + in(n))
}

// deleteTxsByID returns the cleaner's DELETE of n resolved transactions.
func (q *queries) deleteTxsByID(n int) string {
	return q.sql("DELETE FROM " + q.txs + " WHERE id IN " + in(n))
}

// deleteRetriesByPK returns a DELETE of n retry rows of one service.
func (q *queries) deleteRetriesByPK(n int) string {
	return q.sql("DELETE FROM " + q.retries + " WHERE service = ? AND state = {retry} AND event_pk IN " + in(n))
}

// fetchRetriesExcept returns fetchRetries leaving out the rows of n senders
// (held ones: see holds), and with part those of other partitions (the
// partition of a row is its slot modulo the count).
func (q *queries) fetchRetriesExcept(n int, part bool) string {
	s := q.dueRetries
	if part {
		s += " AND r.slot >= 0 AND r.slot % ? = ?"
	}
	if n > 0 {
		s += " AND r.sender NOT IN " + in(n)
	}
	return q.sql(s + " ORDER BY e.seq LIMIT ?")
}

// blockedSenders returns the senders among n that have a FIFO event waiting
// in the retry store: their later FIFO events must park behind it.
func (q *queries) blockedSenders(n int) string {
	return q.sql("SELECT DISTINCT sender FROM " + q.retries +
		" WHERE service = ? AND fifo = 1 AND state = {retry} AND sender IN " + in(n))
}
