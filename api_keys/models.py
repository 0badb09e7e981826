from django.conf import settings
from django.db import models
from django.utils import timezone

# The first characters of a key: not secret, shown to find a key and to tell keys apart.
PREFIX_LENGTH = 12


class ApiKey(models.Model):
    """A customer's API key, as its SHA-256 digest: the key itself is shown once, when it is
    issued, and stored nowhere. One key per customer; issuing a new one replaces it."""

    customer = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="api_key"
    )
    # Not unique: two keys may share a prefix (authentication compares every match's digest).
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"API key {self.prefix}… of customer {self.customer_id}"
