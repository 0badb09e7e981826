"""The place-trade statement, on its own so that the benchmark can drive exactly it
straight at Postgres (no Django) to measure the machine's ceiling."""

# The whole placement in one statement, and so one round trip and one transaction: lock
# the customer's account row while taking their next sequence number and a token from
# their rate-limit bucket, insert the trade and the outbox row. The row is written even
# behind an open trade: this statement's snapshot predates its wait for the account lock,
# so it cannot tell whether that trade's settlement has just committed without waking
# anyone. It writes nothing when the customer has no account, one whose status refuses
# the order (support.accounts), is over their rate limit, or already used the
# client_order_id (a concurrent twin with the same key fails the unique index instead).
# The customer's rate-limit bucket as of now: refilled at %(rate)s per second up to %(burst)s.
TOKENS_NOW = (
    "LEAST(%(burst)s, rate_tokens + EXTRACT(EPOCH FROM now() - rate_updated_at) * %(rate)s)"
)

PLACE_TRADE_SQL = f"""
WITH account AS (
    UPDATE balances_account SET
        last_trade_seq = last_trade_seq + 1,
        rate_tokens = {TOKENS_NOW} - 1,
        rate_updated_at = now()
    WHERE customer_id = %(customer_id)s
      AND (status = 'active' OR (status = 'closing_only' AND %(side)s = 'sell'))
      AND {TOKENS_NOW} >= 1
      AND NOT EXISTS (
            SELECT 1 FROM trades_trade
            WHERE customer_id = %(customer_id)s AND client_order_id = %(client_order_id)s
          )
    RETURNING customer_id, last_trade_seq, shard
), trade AS (
    INSERT INTO trades_trade
        (customer_id, seq, ticker, side, quantity, status, client_order_id, created_at)
    SELECT customer_id, last_trade_seq, %(ticker)s, %(side)s, %(quantity)s, 'placed',
           %(client_order_id)s, clock_timestamp()
    FROM account
    RETURNING id, seq, created_at
), outbox AS (
    INSERT INTO outbox_outboxmessage (shard, customer_id, created_at)
    SELECT shard, customer_id, clock_timestamp() FROM account
)
SELECT trade.id, trade.seq, trade.created_at, account.shard FROM trade, account
"""

# Why a placement wrote nothing: the account's bucket and status now, if there is one.
REFUSAL_SQL = f"""
SELECT {TOKENS_NOW}, status, status_reason FROM balances_account
WHERE customer_id = %(customer_id)s
"""
