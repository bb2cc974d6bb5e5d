"""Renewly's settings. Every value a site may change is read from the environment; the README
lists each variable with its default. The defaults run the demo with no server at all: SQLite,
a filesystem broker and an outbox of files, all under var/."""

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import NAMES_READ, env_bool, env_int, env_list, env_str
from config.queues import bulk_queue_for, task_routes

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / env_str("RENEWLY_VAR_DIR", "var")  # a relative path is under the project

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "renewly-insecure-development-key"  # only ever used with DEBUG on
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Its catalogs say "today" and "tomorrow" in ~100 languages (notifications.rendering).
    "django.contrib.humanize",
    "django_celery_beat",
    "django_celery_results",
    "anymail",
    "axes",
    "csp",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "policies",
    "notifications",
    "workspace",
    "ops",
    "api",
    "events",
]

MIDDLEWARE = [
    # Headers on every response, the probes' included: HSTS, nosniff, Referrer-Policy, frame
    # options and the Content-Security-Policy. None of these looks at the Host header.
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # /healthz, /readyz, /metrics: answered by address, ahead of ALLOWED_HOSTS' check (below).
    "ops.middleware.ProbeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, as axes asks: it turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
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

# --- HTTPS (README: "Deploying behind HTTPS") ------------------------------------------------
# Opt-in, and only behind a proxy that sets this header itself: otherwise any client could claim
# that its plain-HTTP request came over HTTPS. The value is the header's name, e.g.
# X-Forwarded-Proto; a request bearing it with "https" counts as secure.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
# The probes (ops/urls.py) answer over plain HTTP: load balancers and Docker call by address.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)/?$"]
# HSTS is a promise browsers keep for this long: turn it on once HTTPS works, and start short.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
# Session and CSRF cookies only over HTTPS; the demo (DEBUG on) serves plain HTTP.
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Every page: its own scripts, styles and images only; inline script only with the request's
# nonce ({{ request.csp_nonce }}); forms post only here; no page in anyone's frame.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        # Django's admin needs no inline style; the one page that does says so itself
        # (notifications/admin.py: the email preview, with csp_update).
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # base.html's empty data: favicon spares a /favicon.ico 404
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'renewly.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # The web process and a worker share the file: wait for locks instead of failing, and
        # let readers go on while one writer writes.
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that a worker process started by a test sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# axes checks every login against the failures before it; Django's own backend logs people in.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Agents log in with their Django account and land on their workspace (workspace/urls.py).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "workspace:notices"
LOGOUT_REDIRECT_URL = "login"

# --- Login throttling (django-axes) ---------------------------------------------------------
# After this many failed logins, an account name is locked out whatever the address, and an
# address whatever the account name, on /accounts/login/ and /admin/login/ alike, for this
# many hours after the last failure. An admin can unlock early (admin: Axes, Access attempts).
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_TIME", 1)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_CALLABLE = "config.logins.locked_out"
AXES_CLIENT_IP_CALLABLE = "config.logins.client_ip"

# --- Time and language ----------------------------------------------------------------------
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_TZ = True
LANGUAGE_CODE = "en"
USE_I18N = True
# The languages reminders are written in; a customer's preferred language must be one of them.
LANGUAGES = [("en", "English"), ("es", "Spanish")]

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "config" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
_broker_scheme = urlsplit(CELERY_BROKER_URL).scheme
if _broker_scheme == "filesystem":
    # The embedded broker: messages are files in var/broker, shared by every local process.
    # filesystem:// is Renewly's own transport (config/broker.py, named in config/celery.py):
    # kombu's can read a message half written and stop the worker; ours sets it aside.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "messages"),
        "data_folder_out": str(BROKER_DIR / "messages"),
        "control_folder": str(BROKER_DIR / "control"),
        "quarantine_folder": str(BROKER_DIR / "quarantine"),
    }
    # The transport reads folders that must exist before any process touches them.
    for _folder in CELERY_BROKER_TRANSPORT_OPTIONS.values():
        Path(_folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 0.05  # a folder scan is cheap
elif _broker_scheme in {"redis", "rediss"}:
    # With acks_late, Redis hands an unacknowledged task to another worker after this many
    # seconds; it must outlast the longest task, and no task is scheduled further ahead.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_CACHE_BACKEND = "django-cache"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
# A task is acknowledged after it ran, and handed back if its worker dies mid-task: nothing
# is lost with a worker. The send task's claim in the database keeps a re-run from sending twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1)
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ALWAYS_EAGER = False
# Keep a worker's database connection across this many tasks instead of opening one per task.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Sites sharing one broker between several Renewly installations give each its own queue.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# ...and its own remote-control channel, so that /readyz's ping and Flower see only its workers
# (those of every queue: they all share it).
CELERY_CONTROL_EXCHANGE = CELERY_TASK_DEFAULT_QUEUE
# Long jobs (imports, feeds, reports, housekeeping: config/queues.py) wait on a queue of their own,
# so that they never hold a reminder back; named after the default queue unless set.
CELERY_BULK_QUEUE = env_str("CELERY_BULK_QUEUE", "") or bulk_queue_for(CELERY_TASK_DEFAULT_QUEUE)
CELERY_TASK_ROUTES = task_routes(bulk_queue=CELERY_BULK_QUEUE)

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Django's cache: the API's rate limits count here. Each process counts alone in memory (the
# demo's default); production names Redis so that every web process counts together.
CACHE_URL = env_str("CACHE_URL", "locmem://")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    }
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(
        f'CACHE_URL must be "locmem://" or a redis:// URL, not {CACHE_URL!r}.'
    )

# --- Email and SMS --------------------------------------------------------------------------
OUTBOX_DIR = Path(env_str("OUTBOX_DIR", str(VAR_DIR / "outbox")))
# Any backend Django or anymail offers, e.g. anymail.backends.postmark.EmailBackend.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "notifications.channels.outbox.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Renewly <reminders@renewly.example>")
# An SMTP server or ESP that stops answering must not hold a send thread (and its batch)
# forever; it bounds each step of a send (connecting, each read).
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_SECONDS", 20)
ANYMAIL = {
    "POSTMARK_SERVER_TOKEN": env_str("POSTMARK_SERVER_TOKEN"),
    "POSTMARK_API_URL": env_str("POSTMARK_API_URL", "https://api.postmarkapp.com/"),
    "WEBHOOK_SECRET": env_str("ANYMAIL_WEBHOOK_SECRET"),
    "REQUESTS_TIMEOUT": EMAIL_TIMEOUT,  # anymail's HTTP ESPs: the same timeout as SMTP's
}
# "outbox" writes each SMS as a JSON file under OUTBOX_DIR/sms; "twilio" sends through Twilio.
SMS_BACKEND = env_str("SMS_BACKEND", "outbox")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
TWILIO_MESSAGING_SERVICE_SID = env_str("TWILIO_MESSAGING_SERVICE_SID")
TWILIO_FROM_NUMBER = env_str("TWILIO_FROM_NUMBER")
# The domain the Messaging Service's Twilio Link Shortening is onboarded with: when set, SMS go
# with shorten_urls and carry the renew link (notifications.channels.sms.shortens_links).
TWILIO_LINK_SHORTENING_DOMAIN = env_str("TWILIO_LINK_SHORTENING_DOMAIN")
if TWILIO_MESSAGING_SERVICE_SID and not re.fullmatch(
    r"MG[0-9a-fA-F]{32}", TWILIO_MESSAGING_SERVICE_SID
):
    raise ImproperlyConfigured(
        f"TWILIO_MESSAGING_SERVICE_SID={TWILIO_MESSAGING_SERVICE_SID!r} is not a Messaging "
        "Service SID: MG and 32 hexadecimal digits, as Twilio's console shows it."
    )
if TWILIO_LINK_SHORTENING_DOMAIN and not TWILIO_MESSAGING_SERVICE_SID:
    raise ImproperlyConfigured(
        "TWILIO_LINK_SHORTENING_DOMAIN needs TWILIO_MESSAGING_SERVICE_SID: Twilio shortens links "
        "only in messages sent through a Messaging Service."
    )
if not re.fullmatch(r"([a-z0-9-]+\.)+[a-z]{2,}|", TWILIO_LINK_SHORTENING_DOMAIN, re.IGNORECASE):
    raise ImproperlyConfigured(
        f"TWILIO_LINK_SHORTENING_DOMAIN={TWILIO_LINK_SHORTENING_DOMAIN!r} is not a bare domain: "
        "write it without https:// or a path, e.g. go.insurer.example."
    )
TWILIO_API_BASE_URL = env_str("TWILIO_API_BASE_URL", "https://api.twilio.com")
TWILIO_TIMEOUT_SECONDS = env_int("TWILIO_TIMEOUT_SECONDS", 10)
# WhatsApp goes through Twilio's Messages API too, from a WhatsApp sender of the account: its
# number, "+14155238886" (the "whatsapp:" prefix is added). `outbox` writes JSON files instead.
# Without a sender, a WhatsApp reminder fails with that reason and its rule's fallback goes: a
# site that sends SMS through Twilio needs no WhatsApp sender until it has WhatsApp rules.
WHATSAPP_BACKEND = env_str("WHATSAPP_BACKEND", SMS_BACKEND)
TWILIO_WHATSAPP_FROM = env_str("TWILIO_WHATSAPP_FROM")
# The address providers reach Renewly at: status callback URLs are built from it, and Twilio's
# signatures are checked against it (a proxy in front may change what Django itself sees).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
# Besides the staff user's own address, where the admin's "Send a test reminder" may send
# (emails and +E.164 numbers, comma-separated): a QA inbox, the team's test phone.
PREVIEW_TEST_RECIPIENTS = env_list("PREVIEW_TEST_RECIPIENTS", [])
# How long the signed unsubscribe / preferences link in a reminder keeps working.
PREFERENCES_LINK_MAX_AGE_DAYS = env_int("PREFERENCES_LINK_MAX_AGE_DAYS", 180)
# The renew link in a reminder: the insurer's renewal portal. {policy_number}, {product_line}
# and {agent_email} are filled in; by default the link writes to the policy's agent.
RENEW_URL_TEMPLATE = env_str(
    "RENEW_URL_TEMPLATE", "mailto:{agent_email}?subject=Renew%20policy%20{policy_number}"
)

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # twilio logs every request and response at INFO: a worker's CPU, for nothing to read.
    "loggers": {
        "twilio.http_client": {"level": "WARNING"},
        # axes writes a line at every start and every login; lockouts are warnings, still shown.
        "axes": {"level": "WARNING"},
    },
}

