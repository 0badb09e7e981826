"""Settings for every environment; production changes behaviour through environment variables."""

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
# Outside development a missing SECRET_KEY is a start-up error, not a silent default.
SECRET_KEY = env("SECRET_KEY") if not DEBUG else env("SECRET_KEY", default="dev-only-insecure-key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Outside development the admin's cookies travel over HTTPS only (TLS ends at the proxy in
# front; NUM_PROXIES > 0 trusts its X-Forwarded-Proto). HSTS is the proxy's to send, or
# set SECURE_HSTS_SECONDS once every host of the domain is on HTTPS.
# The customers' browsable-API login; the admin's staff sessions use another cookie
# (settings.admin).
SESSION_COOKIE_NAME = "brokerage_session"
LOGIN_REDIRECT_URL = "/api/v1/account/"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "api_keys",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "staff_actions",
    "balances",
    "trades",
    "events",
    "execution",
    "support",
    "alpaca_compat",
    "outbox",
]

MIDDLEWARE = [
    "brokerage.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "brokerage.middleware.RequestBodyLimitMiddleware",
    "brokerage.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into our JSON 429.
    "axes.middleware.AxesMiddleware",
]

# Staff logins (the admin): locked for AXES_COOLOFF_TIME after LOGIN_FAILURE_LIMIT failures
# for one user name, or from one client address, whichever comes first. A locked-out
# attempt is refused before its password is hashed.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("LOGIN_LOCKOUT_SECONDS", default=900))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# A lockout ends LOGIN_LOCKOUT_SECONDS after it began, whatever is tried meanwhile, and
# attempts made while locked out are not recorded (one guesser would grow a row forever).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_CLIENT_IP_CALLABLE = "brokerage.auth.client_address"
AXES_LOCKOUT_CALLABLE = "brokerage.errors.json_login_locked_out"

ROOT_URLCONF = "brokerage.urls"
# Every error is JSON, the CSRF check's too.
CSRF_FAILURE_VIEW = "brokerage.errors.json_csrf_failure"
WSGI_APPLICATION = "brokerage.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_url() -> str:
    url = env("DATABASE_URL", default=None)
    if url:
        return url
    if not DEBUG:
        # Each host would otherwise start an empty database of its own, silently.
        raise ImproperlyConfigured("Set DATABASE_URL (the embedded Postgres is for DEBUG only).")
    from devtools import embedded_postgres

    return embedded_postgres.ensure_running()


def _same_port_rule(url: str) -> str:
    """libpq gives a host listed without a port the default port, django-environ the last
    port listed: a URL naming ports for only some of its hosts means different servers to
    each, so it is refused."""
    hosts = urlsplit(url).netloc.rsplit("@", 1)[-1].split(",")
    with_port = [host for host in hosts if re.search(r":\d+$", host)]
    if len(hosts) > 1 and with_port and len(with_port) != len(hosts):
        raise ImproperlyConfigured(
            "DATABASE_URL names a port for some of its hosts only: give every host its port."
        )
    return url


DATABASES = {"default": env.db_url_config(_same_port_rule(_database_url()))}
# django-environ leaves a percent-encoded Unix socket directory as it is.
DATABASES["default"]["HOST"] = unquote(DATABASES["default"]["HOST"])
if "," in DATABASES["default"]["HOST"]:
    # Several hosts (a Patroni cluster): never settle for a standby.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("target_session_attrs", "read-write")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# No health check (a `SELECT 1` before every request's first query): a connection that a
# database restart broke fails its request with a 503 (brokerage.errors) and is replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
DATABASES["default"].setdefault("OPTIONS", {})
# With a multi-host DATABASE_URL (a Patroni cluster, ?target_session_attrs=read-write)
# libpq tries each host in turn: connect_timeout bounds each try, and keepalives plus a
# bound on unacknowledged data notice a primary whose machine died within seconds.
for _option, _value in {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}.items():
    DATABASES["default"]["OPTIONS"].setdefault(_option, _value)
