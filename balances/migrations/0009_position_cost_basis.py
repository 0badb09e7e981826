from decimal import Decimal

from django.db import migrations, models

# Each position's cost basis from its history, by the rule the settlements follow from
# now on (balances.models.Position): replayed entry by entry, in the ledger's order.
BACKFILL_COST_BASIS_SQL = """
DO $$
DECLARE
    r record;
    customer integer;
    symbol text;
    basis numeric := 0;
    held_shares bigint := 0;
BEGIN
    CREATE TEMP TABLE position_cost (customer_id integer, ticker text, cost_basis numeric)
        ON COMMIT DROP;
    FOR r IN
        SELECT s.customer_id, s.ticker, s.share_quantity, -c.cash_amount AS cost
        FROM balances_ledgerentry s
        LEFT JOIN balances_ledgerentry c
               ON s.kind = 'buy_shares' AND c.trade_id = s.trade_id AND c.kind = 'buy_cash'
        WHERE s.ticker IS NOT NULL
        ORDER BY s.customer_id, s.ticker, s.id
    LOOP
        IF r.customer_id IS DISTINCT FROM customer OR r.ticker IS DISTINCT FROM symbol THEN
            IF customer IS NOT NULL AND basis <> 0 THEN
                INSERT INTO position_cost VALUES (customer, symbol, basis);
            END IF;
            customer := r.customer_id;
            symbol := r.ticker;
            basis := 0;
            held_shares := 0;
        END IF;
        IF r.share_quantity > 0 THEN
            basis := basis + COALESCE(r.cost, 0);
        ELSIF held_shares > 0 THEN
            basis := basis - round(basis * (-r.share_quantity) / held_shares, 2);
        END IF;
        held_shares := held_shares + r.share_quantity;
    END LOOP;
    IF customer IS NOT NULL AND basis <> 0 THEN
        INSERT INTO position_cost VALUES (customer, symbol, basis);
    END IF;
    UPDATE balances_position p SET cost_basis = c.cost_basis
    FROM position_cost c WHERE p.customer_id = c.customer_id AND p.ticker = c.ticker;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("balances", "0008_account_status"),
    ]

    operations = [
        migrations.AddField(
            model_name="position",
            name="cost_basis",
            field=models.DecimalField(
                db_default=Decimal("0.00"), decimal_places=2, default=Decimal("0.00"), max_digits=28
            ),
        ),
        migrations.RunSQL(BACKFILL_COST_BASIS_SQL, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="position",
            constraint=models.CheckConstraint(
                condition=models.Q(("cost_basis__gte", 0)), name="position_cost_basis_not_negative"
            ),
        ),
    ]