# --- Reminders ------------------------------------------------------------------------------
# A notification queued or sending for longer than this lost its task (a broker restart, a
# killed worker): the next daily scan enqueues it again. The send's claim keeps that safe.
REMINDER_REQUEUE_AFTER_MINUTES = env_int("REMINDER_REQUEUE_AFTER_MINUTES", 30)
# A sending worker renews its lease every quarter of this; once it lapses (the worker died),
# the release task reconciles what it left sending with the provider. It must outlast the
# longest provider timeout: no send may still be on its way when it lapses.
REMINDER_WORKER_LEASE_SECONDS = env_int("REMINDER_WORKER_LEASE_SECONDS", 60)
# A provider that cannot be asked whether it has a message (SMTP, ESPs with no search): how
# long after a send that got no answer, or whose worker died, it is sent again (at-least-once).
REMINDER_RESEND_UNCONFIRMED_AFTER_MINUTES = env_int("REMINDER_RESEND_UNCONFIRMED_AFTER_MINUTES", 60)
# A send the provider cannot say anything about (its lookup failing) for this long fails, for
# a person to check with the provider before retrying it.
REMINDER_RECONCILE_FOR_HOURS = env_int("REMINDER_RECONCILE_FOR_HOURS", 24)
# Days past its expiry an active policy that was not renewed stays active before the daily scan
# marks it lapsed (0: the day after its expiry).
POLICY_LAPSE_GRACE_DAYS = env_int("POLICY_LAPSE_GRACE_DAYS", 0)
# How many notifications the fan-out marks queued and publishes per round trip.
REMINDER_FANOUT_CHUNK = env_int("REMINDER_FANOUT_CHUNK", 1000)
# Notifications per send_batch task, claimed, loaded and recorded together; and the threads
# each worker process sends them on, waiting for the providers at once. Chosen on the dispatch
# benchmark (README: "Benchmarks"): batches of 100 and 200 did alike; 30 threads kept more sends
# in flight than 20 once a send cost ~2.5 ms of CPU (at 50, a process spent more CPU on its GIL).
REMINDER_SEND_BATCH_SIZE = env_int("REMINDER_SEND_BATCH_SIZE", 100)
REMINDER_SEND_THREADS = env_int("REMINDER_SEND_THREADS", 30)
# One customer's reminders on one of these channels, sent together, go as one message (a
# digest, from the channel's digest template). SMS is off by default: a list of policies is
# long for a text; with it on, an SMS digest longer than SMS_DIGEST_MAX_SEGMENTS segments is
# sent as separate SMS instead.
DIGEST_CHANNELS = env_list("DIGEST_CHANNELS", ["email"])
# WhatsApp sends approved content, one policy's values: no list of policies to fill it with.
if unknown := set(DIGEST_CHANNELS) - {"email", "sms"}:
    raise ImproperlyConfigured(
        f"DIGEST_CHANNELS may name email and sms, not {', '.join(sorted(unknown))}."
    )
