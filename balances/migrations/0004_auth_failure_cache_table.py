from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", "--database", schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [("balances", "0003_account_rate_bucket")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
