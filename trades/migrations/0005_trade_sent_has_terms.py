from django.db import migrations, models

CHECK = (
    "NOT (status IN ('in_progress', 'filled')) OR (limit_price IS NOT NULL AND "
    "submitted_at IS NOT NULL AND (side = 'sell' OR cash_held IS NOT NULL))"
)


class Migration(migrations.Migration):
    # Added NOT VALID, then validated in a transaction of its own: the ADD holds an ACCESS
    # EXCLUSIVE lock only for an instant, and VALIDATE scans the trades under a lock that
    # lets placements and settlements go on.
    atomic = False

    dependencies = [
        ("trades", "0004_cash_columns_wide_enough_for_any_balance"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"ALTER TABLE trades_trade ADD CONSTRAINT trade_sent_has_terms "
                    f"CHECK ({CHECK}) NOT VALID",
                    reverse_sql="ALTER TABLE trades_trade DROP CONSTRAINT trade_sent_has_terms",
                ),
                migrations.RunSQL(
                    "ALTER TABLE trades_trade VALIDATE CONSTRAINT trade_sent_has_terms",
                    reverse_sql=migrations.RunSQL.noop,
                ),
            ],
            state_operations=[
                migrations.AddConstraint(
                    model_name="trade",
                    constraint=models.CheckConstraint(
                        condition=~models.Q(status__in=["in_progress", "filled"])
                        | models.Q(submitted_at__isnull=False, limit_price__isnull=False)
                        & (models.Q(side="sell") | models.Q(cash_held__isnull=False)),
                        name="trade_sent_has_terms",
                    ),
                ),
            ],
        ),
    ]