SMS_DIGEST_MAX_SEGMENTS = env_int("SMS_DIGEST_MAX_SEGMENTS", 2)
# At most this many reminders in one digest: a customer with a fleet's policies due together
# gets several digests of this many, not one message past any length a reader takes.
DIGEST_MAX_POLICIES = env_int("DIGEST_MAX_POLICIES", 20)
# A transient provider error is retried for this many hours after the first one, per channel
# (0: not retried), or until the reminder stops being useful (notifications.retries). Meanwhile
# the reminder waits in the database (deferred), first REMINDER_RETRY_BACKOFF_SECONDS, doubling
# with each try up to REMINDER_RETRY_BACKOFF_MAX_SECONDS; the release task sends it again then.
REMINDER_RETRY_FOR_HOURS = {
    "email": env_int("EMAIL_RETRY_FOR_HOURS", 24),
    "sms": env_int("SMS_RETRY_FOR_HOURS", 24),
    "whatsapp": env_int("WHATSAPP_RETRY_FOR_HOURS", 24),
}
REMINDER_RETRY_BACKOFF_SECONDS = env_int("REMINDER_RETRY_BACKOFF_SECONDS", 300)
REMINDER_RETRY_BACKOFF_MAX_SECONDS = env_int("REMINDER_RETRY_BACKOFF_MAX_SECONDS", 3600)
# After this many transient errors in a row from a channel's provider (0: never), the channel
# pauses: its reminders wait in the database, without spending their tries, while one send at
# a time probes the provider, PROVIDER_PROBE_SECONDS after the pause, then twice as long after
# each failed probe up to PROVIDER_PROBE_MAX_SECONDS. Its first answer resumes the channel.
PROVIDER_BREAKER_FAILURES = env_int("PROVIDER_BREAKER_FAILURES", 20)
PROVIDER_PROBE_SECONDS = env_int("PROVIDER_PROBE_SECONDS", 30)
PROVIDER_PROBE_MAX_SECONDS = env_int("PROVIDER_PROBE_MAX_SECONDS", 600)
if min(REMINDER_RETRY_FOR_HOURS.values()) < 0 or PROVIDER_BREAKER_FAILURES < 0:
    raise ImproperlyConfigured(
        "EMAIL_RETRY_FOR_HOURS, SMS_RETRY_FOR_HOURS, WHATSAPP_RETRY_FOR_HOURS and "
        "PROVIDER_BREAKER_FAILURES cannot be negative."
    )
