import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from events.sql import EVENT_LOG_BACKFILL_SQL

# The event log is written here, by triggers, in the transaction of each change: no code
# path can change a trade or the ledger without the customer's log hearing of it.
#
# seq: the customer's last number + 1. Every writer of trades and ledger entries holds the
# customer's account row lock, so writers of one customer take turns; were one not to,
# two transactions taking the same number would collide on the primary key (the second
# fails), never commit out of order or skip a number.
#
# The data is the representation of GET /api/v1/trades/{id}/ as it stood after the change
# (fields set by a later status are null), or of GET /api/v1/account/activities/ with the
# balance after the entry: cash for a cash entry, the position's quantity for shares.
# tests/events/test_event_log.py holds both to the API's serializers.
EVENT_LOG_SQL = """
-- One expression: inlined where it is called.
CREATE FUNCTION events_time(t timestamptz) RETURNS text AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$ LANGUAGE sql STABLE;

-- PL/pgSQL, not SQL functions: a trigger's call of an SQL function that cannot be inlined
-- is parsed and planned again on every call (half the placement's time, measured);
-- PL/pgSQL keeps its plans for the session.
CREATE FUNCTION events_trade_data(t trades_trade, as_status text) RETURNS jsonb AS $$
DECLARE
    final boolean := as_status IN ('filled', 'rejected', 'cancelled');
BEGIN
    RETURN jsonb_build_object(
        'id', t.id,
        'ticker', t.ticker,
        'side', t.side,
        'quantity', t.quantity,
        'status', as_status,
        'reason', CASE WHEN final THEN t.reason END,
        'client_order_id', t.client_order_id,
        'created_at', events_time(t.created_at),
        'submitted_at', CASE WHEN as_status <> 'placed' THEN events_time(t.submitted_at) END,
        'executed_at', CASE WHEN final THEN events_time(t.executed_at) END,
        'fill_price', CASE WHEN final THEN t.fill_price::text END,
        'finished_at', CASE WHEN final THEN events_time(t.finished_at) END,
        'updated_at', events_time(CASE
            WHEN final THEN COALESCE(t.finished_at, t.submitted_at, t.created_at)
            WHEN as_status = 'in_progress' THEN COALESCE(t.submitted_at, t.created_at)
            ELSE t.created_at END));
END
$$ LANGUAGE plpgsql STABLE;

CREATE FUNCTION events_activity_data(
    e balances_ledgerentry, cash_after numeric, quantity_after bigint
) RETURNS jsonb AS $$
BEGIN
    RETURN jsonb_build_object(
        'id', e.id,
        'type', CASE
            WHEN e.kind IN ('buy_cash', 'buy_shares', 'sell_shares', 'sell_cash') THEN 'fill'
            WHEN e.kind = 'reversal' THEN 'correction'
            ELSE e.kind END,
        'kind', e.kind,
        'trade_id', e.trade_id,
        'ticker', e.ticker,
        'cash_amount', e.cash_amount::text,
        'share_quantity', e.share_quantity,
        'created_at', events_time(e.created_at),
        'cash_after', cash_after::text,
        'quantity_after', quantity_after);
END
$$ LANGUAGE plpgsql STABLE;

CREATE FUNCTION events_append(p_customer_id integer, p_type text, p_data jsonb)
RETURNS void AS $$
BEGIN
    INSERT INTO events_customerevent (customer_id, seq, type, data, created_at)
    SELECT p_customer_id, COALESCE(max(seq), 0) + 1, p_type, p_data, clock_timestamp()
    FROM events_customerevent WHERE customer_id = p_customer_id;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION events_trade_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM events_append(NEW.customer_id, 'trade_placed',
                              events_trade_data(NEW, 'placed'));
        IF NEW.status <> 'placed' AND NEW.submitted_at IS NOT NULL THEN
            PERFORM events_append(NEW.customer_id, 'trade_sent',
                                  events_trade_data(NEW, 'in_progress'));
        END IF;
        IF NEW.status IN ('placed', 'in_progress') THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM events_append(NEW.customer_id, CASE NEW.status
        WHEN 'in_progress' THEN 'trade_sent' ELSE 'trade_' || NEW.status END,
        events_trade_data(NEW, NEW.status));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_trade_placed AFTER INSERT ON trades_trade
    FOR EACH ROW EXECUTE FUNCTION events_trade_changed();
CREATE TRIGGER events_trade_status AFTER UPDATE OF status ON trades_trade
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION events_trade_changed();

-- Every writer changes the balance before it writes the entry (balances.services,
-- balances.movements), so the balance read here is the one after it.
CREATE FUNCTION events_ledger_entry() RETURNS trigger AS $$
BEGIN
    PERFORM events_append(NEW.customer_id, 'activity', events_activity_data(NEW,
        CASE WHEN NEW.ticker IS NULL THEN
            (SELECT cash FROM balances_account WHERE customer_id = NEW.customer_id) END,
        CASE WHEN NEW.ticker IS NOT NULL THEN
            (SELECT quantity FROM balances_position
             WHERE customer_id = NEW.customer_id AND ticker = NEW.ticker) END));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_ledger_entry AFTER INSERT ON balances_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION events_ledger_entry();

CREATE FUNCTION events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the customer event log is append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events_customerevent
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
"""

DROP_EVENT_LOG_SQL = """
DROP TRIGGER events_append_only ON events_customerevent;
DROP TRIGGER events_ledger_entry ON balances_ledgerentry;
DROP TRIGGER events_trade_status ON trades_trade;
DROP TRIGGER events_trade_placed ON trades_trade;
DROP FUNCTION events_append_only();
DROP FUNCTION events_ledger_entry();
DROP FUNCTION events_trade_changed();
DROP FUNCTION events_append(integer, text, jsonb);
DROP FUNCTION events_activity_data(balances_ledgerentry, numeric, bigint);
DROP FUNCTION events_trade_data(trades_trade, text);
DROP FUNCTION events_time(timestamptz);
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("trades", "0007_trade_timeline"),
        ("balances", "0008_account_status"),
    ]

    operations = [
        migrations.CreateModel(
            name="CustomerEvent",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "customer_id",
                        "seq",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("seq", models.BigIntegerField()),
                (
                    "type",
                    models.CharField(
                        choices=[
                            ("trade_placed", "trade_placed"),
                            ("trade_sent", "trade_sent"),
                            ("trade_filled", "trade_filled"),
                            ("trade_rejected", "trade_rejected"),
                            ("trade_cancelled", "trade_cancelled"),
                            ("activity", "activity"),
                        ],
                        max_length=16,
                    ),
                ),
                ("data", models.JSONField()),
                ("created_at", models.DateTimeField()),
                (
                    "customer",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.RunSQL(EVENT_LOG_SQL, DROP_EVENT_LOG_SQL),
        migrations.RunSQL(EVENT_LOG_BACKFILL_SQL, migrations.RunSQL.noop),
    ]
