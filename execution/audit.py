"""The invariants of the design, checked against the database as it is now."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection, transaction

from balances.money import FILL_CASH_MOVED_SQL
from trades.sql import OPEN_STATUSES


@dataclass
class Check:
    name: str
    failures: list[str] = field(default_factory=list)
    count: int = 0

    @property
    def ok(self) -> bool:
        return self.count == 0


SAMPLE = 5

CHECKS: list[tuple[str, str]] = [
    (
        "no negative cash, and cash holds covered",
        """SELECT format('customer %s: cash %s, held %s', customer_id, cash, cash_held)
           FROM balances_account WHERE cash < 0 OR cash_held < 0 OR cash_held > cash""",
    ),
    (
        "no negative shares, and share holds covered",
        """SELECT format('customer %s %s: quantity %s, held %s',
                         customer_id, ticker, quantity, held)
           FROM balances_position WHERE quantity < 0 OR held < 0 OR held > quantity""",
    ),
    (
        "cash held equals the holds of in-flight buys",
        """SELECT format('customer %s: held %s, in-flight buys %s', a.customer_id, a.cash_held,
                         COALESCE(t.held, 0))
           FROM balances_account a
           LEFT JOIN (SELECT customer_id, sum(cash_held) AS held FROM trades_trade
                      WHERE status = 'in_progress' AND side = 'buy' GROUP BY customer_id) t
             ON t.customer_id = a.customer_id
           WHERE a.cash_held <> COALESCE(t.held, 0)""",
    ),
    (
        "shares held equal the quantities of in-flight sells",
        """SELECT format('customer %s %s: held %s, in-flight sells %s',
                         COALESCE(p.customer_id, t.customer_id), COALESCE(p.ticker, t.ticker),
                         COALESCE(p.held, 0), COALESCE(t.held, 0))
           FROM (SELECT customer_id, ticker, held FROM balances_position WHERE held <> 0) p
           FULL JOIN (SELECT customer_id, ticker, sum(quantity) AS held FROM trades_trade
                      WHERE status = 'in_progress' AND side = 'sell'
                      GROUP BY customer_id, ticker) t
             ON t.customer_id = p.customer_id AND t.ticker = p.ticker
           WHERE COALESCE(p.held, 0) <> COALESCE(t.held, 0)""",
    ),
    (
        "a position without shares costs nothing",
        """SELECT format('customer %s %s: no shares, cost basis %s', customer_id, ticker,
                         cost_basis)
           FROM balances_position WHERE quantity = 0 AND cost_basis <> 0""",
    ),
    (
        "every cash balance equals the sum of its ledger",
        """SELECT format('customer %s: cash %s, ledger %s', a.customer_id, a.cash,
                         COALESCE(l.total, 0))
           FROM balances_account a
           LEFT JOIN (SELECT customer_id, sum(cash_amount) AS total FROM balances_ledgerentry
                      WHERE ticker IS NULL GROUP BY customer_id) l
             ON l.customer_id = a.customer_id
           WHERE a.cash <> COALESCE(l.total, 0)""",
    ),
    (
        "every position equals the sum of its ledger",
        """SELECT format('customer %s %s: position %s, ledger %s',
                         COALESCE(p.customer_id, l.customer_id), COALESCE(p.ticker, l.ticker),
                         COALESCE(p.quantity, 0), COALESCE(l.total, 0))
           FROM balances_position p
           FULL JOIN (SELECT customer_id, ticker, sum(share_quantity) AS total
                      FROM balances_ledgerentry WHERE ticker IS NOT NULL
                      GROUP BY customer_id, ticker) l
             ON l.customer_id = p.customer_id AND l.ticker = p.ticker
           WHERE COALESCE(p.quantity, 0) <> COALESCE(l.total, 0)""",
    ),
    (
        "each filled trade settled exactly once, for its value, to its customer and ticker; "
        "no other trade moved money",
        """SELECT format('trade %s (%s %s %s %s @ %s, customer %s): %s ledger entries, cash %s, '
                         'shares %s, all of the right kinds for its customer and ticker: %s',
                         t.id, t.status, t.side, t.quantity, t.ticker, t.fill_price,
                         t.customer_id, COALESCE(l.n, 0), l.cash, l.shares, l.own)
           FROM trades_trade t
           LEFT JOIN (SELECT e.trade_id, count(*) AS n, sum(e.cash_amount) AS cash,
                             sum(e.share_quantity) AS shares,
                             bool_and(e.customer_id = tt.customer_id
                                      AND split_part(e.kind, '_', 1) = tt.side
                                      AND e.ticker IS NOT DISTINCT FROM
                                          CASE WHEN e.kind IN ('buy_shares', 'sell_shares')
                                               THEN tt.ticker END) AS own
                      FROM balances_ledgerentry e JOIN trades_trade tt ON tt.id = e.trade_id
                      GROUP BY e.trade_id) l
             ON l.trade_id = t.id
           WHERE (t.status <> 'filled' AND l.n IS NOT NULL)
              OR (t.status = 'filled' AND (
                    l.n IS DISTINCT FROM 2
                 OR NOT l.own
                 OR l.cash IS DISTINCT FROM """
        + FILL_CASH_MOVED_SQL
        + """
                 OR l.shares IS DISTINCT FROM
                        CASE t.side WHEN 'buy' THEN 1 ELSE -1 END * t.quantity))""",
    ),
    (
        "each fill within its price protection, and a buy's cost within its hold",
        """SELECT format('trade %s (%s %s @ %s, limit %s, held %s, customer %s)', id, side,
                         quantity, fill_price, limit_price, cash_held, customer_id)
           FROM trades_trade t
           WHERE status = 'filled' AND (
                 limit_price IS NULL
              OR (side = 'buy' AND (fill_price > limit_price OR cash_held IS NULL
                                    OR -("""
        + FILL_CASH_MOVED_SQL
        + """) > cash_held))
              OR (side = 'sell' AND fill_price < limit_price))""",
    ),
    (
        "never two trades of one customer in flight",
        """SELECT format('customer %s: %s trades in flight', customer_id, count(*))
           FROM trades_trade WHERE status = 'in_progress'
           GROUP BY customer_id HAVING count(*) > 1""",
    ),
    (
        "each customer's trades sent in sequence order, each after the one before finished",
        """SELECT format('trade %s (customer %s, seq %s) sent at %s before an earlier trade '
                         'finished', id, customer_id, seq, submitted_at)
           FROM (SELECT id, customer_id, seq, submitted_at,
                        max(COALESCE(finished_at, 'infinity'::timestamptz)) OVER (
                            PARTITION BY customer_id ORDER BY seq
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_done
                 FROM trades_trade) x
           WHERE submitted_at IS NOT NULL AND before_done > submitted_at""",
    ),
]

# The customers' event logs (events.models): gapless, and telling each trade's and each
# ledger entry's story as the tables do.
EVENT_LOG_CHECKS: list[tuple[str, str]] = [
    (
        "each customer's event log numbered 1, 2, 3, ... with no gap",
        """SELECT format('customer %s: %s events numbered %s to %s', customer_id, count(*),
                         min(seq), max(seq))
           FROM events_customerevent GROUP BY customer_id
           HAVING min(seq) <> 1 OR max(seq) <> count(*)""",
    ),
    (
        "each trade's events in the event log: placed, each status it took, its final state",
        """SELECT format('trade %s (customer %s, %s at %s): events %s at %s', t.id,
                         t.customer_id, t.status, t.fill_price, COALESCE(e.statuses, '{}'),
                         e.last_price)
           FROM trades_trade t
           LEFT JOIN (SELECT customer_id, (data->>'id')::bigint AS trade_id,
                             array_agg(data->>'status' ORDER BY seq) AS statuses,
                             (array_agg(data->>'fill_price' ORDER BY seq DESC))[1] AS last_price
                      FROM events_customerevent WHERE type <> 'activity'
                      GROUP BY 1, 2) e
             ON e.trade_id = t.id AND e.customer_id = t.customer_id
           WHERE e.statuses IS DISTINCT FROM array_remove(ARRAY[
                     'placed',
                     CASE WHEN t.submitted_at IS NOT NULL THEN 'in_progress' END,
                     CASE WHEN t.status IN ('filled', 'rejected', 'cancelled')
                          THEN t.status::text END], NULL)
              OR e.last_price IS DISTINCT FROM t.fill_price::text""",
    ),
    (
        "each event in the event log of the customer it is about",
        """SELECT format('customer %s event %s (%s) is about %s of customer %s', e.customer_id,
                         e.seq, e.type, e.data->>'id', COALESCE(t.customer_id, l.customer_id))
           FROM events_customerevent e
           LEFT JOIN trades_trade t
                  ON e.type <> 'activity' AND t.id = (e.data->>'id')::bigint
           LEFT JOIN balances_ledgerentry l
                  ON e.type = 'activity' AND l.id = (e.data->>'id')::bigint
           WHERE COALESCE(t.customer_id, l.customer_id) IS DISTINCT FROM e.customer_id""",
    ),
    (
        "each ledger entry once in its customer's event log",
        """SELECT format('ledger entry %s (customer %s): %s events', l.id, l.customer_id,
                         COALESCE(e.n, 0))
           FROM balances_ledgerentry l
           LEFT JOIN (SELECT customer_id, (data->>'id')::bigint AS entry_id, count(*) AS n
                      FROM events_customerevent WHERE type = 'activity' GROUP BY 1, 2) e
             ON e.entry_id = l.id AND e.customer_id = l.customer_id
           WHERE e.n IS DISTINCT FROM 1""",
    ),
]
CHECKS += EVENT_LOG_CHECKS

QUIESCENT_CHECKS: list[tuple[str, str]] = [
    (
        "no trade left open (quiescent system)",
        """SELECT format('trade %s (customer %s) is still %s', id, customer_id, status)
           FROM trades_trade WHERE status IN """
        + OPEN_STATUSES,
    ),
]


def audit(*, quiescent: bool = False) -> list[Check]:
    """Run every check in one repeatable-read snapshot (unless called inside a transaction
    already), so that the checks agree with each other."""
    results = []
    checks = CHECKS + (QUIESCENT_CHECKS if quiescent else [])
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if not nested:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for name, sql in checks:
            escaped = sql.replace("%", "%%")
            cursor.execute(
                f"SELECT count(*) OVER (), line FROM ({escaped}) AS v(line) LIMIT %s", [SAMPLE]
            )
            rows = cursor.fetchall()
            count = rows[0][0] if rows else 0
            results.append(Check(name=name, count=count, failures=[r[1] for r in rows]))
    return results
