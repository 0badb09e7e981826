from django.apps import AppConfig


class AlpacaCompatConfig(AppConfig):
    name = "alpaca_compat"
    verbose_name = "Alpaca-compatible API"
