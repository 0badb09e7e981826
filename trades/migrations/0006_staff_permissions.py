from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("trades", "0005_trade_sent_has_terms")]

    operations = [
        migrations.AlterModelOptions(
            name="trade",
            options={
                "permissions": [
                    ("cancel_for_customer", "Can cancel a placed trade for its customer"),
                    (
                        "resolve_stuck",
                        "Can resolve a trade stuck in flight from the exchange's record",
                    ),
                ]
            },
        ),
    ]
