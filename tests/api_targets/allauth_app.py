"""django-allauth's headless API (the ``app`` client a mobile app uses) as an audit target.

One Django project configured in code, served by uvicorn on 127.0.0.1. Login by e-mail code,
login by SMS code (the phone lives in a small table behind the account adapter's phone
methods), password reset by code, and password login are allauth's own views; mail goes by
SMTP to perisai's sink, texts through the official Twilio SDK whose base URL is perisai's SMS
sink. The ``app`` client carries its state in the ``X-Session-Token`` header: the first answer
of a flow holds ``meta.session_token`` and every later request of that flow must send it back
(no cookies, no CSRF).

- vulnerable: ``ACCOUNT_RATE_LIMITS = False``, ``ACCOUNT_PREVENT_ENUMERATION = False``, the
  wrong-code limits raised out of reach and 6-digit numeric codes (what a deployer tired of
  locked-out users and "hard to type" codes does);
- hardened: allauth's defaults for all of these.

Both configs make e-mail verification mandatory: without it allauth answers "email_taken" at
signup even with enumeration prevention on. The known account is the sink e-mail, because the
password-reset request takes only an e-mail.

The allauth specification is served at ``/_allauth/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TARGET", "main", "request_log"]

TARGET: dict[str, Any] = {
    "spec": "/_allauth/openapi.json",
    "flows": "allauth_flows.yaml",
    "known_account": "{sink_email}",
}

MODULE = "tests.api_targets.allauth_app"
USERNAME = "perisai-tester"
SMS_FROM = "+15005550006"  # Twilio's own test "from" number; the sink ignores it
# the code format and wrong-code limits a careless deployer picks: short, digits only, and
# "never lock anyone out"
WEAK_CODES = {"numeric": True, "length": 6, "dashed": False}
NO_LOCKOUT = 10_000
_LOG_LOCK = threading.Lock()


def _workdir() -> Path:
    return Path(os.environ.get("PERISAI_TARGET_DIR", "."))


def _append(name: str, record: dict[str, Any]) -> None:
    """One JSON line per request or message: what the tests read to check perisai's manners."""
    with _LOG_LOCK, (_workdir() / name).open("a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def request_log(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Django middleware (outermost): method, path and status of every request."""

    def middleware(request: Any) -> Any:
        response = get_response(request)
        _append(
            "requests.jsonl",
            {"method": request.method, "path": request.path, "status": response.status_code},
        )
        return response

    return middleware


@functools.cache
def _adapter_class() -> type:
    """The account adapter: allauth's, plus the phone storage and SMS sending it leaves to us."""
    from allauth.account.adapter import DefaultAccountAdapter  # type: ignore[import-untyped]
    from django.contrib.auth import get_user_model  # type: ignore[import-untyped]
    from django.db import connection  # type: ignore[import-untyped]
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    http = TwilioHttpClient(timeout=10)
    if http.session is not None:
        http.session.trust_env = False  # loopback only: never an environment proxy
    twilio = Client("AC" + secrets.token_hex(16), secrets.token_hex(16), http_client=http)
    twilio.api.base_url = os.environ["PERISAI_TARGET_SMS"].rstrip("/")

    def user_by_id(user_id: int) -> Any:
        return get_user_model().objects.filter(pk=user_id).first()

    class PhoneAdapter(DefaultAccountAdapter):  # type: ignore[misc]
        """Phones in table ``perisai_phone`` (user_id, phone, verified); codes by Twilio."""

        def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
            super().send_mail(template_prefix, email, context)
            _append("messages.jsonl", {"channel": "email", "to": email, "kind": template_prefix})

        def send_verification_code_sms(
            self, user: Any, phone: str, code: str, **kwargs: Any
        ) -> None:
            twilio.messages.create(to=phone, from_=SMS_FROM, body=f"Your code is {code}")
            _append("messages.jsonl", {"channel": "sms", "to": phone, "kind": "code"})

        def set_phone(self, user: Any, phone: str, verified: bool) -> None:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM perisai_phone WHERE user_id = %s", [user.pk])
                cursor.execute(
                    "INSERT INTO perisai_phone (user_id, phone, verified) VALUES (%s, %s, %s)",
                    [user.pk, phone, verified],
                )

        def get_phone(self, user: Any) -> tuple[str, bool] | None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT phone, verified FROM perisai_phone WHERE user_id = %s", [user.pk]
                )
                row = cursor.fetchone()
            return (str(row[0]), bool(row[1])) if row else None

        def set_phone_verified(self, user: Any, phone: str) -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE perisai_phone SET verified = 1 WHERE user_id = %s AND phone = %s",
                    [user.pk, phone],
                )

        def get_user_by_phone(self, phone: str) -> Any:
            with connection.cursor() as cursor:
                cursor.execute("SELECT user_id FROM perisai_phone WHERE phone = %s", [phone])
                row = cursor.fetchone()
            return user_by_id(int(row[0])) if row else None

    return PhoneAdapter


