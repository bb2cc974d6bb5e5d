"""Settings come from the environment with documented defaults. Each case runs Django in a
fresh process, because settings are read once, when the process starts."""

import json
import os
import subprocess
import sys

import pytest

from tests.workers import BASE_DIR

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
from config.celery import app
print(json.dumps({
    "engine": s.DATABASES["default"]["ENGINE"],
    "database": str(s.DATABASES["default"]["NAME"]),
    "broker": s.CELERY_BROKER_URL,
    "broker_transport": app.connection_for_write().get_transport_cls().__module__,
    "transport_options": s.CELERY_BROKER_TRANSPORT_OPTIONS,
    "result_backend": s.CELERY_RESULT_BACKEND,
    "acks_late": s.CELERY_TASK_ACKS_LATE,
    "reject_on_worker_lost": s.CELERY_TASK_REJECT_ON_WORKER_LOST,
    "serializer": s.CELERY_TASK_SERIALIZER,
    "accept": s.CELERY_ACCEPT_CONTENT,
    "beat_scheduler": s.CELERY_BEAT_SCHEDULER,
    "time_zone": s.TIME_ZONE,
    "debug": s.DEBUG,
    "allowed_hosts": s.ALLOWED_HOSTS,
    "email_backend": s.EMAIL_BACKEND,
    "outbox_dir": str(s.OUTBOX_DIR),
    "sms_backend": s.SMS_BACKEND,
    "redis_url": s.REDIS_URL,
}))
"""
RENEWLY_VARIABLES = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "TIME_ZONE",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "EMAIL_BACKEND",
    "SMS_BACKEND",
    "RENEWLY_VAR_DIR",
    "OUTBOX_DIR",
    "CELERY_VISIBILITY_TIMEOUT",
    "TWILIO_MESSAGING_SERVICE_SID",
    "TWILIO_LINK_SHORTENING_DOMAIN",
}


def settings_in_fresh_process(tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {name: value for name, value in os.environ.items() if name not in RENEWLY_VARIABLES}
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=BASE_DIR,
        env={
            **clean,
            "RENEWLY_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_settings(tmp_path, **env: str) -> dict:
    result = settings_in_fresh_process(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_need_no_server(tmp_path):
    settings = read_settings(tmp_path, DEBUG="1")
    assert settings["engine"] == "django.db.backends.sqlite3"
    assert settings["database"] == str(tmp_path / "renewly.sqlite3")
    assert settings["broker"] == "filesystem://localhost/"
    assert settings["broker_transport"] == "config.broker"  # kombu's filesystem, made safe
    assert settings["transport_options"]["data_folder_in"] == str(tmp_path / "broker" / "messages")
    assert settings["email_backend"] == "notifications.channels.outbox.EmailBackend"
    assert settings["outbox_dir"] == str(tmp_path / "outbox")
    assert settings["sms_backend"] == "outbox"
    assert settings["time_zone"] == "UTC"
    assert settings["redis_url"] == "redis://127.0.0.1:6379/0"
    assert settings["allowed_hosts"] == ["localhost", "127.0.0.1", "[::1]"]


def test_celery_is_safe_against_lost_workers_and_speaks_json(tmp_path):
    settings = read_settings(tmp_path, DEBUG="1")
    assert settings["acks_late"] is True
    assert settings["reject_on_worker_lost"] is True
    assert settings["serializer"] == "json"
    assert settings["accept"] == ["json"]
    assert settings["result_backend"] == "django-db"
    assert settings["beat_scheduler"] == "django_celery_beat.schedulers:DatabaseScheduler"


def test_environment_overrides_the_defaults(tmp_path):
    settings = read_settings(
        tmp_path,
        DEBUG="0",
        SECRET_KEY="s3cret",
        DATABASE_URL="postgres://renewly:pw@db.internal:5432/renewly",
        CELERY_BROKER_URL="redis://cache.internal:6379/0",
        CELERY_VISIBILITY_TIMEOUT="7200",
        TIME_ZONE="Europe/Madrid",
        ALLOWED_HOSTS="renewly.example, admin.renewly.example",
        SMS_BACKEND="twilio",
    )
    assert settings["engine"] == "django.db.backends.postgresql"
    assert settings["database"] == "renewly"
    assert settings["broker"] == "redis://cache.internal:6379/0"
    assert settings["broker_transport"] == "kombu.transport.redis"
    assert settings["transport_options"] == {"visibility_timeout": 7200}
    assert settings["time_zone"] == "Europe/Madrid"
    assert settings["allowed_hosts"] == ["renewly.example", "admin.renewly.example"]
    assert settings["debug"] is False
    assert settings["sms_backend"] == "twilio"


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    result = settings_in_fresh_process(tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_malformed_boolean_is_named_in_the_error(tmp_path):
    result = settings_in_fresh_process(tmp_path, DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


SERVICE = "MG" + "5e" * 16


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"TWILIO_MESSAGING_SERVICE_SID": "PN123"},
            "TWILIO_MESSAGING_SERVICE_SID='PN123' is not a Messaging Service SID",
        ),
        (
            {"TWILIO_LINK_SHORTENING_DOMAIN": "go.insurer.example"},
            "TWILIO_LINK_SHORTENING_DOMAIN needs TWILIO_MESSAGING_SERVICE_SID",
        ),
        (
            {
                "TWILIO_MESSAGING_SERVICE_SID": SERVICE,
                "TWILIO_LINK_SHORTENING_DOMAIN": "https://go.insurer.example/",
            },
            "is not a bare domain: write it without https:// or a path",
        ),
    ],
)
def test_a_twilio_sender_or_link_shortening_setting_that_cannot_work_is_named(tmp_path, env, error):
    result = settings_in_fresh_process(tmp_path, DEBUG="1", **env)
    assert result.returncode != 0
    assert error in result.stderr


def test_link_shortening_with_a_messaging_service_is_accepted(tmp_path):
    read_settings(
        tmp_path,
        DEBUG="1",
        TWILIO_MESSAGING_SERVICE_SID=SERVICE,
        TWILIO_LINK_SHORTENING_DOMAIN="go.insurer.example",
    )


def test_a_digest_channel_that_cannot_have_digests_is_named(tmp_path):
    result = settings_in_fresh_process(tmp_path, DEBUG="1", DIGEST_CHANNELS="email,whatsapp")

    assert result.returncode != 0
    assert "DIGEST_CHANNELS may name email and sms, not whatsapp" in result.stderr
