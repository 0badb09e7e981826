"""Reading a customer's event log: the one statement the API and the stream server share
(the stream server runs it on psycopg's async connections, without Django)."""

# Each event as the JSON clients get, built by Postgres: the stream server sends it as is.
EVENTS_AFTER_SQL = """
SELECT seq, json_build_object(
    'seq', seq, 'type', type, 'created_at', events_time(created_at), 'data', data)::text
FROM events_customerevent
WHERE customer_id = %(customer_id)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s
"""

# The same for the stream server: with the type (its SSE event name) and the event's time
# in seconds since the epoch (how long it took to reach the client).
STREAM_EVENTS_AFTER_SQL = """
SELECT seq, type, extract(epoch FROM created_at)::float8, json_build_object(
    'seq', seq, 'type', type, 'created_at', events_time(created_at), 'data', data)::text
FROM events_customerevent
WHERE customer_id = %(customer_id)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s
"""

# The customer's last event's number (0 before any).
LAST_SEQ_SQL = "SELECT COALESCE(max(seq), 0) FROM events_customerevent WHERE customer_id = %s"

# The last event of each of these customers (those without events are left out).
LAST_SEQS_SQL = """
SELECT c.customer_id, e.seq FROM unnest(%(customers)s::integer[]) AS c(customer_id)
CROSS JOIN LATERAL (
    SELECT seq FROM events_customerevent
    WHERE customer_id = c.customer_id ORDER BY seq DESC LIMIT 1
) AS e
"""

# The largest number a client may name as the last event it saw.
MAX_SEQ = 2**63 - 1

# The history before the log (migration 0001, and the bench's bulk load, which writes with
# the triggers off): each trade's placement, sending and end, and each ledger
# entry with the running balance after it (cash and shares move only through the ledger),
# numbered per customer in the order they happened.
EVENT_LOG_BACKFILL_SQL = """
INSERT INTO events_customerevent (customer_id, seq, type, data, created_at)
SELECT customer_id,
       row_number() OVER (PARTITION BY customer_id ORDER BY at, step, ref),
       type, data, at
FROM (
    SELECT t.customer_id, t.created_at AS at, 0 AS step, t.id AS ref,
           'trade_placed' AS type, events_trade_data(t, 'placed') AS data
    FROM trades_trade t
    UNION ALL
    SELECT t.customer_id, t.submitted_at, 1, t.id, 'trade_sent',
           events_trade_data(t, 'in_progress')
    FROM trades_trade t WHERE t.submitted_at IS NOT NULL
    UNION ALL
    SELECT (e.l).customer_id, e.at, 2, (e.l).id, 'activity',
           events_activity_data(e.l,
               CASE WHEN (e.l).ticker IS NULL THEN e.balance END,
               CASE WHEN (e.l).ticker IS NOT NULL THEN e.balance::bigint END)
    FROM (
        SELECT l, sum(COALESCE(l.cash_amount, l.share_quantity)) OVER (
                   PARTITION BY l.customer_id, l.ticker ORDER BY l.id) AS balance,
               -- An entry's created_at is its transaction's start, which may precede an
               -- earlier entry's commit (it waited for the account lock); a customer's
               -- entry ids follow their commits. A fill's entries go with its trade's end.
               max(COALESCE(t.finished_at, l.created_at)) OVER (
                   PARTITION BY l.customer_id ORDER BY l.id) AS at
        FROM balances_ledgerentry l LEFT JOIN trades_trade t ON t.id = l.trade_id
    ) AS e
    UNION ALL
    SELECT t.customer_id, t.finished_at, 3, t.id, 'trade_' || t.status,
           events_trade_data(t, t.status)
    FROM trades_trade t WHERE t.status IN ('filled', 'rejected', 'cancelled')
) AS history
"""