if not 1 <= PROVIDER_PROBE_SECONDS <= PROVIDER_PROBE_MAX_SECONDS:
    raise ImproperlyConfigured(
        "PROVIDER_PROBE_SECONDS must be at least 1 and at most PROVIDER_PROBE_MAX_SECONDS."
    )
# Messages per second each channel may send, across all workers (0: no limit). A limit needs
# Redis at REDIS_URL, where the workers count what they sent.
SEND_RATE_LIMITS = {
    "email": env_int("EMAIL_RATE_LIMIT_PER_SECOND", 0),
    "sms": env_int("SMS_RATE_LIMIT_PER_SECOND", 0),
    "whatsapp": env_int("WHATSAPP_RATE_LIMIT_PER_SECOND", 0),
}
# SMS and WhatsApp (both buzz a phone) go out only from this hour to that one, in the
# customer's own time zone; outside it a
# reminder is deferred, and the fan-out (every few minutes) releases it when the window opens.
SMS_WINDOW_START_HOUR = env_int("SMS_WINDOW_START_HOUR", 8)
SMS_WINDOW_END_HOUR = env_int("SMS_WINDOW_END_HOUR", 21)
if not 0 <= SMS_WINDOW_START_HOUR < SMS_WINDOW_END_HOUR <= 24:
    raise ImproperlyConfigured("SMS_WINDOW_START_HOUR must come before SMS_WINDOW_END_HOUR (0-24).")
