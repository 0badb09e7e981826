from django.db import migrations

# Must agree with outbox.sharding.shard_for_customer (a test checks that it does).
SHARD_FUNCTION_SQL = """
CREATE FUNCTION outbox_shard_of(customer_id bigint, shard_count integer) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((customer_id::numeric * 2654435761) % 4294967296 % shard_count)::integer;
"""


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [
        migrations.RunSQL(SHARD_FUNCTION_SQL, "DROP FUNCTION outbox_shard_of(bigint, integer);")
    ]
