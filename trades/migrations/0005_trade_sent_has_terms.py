import time

from django.db import OperationalError, migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.utils import CursorWrapper
from django.db.migrations.state import StateApps

NAME = "trade_sent_has_terms"
CHECK = (
    "NOT (status IN ('in_progress', 'filled')) OR (limit_price IS NOT NULL AND "
    "submitted_at IS NOT NULL AND (side = 'sell' OR cash_held IS NOT NULL))"
)
# The ADD needs an ACCESS EXCLUSIVE lock, and while it waits for one (behind an audit's
# long read, say) every placement and settlement queues behind it: it waits at most this
# long per try, and tries again a moment later.
LOCK_TIMEOUT = "1s"
TRIES = 60


def add_constraint(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Added NOT VALID (an instant under the lock), then validated in a statement of its
    own, which scans the trades under a lock that lets placements and settlements go on.
    Safe to run again after a failure: a constraint already added is only validated."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_constraint WHERE conrelid = 'trades_trade'::regclass AND conname = %s",
            [NAME],
        )
        if cursor.fetchone() is None:
            _with_short_lock_waits(
                cursor, f"ALTER TABLE trades_trade ADD CONSTRAINT {NAME} CHECK ({CHECK}) NOT VALID"
            )
        cursor.execute(f"ALTER TABLE trades_trade VALIDATE CONSTRAINT {NAME}")


def _with_short_lock_waits(cursor: CursorWrapper, statement: str) -> None:
    for attempt in range(TRIES):
        cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            cursor.execute(statement)
            return
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "55P03" or attempt == TRIES - 1:
                raise
            time.sleep(0.5)
        finally:
            cursor.execute("RESET lock_timeout")


def drop_constraint(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE trades_trade DROP CONSTRAINT IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("trades", "0004_cash_columns_wide_enough_for_any_balance"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add_constraint, drop_constraint)],
            state_operations=[
                migrations.AddConstraint(
                    model_name="trade",
                    constraint=models.CheckConstraint(
                        condition=~models.Q(status__in=["in_progress", "filled"])
                        | models.Q(submitted_at__isnull=False, limit_price__isnull=False)
                        & (models.Q(side="sell") | models.Q(cash_held__isnull=False)),
                        name=NAME,
                    ),
                ),
            ],
        ),
    ]