# A worker starts a send only while its lease outlives the longest a send may take (twice the
# longest timeout: connecting, then reading), and renews it every quarter of its duration: a
# lease no longer than that would stop every send.
if 2 * max(EMAIL_TIMEOUT, TWILIO_TIMEOUT_SECONDS) >= REMINDER_WORKER_LEASE_SECONDS * 3 / 4:
    raise ImproperlyConfigured(
        f"REMINDER_WORKER_LEASE_SECONDS={REMINDER_WORKER_LEASE_SECONDS} must exceed 8/3 of the "
        f"longest provider timeout (EMAIL_TIMEOUT_SECONDS={EMAIL_TIMEOUT}, "
        f"TWILIO_TIMEOUT_SECONDS={TWILIO_TIMEOUT_SECONDS})."
    )

# --- Background jobs: uploads, weekly reports, housekeeping ---------------------------------
# Files people upload and reports Renewly writes. Never served as static files: every download
# goes through a view that checks who asks (so there is no MEDIA_URL).
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
UPLOADS_DIR = Path(env_str("UPLOADS_DIR", str(MEDIA_ROOT / "uploads")))
REPORTS_DIR = Path(env_str("REPORTS_DIR", str(MEDIA_ROOT / "reports")))
IMPORT_UPLOAD_MAX_MB = env_int("IMPORT_UPLOAD_MAX_MB", 100)
# A policy row (CSV or API) naming an agent Renewly does not know: "reject" the row, or
# "create" the agent, with a login that has no usable password until an admin invites them.
IMPORT_UNKNOWN_AGENTS = env_str("IMPORT_UNKNOWN_AGENTS", "reject")
if IMPORT_UNKNOWN_AGENTS not in {"reject", "create"}:
    raise ImproperlyConfigured(
        f'IMPORT_UNKNOWN_AGENTS must be "reject" or "create", not {IMPORT_UNKNOWN_AGENTS!r}.'
    )
# A running import that reported no progress for this long lost its worker: it shows as
# interrupted, and can be run again.
IMPORT_STALLED_AFTER_MINUTES = env_int("IMPORT_STALLED_AFTER_MINUTES", 10)
# Who gets the all-agents weekly report by email (agents get their own at their address).
REPORTS_ADMIN_EMAILS = env_list("REPORTS_ADMIN_EMAILS", [])
# A report email claimed this long ago and never confirmed sent (its worker died) is sent again.
REPORT_EMAIL_CLAIM_MINUTES = env_int("REPORT_EMAIL_CLAIM_MINUTES", 30)
# Housekeeping keeps these for this many days (0: forever).
RESULTS_RETENTION_DAYS = env_int("RESULTS_RETENTION_DAYS", 30)
UPLOADS_RETENTION_DAYS = env_int("UPLOADS_RETENTION_DAYS", 90)
PROVIDER_PAYLOAD_RETENTION_DAYS = env_int("PROVIDER_PAYLOAD_RETENTION_DAYS", 180)

