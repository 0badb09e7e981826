"""The exchange's callback secret the tooling makes up for a run."""

import base64
import os


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret (`whsec_` and 24 random bytes in base64), shared by
    the exchange simulator, which signs callbacks with it, and us, who verify them."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()
