"""Where the checkout is: the tooling runs manage.py, the Procfile and the data
directories from it whatever the current directory."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