# Server-side parameters, and statements prepared on their second use in a session: the
# hot paths run the same few statements, and planning them every time cost more of the
# database's CPU than executing them.
# "off": never prepare (a pooler in transaction mode older than PgBouncer 1.21).
PREPARE_THRESHOLD = env("DB_PREPARE_THRESHOLD", default="1")
DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
DATABASES["default"]["OPTIONS"]["prepare_threshold"] = (
    None if PREPARE_THRESHOLD == "off" else int(PREPARE_THRESHOLD)
)
# How this process's sessions show in pg_stat_activity (a URL's ?application_name= wins).
DATABASES["default"]["OPTIONS"].setdefault(
    "application_name", env("DB_APPLICATION_NAME", default="brokerage")
)
# A process frozen in the middle of a transaction (SIGSTOP, a VM pause) would hold its
# customer's row locks for as long as it stays frozen; the server ends such sessions.
# Our transactions never wait on the client for anything near this long.
IDLE_IN_TRANSACTION_TIMEOUT = env("IDLE_IN_TRANSACTION_TIMEOUT", default="5s")
DATABASES["default"]["OPTIONS"]["options"] = (
    f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT}"
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["settings.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
AUTH_FAILURE_LIMIT = env.int("AUTH_FAILURE_LIMIT", default=20)
AUTH_FAILURE_WINDOW = env.int("AUTH_FAILURE_WINDOW", default=300)

# Staff movements of cash above this many dollars, or of shares above this many, wait for
# a second staff member's approval, for at most STAFF_APPROVAL_EXPIRES_HOURS.
STAFF_APPROVAL_CASH_ABOVE = Decimal(env.str("STAFF_APPROVAL_CASH_ABOVE", default="10000.00"))
STAFF_APPROVAL_SHARES_ABOVE = env.int("STAFF_APPROVAL_SHARES_ABOVE", default=1000)
STAFF_APPROVAL_EXPIRES_HOURS = env.int("STAFF_APPROVAL_EXPIRES_HOURS", default=72)

# A trade request is a few hundred bytes; anything near this is abuse.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=16 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # API keys first (a 401 names the Token scheme); then the browsable API's login
        # session (/api-auth/login/, CSRF-checked), in a cookie of its own: a staff
        # member's admin session (same origin behind the proxy) means nothing here.
        "brokerage.auth.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["brokerage.api.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "brokerage.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Trusted proxies in front of the web; 0: the peer address identifies the client.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
if REST_FRAMEWORK["NUM_PROXIES"]:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SPECTACULAR_SETTINGS = {
    "TITLE": "Brokerage API",
    "DESCRIPTION": (
        "Market orders on US stocks: place, list, cancel; account balances and activities; "
        "tickers; the account's event log (GET /api/v1/events/, and live as Server-Sent "
        "Events from GET /api/v1/events/stream/ with `Authorization: Token` and "
        "Last-Event-ID). Every route also answers without its trailing slash."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Each API route also answers without its trailing slash (brokerage.urls); the docs
    # name each operation once, by its slashed path. The customers' docs have the
    # customers' API only; the exchange's callback has a schema of its own
    # (/exchange/schema/, brokerage.urls).
    "PREPROCESSING_HOOKS": [
        "brokerage.api.schema_endpoints_once",
        "brokerage.api.customer_endpoints_only",
    ],
}

# One handler, on the root logger: every line once (Django's own console handler for its
# loggers is taken away, or under DEBUG each of its lines appeared twice). LOG_FORMAT=json
# for log shippers. ACCESS_LOG=false drops the per-request line.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "brokerage.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(request_suffix)s"},
        "json": {"()": "brokerage.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "brokerage.access": {
            "level": "INFO" if env.bool("ACCESS_LOG", default=True) else "WARNING"
        },
    },
}

# --- Trading -----------------------------------------------------------------------------
# Customers are split over this many shards; fixed for the life of a deployment.
SHARD_COUNT = env.int("SHARD_COUNT", default=100)
# Per-customer limit on placing trades: a token bucket of PLACE_TRADE_BURST orders,
# refilled at PLACE_TRADE_RATE per second. Beyond it: 429 with Retry-After.
PLACE_TRADE_RATE = env.float("PLACE_TRADE_RATE", default=10.0)
PLACE_TRADE_BURST = env.float("PLACE_TRADE_BURST", default=20.0)
if not (PLACE_TRADE_RATE > 0 and PLACE_TRADE_BURST >= 1):
    raise ImproperlyConfigured("PLACE_TRADE_RATE must be above 0 and PLACE_TRADE_BURST at least 1.")
