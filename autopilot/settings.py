"""Settings, all from the environment. See README.md "Configuration" for every variable.

Embedded default: SQLite (WAL, IMMEDIATE transactions) in the data directory, django-q2 on the ORM
broker, and a SQLite-backed channel layer that carries messages between processes.
Scale-out: DATABASE_URL (PostgreSQL) and REDIS_URL (channel layer; broker with AUTOPILOT_BROKER=redis).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("AUTOPILOT_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        # Generated once per data directory; O_EXCL makes two first starts agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "channels",
    "django_q",
    "axes",
    "autopilot",
    "blueprints",
    "runs",
    "autopilot.manager.apps.ManagerConfig",
    "autopilot.mcp.apps.McpConfig",
]

MIDDLEWARE = [
    # First: every later layer (security redirects, axes, DRF throttles) sees the real client address.
    "autopilot.middleware.trusted_proxy_middleware",
    "django.middleware.security.SecurityMiddleware",
    "autopilot.security.CSPMiddleware",  # Content-Security-Policy with nonces (see the headers block)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a login refused by axes into the lockout page (autopilot.logins.lockout_response).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "autopilot.urls"
WSGI_APPLICATION = "autopilot.wsgi.application"
ASGI_APPLICATION = "autopilot.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Databases -----------------------------------------------------------------------------------

SQLITE_OPTIONS = {
    # IMMEDIATE: a write transaction takes the write lock at BEGIN, so "lock the row, then re-check"
    # holds on SQLite too (select_for_update is a no-op there).
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000; "
        "PRAGMA foreign_keys=ON;"
    ),
}

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # AUTOPILOT_SQLITE_PATH lets a child process (a test's worker or server) open a given file.
            "NAME": os.environ.get("AUTOPILOT_SQLITE_PATH") or DATA_DIR / "autopilot.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
            # A file, not :memory:, so worker subprocesses started by tests see the same data.
            "TEST": {"NAME": str(DATA_DIR / "test-autopilot.sqlite3")},
        }
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels ------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
# Messages a websocket's channel may hold before the layer drops new ones (the layers' default, 100, drops
# events in a burst: a client then has to catch up from the event log).
CHANNEL_CAPACITY = int(os.environ.get("AUTOPILOT_CHANNEL_CAPACITY", "10000"))

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("AUTOPILOT_CHANNEL_PREFIX", "autopilot"),
                "capacity": CHANNEL_CAPACITY,
            },
        }
    }
else:
    # The in-memory layer cannot carry a message from a worker process to the web process; this one
    # stores messages in a SQLite file of its own (kept apart from the main database so websocket
    # traffic never waits on the main write lock) that every process on the machine polls.
    DATABASES["channels"] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("AUTOPILOT_CHANNELS_SQLITE_PATH") or DATA_DIR / "channels.sqlite3",
        "OPTIONS": dict(SQLITE_OPTIONS),
        "TEST": {"NAME": str(DATA_DIR / "test-channels.sqlite3")},
    }
    INSTALLED_APPS.append("channels_lite")
    DATABASE_ROUTERS = ["autopilot.db_routers.ChannelLayerRouter"]
    CHANNEL_LAYERS = {
        "default": {
            # channels-lite's layer with its per-process poller isolated (see autopilot/channel_layer.py).
            "BACKEND": "autopilot.channel_layer.SQLiteChannelLayer",
            "CONFIG": {
                "database": "channels",
                "polling_interval": 0.05,
                "expiry": 60,
                "capacity": CHANNEL_CAPACITY,
            },
        }
    }

# --- Cache (django-q2 stats, tick de-duplication) ------------------------------------------------

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "autopilot_cache",
        }
    }

# --- django-q2 -----------------------------------------------------------------------------------

Q_TIMEOUT = env_int("AUTOPILOT_TASK_TIMEOUT", 4 * 3600)
# Two clusters on one broker (see autopilot/queues.py): control work (ticks, ingestion, sweeps and the
# schedule) in the default cluster, agent runs in their own, so a run waiting for approval never
# holds a worker that a tick or an ingestion needs. `autopilot serve` starts both; a bare
# `qcluster` is the control cluster, `Q_CLUSTER_NAME=autopilot-runs qcluster` the runs cluster.
AUTOPILOT_RUNS_QUEUE = "autopilot-runs"
AUTOPILOT_WORKERS = env_int("AUTOPILOT_WORKERS", 2)  # run workers
AUTOPILOT_CONTROL_WORKERS = env_int("AUTOPILOT_CONTROL_WORKERS", 2)
Q_CLUSTER = {
    "name": "autopilot",
    "workers": AUTOPILOT_CONTROL_WORKERS,
    # A cluster prefetches at most this many messages beyond its busy workers: few, so a message
    # stranded in a killed cluster's memory is a short list, and waiting work shows in the broker.
    "queue_limit": AUTOPILOT_CONTROL_WORKERS,
    "recycle": 200,
    "timeout": Q_TIMEOUT,
    # retry must exceed timeout, or a task still running is handed out a second time. A run's message
    # fetched by a cluster that then died is not waited for: the reaper re-enqueues the run (the DB row
    # is the truth; the worker's claim is a compare-and-set).
    "retry": Q_TIMEOUT + 300,
    "max_attempts": 3,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 500,
    "label": "Task queue",
    "poll": 0.1,
    "guard_cycle": 0.5,
    "ALT_CLUSTERS": {
        AUTOPILOT_RUNS_QUEUE: {
            "workers": AUTOPILOT_WORKERS,
            "queue_limit": AUTOPILOT_WORKERS,
            "scheduler": False,
        },
    },
}
if REDIS_URL and os.environ.get("AUTOPILOT_BROKER", "orm") == "redis":
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
# How often the reconciler (started by `autopilot serve` beside the clusters) reaps expired leases and
# re-enqueues stranded queued runs; /healthz reports starvation after AUTOPILOT_STARVATION_SECONDS.
AUTOPILOT_RECONCILE_SECONDS = float(os.environ.get("AUTOPILOT_RECONCILE_SECONDS") or 0) or None
AUTOPILOT_STARVATION_SECONDS = env_int("AUTOPILOT_STARVATION_SECONDS", 120)

# --- Auth, REST ----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    # Every API view needs a logged-in user unless it says otherwise (only the token endpoint does;
    # the schema and its docs are public, see SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON nested deeper than autopilot.api.parsers.MAX_DEPTH is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": [
        "autopilot.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "autopilot.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # Documents the error answers (400/401/403/404/409/413/429) every operation can give.
    "DEFAULT_SCHEMA_CLASS": "autopilot.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "autopilot.api.exceptions.exception_handler",
    # Login limits and proxies (below): throttles key on REMOTE_ADDR, which the trusted-proxy
    # middleware has already corrected; X-Forwarded-For itself is never read by DRF.
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Autopilot API",
    "DESCRIPTION": "Projects, blueprints, tasks, execution runs and the manager.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs page are public (they describe the API, they hold no data).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One stable name per choice set (several models have a "status" or "role" field).
    "ENUM_NAME_OVERRIDES": {
        "MemberRoleEnum": "autopilot.models.Role",
        "AutonomyModeEnum": "autopilot.models.AutonomyMode",
        "ProposalStatusEnum": "autopilot.manager.models.Proposal.Status",
        "BlueprintStatusEnum": "blueprints.models.Blueprint.Status",
        "IngestionJobStatusEnum": "blueprints.models.IngestionJob.Status",
        "PlanNodeStatusEnum": "blueprints.models.PlanNode.Status",
        "TaskStatusEnum": "blueprints.models.Task.Status",
        "RunStatusEnum": "runs.models.ExecutionRun.Status",
        "StepStatusEnum": "runs.models.ExecutionStep.Status",
        "RunRoleEnum": "runs.models.RunRole",
        "AgentBackendEnum": "runs.models.AgentBackend",
        "IntegrationStatusEnum": "runs.models.Integration.Status",
        "ReviewDecisionEnum": "runs.models.TaskReview.Decision",
        "MergeStrategyEnum": "autopilot.models.MergeStrategy",
        "ConflictPolicyEnum": "autopilot.models.ConflictPolicy",
        "PlanNodeKindEnum": "blueprints.models.PlanNode.Kind",
        "TaskKindEnum": "blueprints.models.Task.Kind",
        "StepKindEnum": "runs.models.ExecutionStep.Kind",
        "SectionSummaryKindEnum": "blueprints.models.BlueprintSectionSummary.Kind",
        "RunKindEnum": "runs.models.RunKind",
    },
}

# --- Login limits, trusted proxies (django-axes; autopilot/logins.py, autopilot/middleware.py) ---

# Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: IPs or CIDRs, comma-separated.
# Empty (the default): no proxy is trusted, the client address is the TCP peer and those headers
# (and X-Real-IP, X-Forwarded-Host) are dropped from every request.
AUTOPILOT_TRUSTED_PROXIES = env_list("AUTOPILOT_TRUSTED_PROXIES", [])
for _proxy in AUTOPILOT_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"AUTOPILOT_TRUSTED_PROXIES: {_proxy!r} is not an IP address or network (e.g. 10.0.0.0/8)"
        ) from None
if AUTOPILOT_TRUSTED_PROXIES:
    # Safe only because the middleware removes the header from requests not sent by a trusted proxy.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# N failed logins for one username from one address lock that pair out for the cool-off (web
# login, admin login, API token). 0 disables the limit. `autopilot user unlock NAME` lifts it.
AUTOPILOT_LOGIN_FAILURE_LIMIT = env_int("AUTOPILOT_LOGIN_FAILURE_LIMIT", 5)
AUTOPILOT_LOGIN_COOLOFF_MINUTES = env_int("AUTOPILOT_LOGIN_COOLOFF_MINUTES", 15)
# The most items one API list page returns (?limit= above it is lowered to it).
AUTOPILOT_API_MAX_PAGE_SIZE = env_int("AUTOPILOT_API_MAX_PAGE_SIZE", 500)
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username/address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = AUTOPILOT_LOGIN_FAILURE_LIMIT > 0
AXES_FAILURE_LIMIT = max(AUTOPILOT_LOGIN_FAILURE_LIMIT, 1)
AXES_COOLOFF_TIME = timedelta(minutes=AUTOPILOT_LOGIN_COOLOFF_MINUTES)
# By username and address together: by username alone anyone could lock any account (the admin's
# included); by address alone one bad typist behind a shared NAT would lock out the whole office.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "autopilot.logins.client_ip"
AXES_LOCKOUT_CALLABLE = "autopilot.logins.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# Attempts during a lockout are refused without being counted: the lock ends one cool-off after the
# failure that set it, as the lockout page says, however often the form is resubmitted meanwhile.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_VERBOSE = False
# Successful logins are in the event log's business, not axes' (no AccessLog row per login).
AXES_DISABLE_ACCESS_LOG = True

# --- I18N, static --------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing root before collectstatic (tests)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("AUTOPILOT_LOG_LEVEL", "INFO")},
    # axes: a warning per failed login and lockout; its per-request INFO lines are noise.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- Autopilot -----------------------------------------------------------------------------------

AUTOPILOT_WORKTREE_ROOT = Path(os.environ.get("AUTOPILOT_WORKTREE_ROOT", DATA_DIR / "worktrees"))
AUTOPILOT_ARTIFACT_ROOT = Path(os.environ.get("AUTOPILOT_ARTIFACT_ROOT", DATA_DIR / "artifacts"))
# --- Trust model: where repositories may be registered (autopilot.services.check_repository) ---
# Directories (separated like PATH, by os.pathsep) under which users with the right to register
# repositories may register one. Empty (the default): only superusers may register, anywhere outside
# the data directory and the worktrees.
AUTOPILOT_REPO_ROOTS = [
    Path(item).expanduser().resolve()
    for item in os.environ.get("AUTOPILOT_REPO_ROOTS", "").split(os.pathsep)
    if item.strip()
]
# --- end of trust model settings ---
AUTOPILOT_MAX_CONCURRENT_RUNS = env_int("AUTOPILOT_MAX_CONCURRENT_RUNS", 4)
AUTOPILOT_QUEUE_MAX = env_int("AUTOPILOT_QUEUE_MAX", 200)
AUTOPILOT_MAX_BLUEPRINT_BYTES = env_int("AUTOPILOT_MAX_BLUEPRINT_BYTES", 50 * 1024 * 1024)
# A blueprint can be posted as JSON or pasted in a form: let a request body hold one (plus escaping).
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, AUTOPILOT_MAX_BLUEPRINT_BYTES * 5 // 4 + 1024 * 1024)
AUTOPILOT_LEASE_SECONDS = env_int("AUTOPILOT_LEASE_SECONDS", 60)
AUTOPILOT_TICK_SECONDS = env_int("AUTOPILOT_TICK_SECONDS", 60)
# Manager retry policy: a failed task waits base × 2^(attempts-1) seconds (capped) before its next attempt.
AUTOPILOT_RETRY_BACKOFF_SECONDS = env_int("AUTOPILOT_RETRY_BACKOFF_SECONDS", 30)
AUTOPILOT_RETRY_BACKOFF_MAX_SECONDS = env_int("AUTOPILOT_RETRY_BACKOFF_MAX_SECONDS", 3600)
AUTOPILOT_DEFAULT_AGENT = os.environ.get("AUTOPILOT_DEFAULT_AGENT", "scripted")
AUTOPILOT_DEFAULT_MODEL = os.environ.get("AUTOPILOT_DEFAULT_MODEL", "claude-sonnet-4-6")
# Runs (runs/): limits, guard, sandbox ("auto" uses bubblewrap when installed, "off" never), retention.
AUTOPILOT_DEFAULT_MAX_TURNS = env_int("AUTOPILOT_DEFAULT_MAX_TURNS", 50)
AUTOPILOT_DEFAULT_MAX_WALL_SECONDS = env_int("AUTOPILOT_DEFAULT_MAX_WALL_SECONDS", 3600)
AUTOPILOT_STOP_GRACE_SECONDS = float(os.environ.get("AUTOPILOT_STOP_GRACE_SECONDS", "3"))
AUTOPILOT_STUCK_REPEAT = env_int("AUTOPILOT_STUCK_REPEAT", 5)
AUTOPILOT_STUCK_IDLE_TURNS = env_int("AUTOPILOT_STUCK_IDLE_TURNS", 10)
AUTOPILOT_STEP_OUTPUT_CAP = env_int("AUTOPILOT_STEP_OUTPUT_CAP", 20_000)
AUTOPILOT_COMMAND_TIMEOUT = env_int("AUTOPILOT_COMMAND_TIMEOUT", 120)
AUTOPILOT_SETUP_TIMEOUT = env_int("AUTOPILOT_SETUP_TIMEOUT", 600)
AUTOPILOT_TEST_TIMEOUT = env_int("AUTOPILOT_TEST_TIMEOUT", 1800)
AUTOPILOT_LLM_MAX_RETRIES = env_int("AUTOPILOT_LLM_MAX_RETRIES", 2)
AUTOPILOT_LLM_TIMEOUT = env_int("AUTOPILOT_LLM_TIMEOUT", 600)
AUTOPILOT_SANDBOX = os.environ.get("AUTOPILOT_SANDBOX", "auto")
# Extra directories (":"-separated) shown read-only inside the sandbox, e.g. a toolchain in a home directory.
AUTOPILOT_SANDBOX_READONLY = [
    p for p in os.environ.get("AUTOPILOT_SANDBOX_READONLY", "").split(":") if p.strip()
]
# Interactive sessions (runs/interactive.py): a human in a recorded tmux terminal in a run's worktree.
AUTOPILOT_INTERACTIVE_IDLE_SECONDS = env_int("AUTOPILOT_INTERACTIVE_IDLE_SECONDS", 3600)
AUTOPILOT_INTERACTIVE_MAX_PER_USER = env_int("AUTOPILOT_INTERACTIVE_MAX_PER_USER", 3)
AUTOPILOT_INTERACTIVE_MAX_PER_PROJECT = env_int("AUTOPILOT_INTERACTIVE_MAX_PER_PROJECT", 5)
# Where the tmux sockets live (one per session); empty: <data dir>/tmux.
AUTOPILOT_INTERACTIVE_SOCKET_DIR = os.environ.get("AUTOPILOT_INTERACTIVE_SOCKET_DIR", "")
AUTOPILOT_TMUX = os.environ.get("AUTOPILOT_TMUX", "")
AUTOPILOT_WORKTREE_RETENTION_DAYS = env_int("AUTOPILOT_WORKTREE_RETENTION_DAYS", 7)
AUTOPILOT_WORKTREE_KEEP_LAST = env_int("AUTOPILOT_WORKTREE_KEEP_LAST", 20)

# Agent CLIs: paths (default: the CLI bundled in claude-agent-sdk; `codex` on PATH) and extra
# environment variables for them as a JSON object (e.g. {"CLAUDE_CODE_MAX_RETRIES": "1"}).
AUTOPILOT_CLAUDE_CLI = os.environ.get("AUTOPILOT_CLAUDE_CLI", "")
AUTOPILOT_CLAUDE_CODE_ENV = json.loads(os.environ.get("AUTOPILOT_CLAUDE_CODE_ENV") or "{}")
AUTOPILOT_CODEX_CLI = os.environ.get("AUTOPILOT_CODEX_CLI", "")
AUTOPILOT_CODEX_MODEL = os.environ.get("AUTOPILOT_CODEX_MODEL", "")
AUTOPILOT_CODEX_ENV = json.loads(os.environ.get("AUTOPILOT_CODEX_ENV") or "{}")
# Autopilot's MCP endpoint as agents reach it over HTTP (e.g. http://127.0.0.1:8000/mcp): Codex runs get it.
AUTOPILOT_MCP_URL = os.environ.get("AUTOPILOT_MCP_URL", "")

# LLM endpoints. Nothing here is inherited by agent subprocesses except what a backend passes on.
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "")
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")

# USD per million tokens: input, output, cache read, cache write. Unknown models cost 0 and are
# flagged as unpriced in analyses.
AUTOPILOT_PRICES: dict[str, dict[str, Decimal]] = {
    "claude-opus-4-5": {
        "input": Decimal("5"),
        "output": Decimal("25"),
        "cache_read": Decimal("0.5"),
        "cache_write": Decimal("6.25"),
    },
    "claude-opus-4-6": {
        "input": Decimal("5"),
        "output": Decimal("25"),
        "cache_read": Decimal("0.5"),
        "cache_write": Decimal("6.25"),
    },
    "claude-sonnet-4-6": {
        "input": Decimal("3"),
        "output": Decimal("15"),
        "cache_read": Decimal("0.3"),
        "cache_write": Decimal("3.75"),
    },
    "claude-sonnet-4-5": {
        "input": Decimal("3"),
        "output": Decimal("15"),
        "cache_read": Decimal("0.3"),
        "cache_write": Decimal("3.75"),
    },
    "claude-haiku-4-5": {
        "input": Decimal("1"),
        "output": Decimal("5"),
        "cache_read": Decimal("0.1"),
        "cache_write": Decimal("1.25"),
    },
    "gpt-5": {
        "input": Decimal("1.25"),
        "output": Decimal("10"),
        "cache_read": Decimal("0.125"),
        "cache_write": Decimal("0"),
    },
    "gpt-5-mini": {
        "input": Decimal("0.25"),
        "output": Decimal("2"),
        "cache_read": Decimal("0.025"),
        "cache_write": Decimal("0"),
    },
    "scripted": {
        "input": Decimal("0"),
        "output": Decimal("0"),
        "cache_read": Decimal("0"),
        "cache_write": Decimal("0"),
    },
}
# Prices change: AUTOPILOT_PRICES_JSON adds or overrides entries, e.g.
# {"my-model": {"input": "0.5", "output": "1.5", "cache_read": "0", "cache_write": "0"}}.
for _model, _price in json.loads(os.environ.get("AUTOPILOT_PRICES_JSON") or "{}").items():
    AUTOPILOT_PRICES[_model] = {
        key: Decimal(str(_price.get(key, 0))) for key in ("input", "output", "cache_read", "cache_write")
    }

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"

# --- Security headers, Content-Security-Policy, HTTPS, websocket scope ------------------------------
# (one block: other settings go elsewhere.) Headers on every response: CSP (django-csp, nonces for the
# few inline scripts of third-party pages; none in ours), X-Frame-Options, nosniff, Referrer-Policy,
# Cross-Origin-Opener-Policy. autopilot.security.CSPMiddleware adds ws(s)://<host> to connect-src.
from csp.constants import NONCE, NONE, SELF  # noqa: E402

INSTALLED_APPS.append("csp")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# AUTOPILOT_HTTPS=1 when users reach Autopilot over HTTPS: Secure cookies and HSTS (sent on HTTPS
# requests only; behind a TLS-terminating proxy Django must be told the request was secure).
AUTOPILOT_HTTPS = env_bool("AUTOPILOT_HTTPS")
if AUTOPILOT_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("AUTOPILOT_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("AUTOPILOT_HSTS_INCLUDE_SUBDOMAINS")
# A live websocket re-checks its user's right to the project before forwarding an event when the
# last check is older than this (and at once on a membership change naming that user).
AUTOPILOT_WS_RECHECK_SECONDS = float(os.environ.get("AUTOPILOT_WS_RECHECK_SECONDS") or 5)

# --- Command line: runs and sessions (issue #13) ---------------------------------------------------
# Where `autopilot run`/`resume` write each run's trajectory (<dir>/YYYYMMDD/HHMMSS-<slug>.json/.rlog).
AUTOPILOT_TRAJECTORY_DIR = Path(os.environ.get("AUTOPILOT_TRAJECTORY_DIR") or DATA_DIR / "trajectories")
# `-m sonnet|opus|haiku`: short model names; AUTOPILOT_MODEL_ALIASES (a JSON object) adds or overrides.
AUTOPILOT_MODEL_ALIASES = {
    "sonnet": "claude-sonnet-4-6",
    "opus": "claude-opus-4-6",
    "haiku": "claude-haiku-4-5",
}
try:
    _aliases = json.loads(os.environ.get("AUTOPILOT_MODEL_ALIASES") or "{}")
except ValueError as _exc:
    raise ImproperlyConfigured(f"AUTOPILOT_MODEL_ALIASES is not valid JSON: {_exc}") from _exc
if not isinstance(_aliases, dict) or not all(isinstance(v, str) and v for v in _aliases.values()):
    raise ImproperlyConfigured(
        'AUTOPILOT_MODEL_ALIASES must be a JSON object of model names, e.g. {"sonnet": "claude-sonnet-4-6"}'
    )
AUTOPILOT_MODEL_ALIASES.update({str(k).lower(): v for k, v in _aliases.items()})
# The web address printed by `autopilot run --ui` (where `autopilot serve` is reached).
AUTOPILOT_URL = (os.environ.get("AUTOPILOT_URL") or "http://127.0.0.1:8000").rstrip("/")
# --- end: command line runs and sessions -----------------------------------------------------------
