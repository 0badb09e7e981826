from django.db import migrations

APPEND_ONLY_SQL = """
CREATE FUNCTION balances_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER balances_ledger_append_only BEFORE UPDATE OR DELETE ON balances_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION balances_ledger_append_only();
"""

DROP_SQL = """
DROP TRIGGER balances_ledger_append_only ON balances_ledgerentry;
DROP FUNCTION balances_ledger_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("balances", "0001_initial")]

    operations = [migrations.RunSQL(APPEND_ONLY_SQL, DROP_SQL)]
