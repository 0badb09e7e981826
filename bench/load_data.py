"""Load the bench database to size with set-based SQL (no ORM, no row-by-row inserts).

What it builds, all consistent with the invariants `manage.py audit` checks:

- customers 1..N: auth_user, an API key (bench_key), an account in its shard, a cash `deposit`
  ledger entry; every 5th customer also `shares_in` of a "home" ticker.
- T past trades spread over the last 30 days, round-robin over the customers (trade i
  belongs to customer (i-1) % N + 1 with seq (i-1) // N + 1), all terminal: 30% filled
  (with their two ledger entries), 40% rejected, 30% cancelled. Filled sells only sell
  the home ticker of a customer who holds it, so no position goes negative.
- cash and positions are computed last, as the sums of the ledger.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg import sql

from balances.money import FILL_CASH_MOVED_SQL
from events.sql import EVENT_LOG_BACKFILL_SQL

DEPOSIT = Decimal("1000000.00")
HOME_SHARES = 1000
HISTORY = timedelta(days=30)
# Filled sells happen at even seqs only up to here: at most 5 shares each, 1000 held.
MAX_SELL_SEQ = 200

_USERS_SQL = """
INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email,
                       is_staff, is_active, date_joined)
SELECT c, '!', false, 'bench' || c, '', '', '', false, true, %(opened)s
FROM generate_series(1, %(n)s) AS c
"""

# Customer c's API key is bench_key(c): derived, so that the bench can use it again, and
# stored hashed as api_keys keeps every key.
_KEY_SQL = "substr(md5('bench-key-' || c) || md5('bench-key2-' || c), 1, 40)"
_TOKENS_SQL = f"""
INSERT INTO api_keys_apikey (customer_id, prefix, digest, created_at)
SELECT c, left({_KEY_SQL}, 12), encode(sha256(convert_to({_KEY_SQL}, 'UTF8')), 'hex'),
       %(opened)s
FROM generate_series(1, %(n)s) AS c
"""


def bench_key(customer_id: int) -> str:
    """The API key the load gave customer `customer_id` (the same as _KEY_SQL)."""
    first = hashlib.md5(f"bench-key-{customer_id}".encode()).hexdigest()
    second = hashlib.md5(f"bench-key2-{customer_id}".encode()).hexdigest()
    return (first + second)[:40]


_TRADES_SQL = """
INSERT INTO trades_trade (id, customer_id, seq, ticker, side, quantity, status, reason,
                          client_order_id, created_at, submitted_at, executed_at, fill_price,
                          finished_at, exchange_order_id, cash_held, limit_price)
SELECT i, c, s,
       CASE WHEN sell THEN (%(tickers)s::text[])[c %% %(nt)s + 1]
            ELSE (%(tickers)s::text[])[(c + s) %% %(nt)s + 1] END,
       CASE WHEN sell THEN 'sell' ELSE 'buy' END,
       qty, status,
       CASE status WHEN 'rejected' THEN
                       CASE WHEN sell THEN 'insufficient shares' ELSE 'insufficient funds' END
                   WHEN 'cancelled' THEN 'cancelled by customer' END,
       CASE WHEN h %% 2 = 0 THEN 'hist-' || i END,
       created,
       CASE WHEN status = 'filled' THEN created + interval '15 ms' END,
       CASE WHEN status = 'filled' THEN created + interval '40 ms' END,
       CASE WHEN status = 'filled' THEN price END,
       created + CASE status WHEN 'filled' THEN interval '45 ms'
                             WHEN 'rejected' THEN interval '10 ms' ELSE interval '2 s' END,
       CASE WHEN status = 'filled' THEN 'X' || i END,
       CASE WHEN status = 'filled' AND NOT sell THEN ceil(qty * trunc(price * 1.05, 4) * 100) / 100
       END,
       CASE WHEN status = 'filled' THEN
           CASE WHEN sell THEN trunc(price * 0.95, 4) ELSE trunc(price * 1.05, 4) END END
FROM (
    SELECT *,
           CASE WHEN status = 'filled'
                THEN c %% 5 = 0 AND s %% 2 = 0 AND s <= %(max_sell_seq)s
                ELSE h %% 3 = 0 END AS sell
    FROM (
        SELECT i, c, s, h,
               CASE WHEN h %% 10 < 3 THEN 'filled'
                    WHEN h %% 10 < 7 THEN 'rejected' ELSE 'cancelled' END AS status,
               1 + (h / 10) %% 5 AS qty,
               (5 + (hashint8(-i) & 2147483647) %% 4950000 / 10000.0)::numeric(14, 4) AS price,
               %(t0)s + (i - 1) * %(step)s AS created
        FROM (
            SELECT i, (i - 1) %% %(n)s + 1 AS c, (i - 1) / %(n)s + 1 AS s,
                   hashint8(i) & 2147483647 AS h
            FROM generate_series(1::bigint, %(t)s) AS i
        ) AS g
    ) AS k
) AS x
"""

_OPENING_LEDGER_SQL = """
INSERT INTO balances_ledgerentry (customer_id, trade_id, kind, ticker, cash_amount,
                                  share_quantity, created_at)
SELECT c, NULL::bigint, 'deposit', NULL::text, %(deposit)s::numeric, NULL::bigint, %(opened)s
FROM generate_series(1, %(n)s) AS c
UNION ALL
SELECT c, NULL, 'shares_in', (%(tickers)s::text[])[c %% %(nt)s + 1], NULL, %(shares)s, %(opened)s
FROM generate_series(5, %(n)s, 5) AS c
"""

# The audit's own rule (balances.money.FILL_CASH_MOVED_SQL): a buy's cost rounded up to the
# cent, a sell's proceeds down; shares move by the quantity.
_SETTLEMENT_LEDGER_SQL = (
    """