# Largest quantity one order may ask for (whole shares).
MAX_ORDER_QUANTITY = env.int("MAX_ORDER_QUANTITY", default=1_000_000)
# Buy orders hold quantity × quote × (1 + collar); the exchange may not fill above that price.
PRICE_COLLAR = Decimal(env.str("PRICE_COLLAR", default="0.05"))

# --- Exchange ----------------------------------------------------------------------------
EXCHANGE_URL = env("EXCHANGE_URL", default="http://127.0.0.1:9000")
EXCHANGE_CONNECT_TIMEOUT = env.float("EXCHANGE_CONNECT_TIMEOUT", default=1.0)
EXCHANGE_READ_TIMEOUT = env.float("EXCHANGE_READ_TIMEOUT", default=3.0)
# The exchange's daily trading window, "HH:MM-HH:MM" UTC (it may span midnight), as the
# exchange is configured; empty for always open. Only /v2/clock reads it: the exchange
# itself refuses orders outside its hours.
EXCHANGE_MARKET_HOURS = env.str("EXCHANGE_MARKET_HOURS", default="")
# Where the exchange calls us back: the callback receiver (settings.callbacks), or any web
# process, which serves the callback too.
CALLBACK_URL = env("CALLBACK_URL", default="http://127.0.0.1:8000/exchange/callback/")
# Standard Webhooks secrets ("whsec_..."), space-separated: the first signs, any verifies,
# so a secret can be rotated without downtime.
EXCHANGE_WEBHOOK_SECRETS = env.str("EXCHANGE_WEBHOOK_SECRET", default="").split()

# --- Metrics -----------------------------------------------------------------------------
# run_shard_worker and run_reaper serve Prometheus's /metrics on --metrics-port (this by
# default; 0: none) at METRICS_ADDRESS; the gunicorns serve /metrics on their own port.
METRICS_PORT = env.int("METRICS_PORT", default=0)
METRICS_ADDRESS = env("METRICS_ADDRESS", default="127.0.0.1")

# --- Workers -----------------------------------------------------------------------------
WORKER_POLL_INTERVAL = env.float("WORKER_POLL_INTERVAL", default=1.0)
WORKER_LOCK_RETRY_INTERVAL = env.float("WORKER_LOCK_RETRY_INTERVAL", default=0.25)
# A leader whose heartbeat is older than this is deposed by a standby (its lock session is
# ended); fencing makes that safe even if it was only slow.
WORKER_LEASE_TIMEOUT = env.float("WORKER_LEASE_TIMEOUT", default=3.0)
# A quote this young is reused for the buying-power check (0 = ask for every trade).
QUOTE_MAX_AGE = env.float("QUOTE_MAX_AGE", default=1.0)
NOTIFY_COALESCE_SECONDS = env.float("NOTIFY_COALESCE_SECONDS", default=0.005)
# The event stream server (events.stream): a comment line after this long without an
# event; a customer may hold this many streams open at once (per stream server); each
# stream is compared with its customer's last event this often (in case a wake-up was
# lost); its sessions for reading events (besides its one LISTEN session).
STREAM_HEARTBEAT_SECONDS = env.float("STREAM_HEARTBEAT_SECONDS", default=15.0)
STREAM_MAX_PER_CUSTOMER = env.int("STREAM_MAX_PER_CUSTOMER", default=5)
STREAM_SWEEP_SECONDS = env.float("STREAM_SWEEP_SECONDS", default=5.0)
STREAM_DB_POOL_SIZE = env.int("STREAM_DB_POOL_SIZE", default=4)
REAPER_INTERVAL = env.float("REAPER_INTERVAL", default=5.0)
# A standby reaper deposes an active one that has not checked its lock for this long. The
# check runs every second on a thread of its own, passes or not: only a frozen process
# misses ten in a row.
REAPER_LEASE_TIMEOUT = env.float("REAPER_LEASE_TIMEOUT", default=10.0)
# An in-flight trade with no callback after this long is looked up at the exchange.
REAPER_IN_FLIGHT_DEADLINE = env.float("REAPER_IN_FLIGHT_DEADLINE", default=10.0)
# An outbox row nobody took after this long is re-notified.
REAPER_OUTBOX_STALE_SECONDS = env.float("REAPER_OUTBOX_STALE_SECONDS", default=5.0)
# A placed trade at the head of its customer's queue with no outbox row after this long
# gets one.
REAPER_PLACED_STALE_SECONDS = env.float("REAPER_PLACED_STALE_SECONDS", default=5.0)
