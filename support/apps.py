from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _roles_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    from support.roles import roles_set_up

    roles_set_up(using=kwargs.get("using", "default"))


class SupportConfig(AppConfig):
    """The support desk: staff roles and the actions support staff take on accounts."""

    name = "support"
    verbose_name = "Support desk"

    def ready(self) -> None:
        # After every migrate, once Django has created the permissions: the roles are
        # always there, and always exactly as support.roles says.
        post_migrate.connect(_roles_after_migrate, sender=self)
