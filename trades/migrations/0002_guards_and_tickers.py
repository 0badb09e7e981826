from django.db import migrations

from trades.reference import load_reference_tickers

GUARD_SQL = """
CREATE FUNCTION trades_trade_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'trade % is a record and cannot be deleted', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status IN ('filled', 'rejected', 'cancelled') THEN
        RAISE EXCEPTION 'trade % is % and can no longer change', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
        (OLD.status = 'placed' AND NEW.status IN ('in_progress', 'rejected', 'cancelled'))
        OR (OLD.status = 'in_progress' AND NEW.status IN ('filled', 'rejected'))
    ) THEN
        RAISE EXCEPTION 'trade % cannot move from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.customer_id, NEW.seq, NEW.ticker, NEW.side, NEW.quantity)
        IS DISTINCT FROM (OLD.customer_id, OLD.seq, OLD.ticker, OLD.side, OLD.quantity) THEN
        RAISE EXCEPTION 'the terms of trade % cannot change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER trades_trade_guard BEFORE UPDATE OR DELETE ON trades_trade
    FOR EACH ROW EXECUTE FUNCTION trades_trade_guard();
"""

UNGUARD_SQL = """
DROP TRIGGER trades_trade_guard ON trades_trade;
DROP FUNCTION trades_trade_guard();
"""


def load_tickers(apps, schema_editor):
    load_reference_tickers(apps.get_model("trades", "Ticker"))


class Migration(migrations.Migration):
    dependencies = [("trades", "0001_initial")]

    operations = [
        migrations.RunSQL(GUARD_SQL, UNGUARD_SQL),
        migrations.RunPython(load_tickers, migrations.RunPython.noop),
    ]