INSERT INTO balances_ledgerentry (customer_id, trade_id, kind, ticker, cash_amount,
                                  share_quantity, created_at)
SELECT t.customer_id, t.id,
       t.side || CASE WHEN e.cash THEN '_cash' ELSE '_shares' END,
       CASE WHEN NOT e.cash THEN t.ticker END,
       CASE WHEN e.cash THEN """
    + FILL_CASH_MOVED_SQL
    + """ END,
       CASE WHEN NOT e.cash THEN CASE t.side WHEN 'buy' THEN 1 ELSE -1 END * t.quantity END,
       t.executed_at
FROM trades_trade t CROSS JOIN (VALUES (true), (false)) AS e(cash)
WHERE t.status = 'filled'
ORDER BY t.id, e.cash
"""
)

_ACCOUNTS_SQL = """
INSERT INTO balances_account (customer_id, shard, cash, cash_held, last_trade_seq, created_at)
SELECT c, outbox_shard_of(c, %(shard_count)s), COALESCE(l.cash, 0), 0,
       %(t)s / %(n)s + CASE WHEN c - 1 < %(t)s %% %(n)s THEN 1 ELSE 0 END, %(opened)s
FROM generate_series(1, %(n)s) AS c
LEFT JOIN (SELECT customer_id, sum(cash_amount) AS cash FROM balances_ledgerentry
           WHERE ticker IS NULL GROUP BY customer_id) AS l ON l.customer_id = c
"""

_POSITIONS_SQL = """
INSERT INTO balances_position (customer_id, ticker, quantity, held)
SELECT customer_id, ticker, sum(share_quantity), 0 FROM balances_ledgerentry
WHERE ticker IS NOT NULL GROUP BY customer_id, ticker
"""

_SEQUENCES_SQL = """
SELECT setval(pg_get_serial_sequence('auth_user', 'id'), %(n)s),
       setval(pg_get_serial_sequence('trades_trade', 'id'), GREATEST(%(t)s, 1))
"""


def _is_superuser(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        return bool(row and row[0])


def _session(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    # A lost bulk load is simply redone: no need to wait for its WAL flushes.
    conn.execute("SET synchronous_commit = off")
    if _is_superuser(url):
        # The data is consistent by construction: skip the per-row foreign-key triggers.
        conn.execute("SET session_replication_role = replica")
    return conn


def _timed(url: str, steps: list[tuple[str, str]], params: dict, log: Callable[[str], None]):
    with _session(url) as conn:
        for label, statement in steps:
            started = time.monotonic()
            with conn.transaction():
                conn.execute(statement, params)
            log(f"  {label:<28} {time.monotonic() - started:6.1f} s")


_SECONDARY_INDEXES_SQL = """
SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = %s::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
"""
BULK_TABLES = ("trades_trade", "balances_ledgerentry")


def _drop_secondary_indexes(url: str) -> list[str]:
    """Drop the indexes no constraint needs on the big tables; returns their definitions.

    Building an index once after the load is several times cheaper than maintaining it
    row by row during it."""
    definitions = []
    with psycopg.connect(url, autocommit=True) as conn:
        for table in BULK_TABLES:
            for name, definition in conn.execute(_SECONDARY_INDEXES_SQL, (table,)).fetchall():
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
                definitions.append(definition)
    return definitions


def _create(url: str, definition: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(definition)


def load(url: str, *, customers: int, trades: int, shard_count: int, log=print) -> float:
    """Fill the freshly migrated database at `url`; returns the seconds it took."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        tickers = [
            row[0]
            for row in conn.execute("SELECT symbol FROM trades_ticker WHERE active ORDER BY symbol")
        ]
    now = datetime.now(UTC)
    params = {
        "n": customers,
        "t": trades,
        "nt": len(tickers),
        "tickers": tickers,
        "shard_count": shard_count,
        "deposit": DEPOSIT,
        "shares": HOME_SHARES,
        "max_sell_seq": MAX_SELL_SEQ,
        "opened": now - 2 * HISTORY,
        "t0": now - HISTORY,
        "step": HISTORY / max(trades, 1),
    }
    indexes = _drop_secondary_indexes(url)
    chains = [
        [("users", _USERS_SQL), ("tokens", _TOKENS_SQL), ("opening ledger", _OPENING_LEDGER_SQL)],
        [("trades", _TRADES_SQL), ("settlement ledger", _SETTLEMENT_LEDGER_SQL)],
    ]
    # Without foreign-key checks the two chains are independent: run them side by side
    # on two connections (two cores); with them, trades need their users committed first.
    with ThreadPoolExecutor(2 if _is_superuser(url) else 1) as pool:
        for future in [pool.submit(_timed, url, chain, params, log) for chain in chains]:
            future.result()
    step = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda definition: _create(url, definition), indexes))
    log(f"  {f'{len(indexes)} secondary indexes':<28} {time.monotonic() - step:6.1f} s")
    _timed(
        url,
        [
            ("accounts", _ACCOUNTS_SQL),
            ("positions", _POSITIONS_SQL),
            ("sequences", _SEQUENCES_SQL),
            # The triggers that write it are off for the load (replica mode, above).
            *([("event log", EVENT_LOG_BACKFILL_SQL)] if _is_superuser(url) else []),
        ],
        params,
        log,
    )
    step = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        # Start the measurements from a clean checkpoint, not in the middle of one.
        conn.execute("CHECKPOINT")
    log(f"  {'vacuum analyze, checkpoint':<28} {time.monotonic() - step:6.1f} s")
    return time.monotonic() - started