@functools.cache
def _urlpatterns() -> list[Any]:
    from django.http import HttpResponse  # type: ignore[import-untyped]
    from django.urls import include, path  # type: ignore[import-untyped]

    def index(request: Any) -> Any:
        return HttpResponse("django-allauth headless target: /_allauth/openapi.json\n")

    return [path("", index), path("_allauth/", include("allauth.headless.urls"))]


def __getattr__(name: str) -> Any:
    """Settings name the adapter and the URLconf by dotted path; both need Django set up."""
    if name == "PhoneAdapter":
        return _adapter_class()
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def _settings(root: Path, port: int, hardened: bool) -> dict[str, Any]:
    smtp_host, _, smtp_port = os.environ["PERISAI_TARGET_SMTP"].rpartition(":")
    front = f"http://127.0.0.1:{port}/app"
    settings: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": ["127.0.0.1", "localhost"],
        "ROOT_URLCONF": MODULE,
        "USE_TZ": True,
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "allauth",
            "allauth.account",
            "allauth.headless",
        ],
        "MIDDLEWARE": [
            f"{MODULE}.request_log",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "allauth.account.middleware.AccountMiddleware",
        ],
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
            }
        ],
        "DATABASES": {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(root / "db.sqlite3")}
        },
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        # a 500 (say, a sink that is not running) leaves its traceback in server.log
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
        },
        "AUTHENTICATION_BACKENDS": [
            "django.contrib.auth.backends.ModelBackend",
            "allauth.account.auth_backends.AuthenticationBackend",
        ],
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": smtp_host,
        "EMAIL_PORT": int(smtp_port),
        "EMAIL_TIMEOUT": 10,
        "DEFAULT_FROM_EMAIL": "no-reply@perisai-target.example.org",
        "ACCOUNT_ADAPTER": f"{MODULE}.PhoneAdapter",
        "ACCOUNT_LOGIN_METHODS": {"email", "phone"},
        "ACCOUNT_SIGNUP_FIELDS": ["email*", "phone*", "password1*"],
        # allauth hides a taken e-mail at signup only when verification is mandatory
        "ACCOUNT_EMAIL_VERIFICATION": "mandatory",
        "ACCOUNT_LOGIN_BY_CODE_ENABLED": True,
        "ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED": True,
        "HEADLESS_ONLY": True,
        "HEADLESS_CLIENTS": ("app",),
        "HEADLESS_SERVE_SPECIFICATION": True,
        "HEADLESS_FRONTEND_URLS": {
            "account_confirm_email": front + "/verify-email/{key}",
            "account_reset_password": front + "/password/reset",
            "account_reset_password_from_key": front + "/password/reset/key/{key}",
            "account_signup": front + "/signup",
        },
    }
    if not hardened:
        settings.update(
            {
                "ACCOUNT_RATE_LIMITS": False,
                "ACCOUNT_PREVENT_ENUMERATION": False,
                "ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS": NO_LOCKOUT,
                "ACCOUNT_PASSWORD_RESET_BY_CODE_MAX_ATTEMPTS": NO_LOCKOUT,
                "ACCOUNT_PHONE_VERIFICATION_MAX_ATTEMPTS": NO_LOCKOUT,
                "ALLAUTH_USER_CODE_FORMAT": WEAK_CODES,
            }
        )
    return settings


def _seed(sink_email: str, sink_phone: str) -> None:
    """The tester's account: verified sink e-mail and phone, a password nobody is told."""
    from allauth.account.models import EmailAddress  # type: ignore[import-untyped]
    from django.contrib.auth import get_user_model
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE perisai_phone (user_id INTEGER PRIMARY KEY "
            "REFERENCES auth_user (id), phone TEXT NOT NULL UNIQUE, verified BOOLEAN NOT NULL)"
        )
    user = get_user_model().objects.create_user(
        USERNAME, email=sink_email, password=secrets.token_urlsafe(32)
    )
    EmailAddress.objects.create(user=user, email=sink_email, verified=True, primary=True)
    _adapter_class()().set_phone(user, sink_phone, True)


def main() -> None:
    """Configure Django, migrate a fresh SQLite file, seed, serve with uvicorn on loopback."""
    sys.modules.setdefault(MODULE, sys.modules[__name__])  # dotted paths reach this module
    import django  # type: ignore[import-untyped]
    import uvicorn
    from django.conf import settings  # type: ignore[import-untyped]
    from django.core.asgi import get_asgi_application  # type: ignore[import-untyped]
    from django.core.management import call_command  # type: ignore[import-untyped]

    root = _workdir()
    root.mkdir(parents=True, exist_ok=True)
    (root / "db.sqlite3").unlink(missing_ok=True)
    port = int(os.environ["PERISAI_TARGET_PORT"])
    hardened = os.environ.get("PERISAI_TARGET_HARDENED") == "1"
    settings.configure(**_settings(root, port, hardened))
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    _seed(os.environ["PERISAI_TARGET_SINK_EMAIL"], os.environ["PERISAI_TARGET_SINK_PHONE"])
    print(
        f"allauth headless ({'hardened' if hardened else 'vulnerable'}) on 127.0.0.1:{port}",
        flush=True,
    )
    uvicorn.run(
        get_asgi_application(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        proxy_headers=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
