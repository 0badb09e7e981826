"""The tokens DRF's authtoken kept in plain text become hashed keys, and its table goes:
the same keys keep working, and a copy of the database no longer holds them."""

from django.db import migrations

HASH_AND_DROP_SQL = """
DO $$
BEGIN
    IF to_regclass('authtoken_token') IS NOT NULL THEN
        INSERT INTO api_keys_apikey (customer_id, prefix, digest, created_at)
        SELECT user_id, left(key, 12), encode(sha256(convert_to(key, 'UTF8')), 'hex'), created
        FROM authtoken_token
        ON CONFLICT (customer_id) DO NOTHING;
        DROP TABLE authtoken_token;
    END IF;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("api_keys", "0001_initial")]

    # Not reversible: the keys themselves are gone, which is the point.
    operations = [migrations.RunSQL(HASH_AND_DROP_SQL, migrations.RunSQL.noop)]
