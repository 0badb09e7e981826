"""Failed token authentications, counted per client with one atomic upsert (the cache
table before it counted with a read and a write, losing parallel failures, and moved the
window's end forward at every failure)."""

from django.db import migrations

CREATE = """
CREATE TABLE brokerage_auth_failure (
    client text PRIMARY KEY,
    window_started_at timestamptz NOT NULL,
    failures integer NOT NULL CHECK (failures > 0)
);
CREATE INDEX brokerage_auth_failure_window ON brokerage_auth_failure (window_started_at);
DROP TABLE IF EXISTS brokerage_auth_failures;
"""


class Migration(migrations.Migration):
    dependencies = [("balances", "0005_cash_columns_wide_enough_for_any_balance")]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP TABLE brokerage_auth_failure;"),
    ]