# --- Health and metrics ---------------------------------------------------------------------
# /readyz: how long the broker and a worker's ping may take to answer, how long a worker's
# answer counts (a load balancer probing every few seconds then costs each web process one ping
# in that time), and how long after its scheduled time the daily scan may take to finish.
READYZ_TIMEOUT_SECONDS = env_int("READYZ_TIMEOUT_SECONDS", 1)
READYZ_WORKER_FRESH_SECONDS = env_int("READYZ_WORKER_FRESH_SECONDS", 30)
READYZ_WORKER_RETRY_SECONDS = env_int("READYZ_WORKER_RETRY_SECONDS", 5)
READYZ_SCAN_GRACE_MINUTES = env_int("READYZ_SCAN_GRACE_MINUTES", 60)
# /metrics answers only a request bearing this token (Authorization: Bearer ...); without one
# it is not served at all.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Web and worker processes count sends and webhooks in files here, which /metrics adds up: on
# several machines (containers) it must be a volume they share. Each machine writes a folder of
# its own, as process ids repeat from one container to the next. prometheus_client reads the
# variable when a process first counts (ops/metrics.py).
METRICS_DIR = Path(env_str("METRICS_DIR", str(VAR_DIR / "metrics")))
PROMETHEUS_MULTIPROC_DIR = METRICS_DIR / socket.gethostname()
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)

# --- Integration API (api/; README: "Integration API") --------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.access.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.access.KeyPermission"],
    "DEFAULT_THROTTLE_CLASSES": ["api.access.PerKeyThrottle"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Renewly integration API",
    "DESCRIPTION": "Feed Renewly policies and agents, change policies and consent, and read "
    "reminders and their delivery. Authenticate with `Authorization: Api-Key <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs' scripts and styles come from our own static files (drf-spectacular-sidecar).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PolicyStatusEnum": "policies.models.PolicyStatus",
        "NotificationStatusEnum": "notifications.models.NotificationStatus",
        "ChannelEnum": "notifications.models.Channel",
    },
}
# Requests each API key may make per minute, across all web processes when CACHE_URL names
# Redis (0: no limit); more answer 429 with Retry-After.
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 600)
# The largest request body the API reads; a bulk upsert of 5,000 rows fits in about 2 MB.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 4 * 1024 * 1024)
API_BULK_MAX_ROWS = env_int("API_BULK_MAX_ROWS", 5000)
# How long a POST's Idempotency-Key answers with its stored response; housekeeping purges it.
IDEMPOTENCY_KEY_HOURS = env_int("IDEMPOTENCY_KEY_HOURS", 24)
# A request that held its key this long died with its process: the key may be used again.
IDEMPOTENCY_LOCK_SECONDS = env_int("IDEMPOTENCY_LOCK_SECONDS", 300)

# --- Events out (events/; README: "Events to other systems") --------------------------------
# A receiver that stops answering must not hold a sending thread: each step of a POST
# (connecting, then each read) may take this long.
EVENTS_TIMEOUT_SECONDS = env_int("EVENTS_TIMEOUT_SECONDS", 10)
# A worker's claim on a batch of deliveries; once it lapses (the worker died), another sends
# them again, same webhook-ids. A POST starts only while the claim outlives its timeouts.
EVENTS_CLAIM_SECONDS = env_int("EVENTS_CLAIM_SECONDS", 120)
# Deliveries claimed and recorded together, and the threads per process that POST them at once
# (they wait for the receivers, not the CPU).
EVENTS_BATCH_SIZE = env_int("EVENTS_BATCH_SIZE", 100)
EVENTS_SEND_THREADS = env_int("EVENTS_SEND_THREADS", 20)
# A failed delivery is tried again for this many hours after its first failure (a receiver's
# outage over a weekend), waiting the first backoff, doubling with each attempt up to the max.
EVENTS_RETRY_FOR_HOURS = env_int("EVENTS_RETRY_FOR_HOURS", 72)
EVENTS_RETRY_BACKOFF_SECONDS = env_int("EVENTS_RETRY_BACKOFF_SECONDS", 30)
EVENTS_RETRY_BACKOFF_MAX_SECONDS = env_int("EVENTS_RETRY_BACKOFF_MAX_SECONDS", 3600)
# A subscription whose attempts all failed, this many in a row and for this many hours, is
# disabled (its events wait) and EVENTS_ADMIN_EMAILS are told: a receiver gone for good.
EVENTS_DISABLE_AFTER_FAILURES = env_int("EVENTS_DISABLE_AFTER_FAILURES", 10)
EVENTS_DISABLE_AFTER_HOURS = env_int("EVENTS_DISABLE_AFTER_HOURS", 72)
EVENTS_ADMIN_EMAILS = env_list("EVENTS_ADMIN_EMAILS", REPORTS_ADMIN_EMAILS)
# Each process reads which subscriptions want which events again this often (at once after a
# change in the admin's own process): a change pays no query for it.
EVENTS_SUBSCRIPTIONS_REFRESH_SECONDS = env_int("EVENTS_SUBSCRIPTIONS_REFRESH_SECONDS", 10)
# Housekeeping deletes events every subscription got, this many days after they were written.
EVENTS_RETENTION_DAYS = env_int("EVENTS_RETENTION_DAYS", 30)
if 2 * EVENTS_TIMEOUT_SECONDS >= EVENTS_CLAIM_SECONDS:
    raise ImproperlyConfigured(
        f"EVENTS_CLAIM_SECONDS={EVENTS_CLAIM_SECONDS} must exceed twice EVENTS_TIMEOUT_SECONDS="
        f"{EVENTS_TIMEOUT_SECONDS}: a POST may take that long."
    )

# --- Policy feeds (policies/feeds.py; README: "Scheduled feeds") ----------------------------
# A feed's server that stops answering must not hold a worker: bounds each step (connecting,
# each read of the download).
FEEDS_FETCH_TIMEOUT_SECONDS = env_int("FEEDS_FETCH_TIMEOUT_SECONDS", 30)
# A larger extract is refused as it streams, before it fills a worker's temporary disk.
FEEDS_MAX_MB = env_int("FEEDS_MAX_MB", 100)
# /readyz reports a feed after this many failed runs in a row: one failure may be a blip.
FEEDS_READYZ_MISSED_RUNS = env_int("FEEDS_READYZ_MISSED_RUNS", 3)
# Plain http:// would carry the credentials and the policies in clear: for local tests only.
FEEDS_ALLOW_HTTP = env_bool("FEEDS_ALLOW_HTTP", default=False)
# Folder feeds read only inside this folder (on several machines, a volume the workers share),
# so that a feed cannot be pointed at any file a worker can read.
FEEDS_FOLDER_ROOT = Path(env_str("FEEDS_FOLDER_ROOT", str(VAR_DIR / "feeds")))
# A file modified this recently may still be being written: a folder feed leaves it for later.
FEEDS_FILE_QUIET_SECONDS = env_int("FEEDS_FILE_QUIET_SECONDS", 60)
# Feeds' passwords and tokens are encrypted with a key derived from this (SECRET_KEY when
# empty); the fallbacks still decrypt what older keys encrypted, so a key can be rotated.
FEEDS_SECRET_KEY = env_str("FEEDS_SECRET_KEY") or SECRET_KEY
FEEDS_SECRET_KEY_FALLBACKS = env_list("FEEDS_SECRET_KEY_FALLBACKS", [])

# Every environment variable read above, for a process Renewly starts outside its own
# environment (cron mode's crontab entry) to be handed the same configuration. Keep this last.
ENVIRONMENT_NAMES = sorted(NAMES_READ)
