"""Flask-Security-Too (5.x) as an audit-api target: unified sign-in with e-mail and SMS codes,
password login and password reset, served as Flask-Security's own JSON API.

Vulnerable: Flask-Security's defaults, no rate limiting and ``SECURITY_RETURN_GENERIC_RESPONSES``
off, so answers tell a registered identity from an unknown one. Hardened: generic responses on,
and Flask-Limiter (the companion Flask-Security's docs point deployments to) limiting
``/us-signin/send-code``, ``/us-signin``, ``/login`` and ``/reset`` per identity and per IP.

Glue only: settings, models from ``flask_security.models.sqla`` on a plain SQLAlchemy scoped
session (no Flask-SQLAlchemy in the venv), the seed, and the senders. No mail extension
(Flask-Mailman/Flask-Mail) is installed, so mail leaves through a ``mail_util_cls`` (Flask-
Security's documented hook) that speaks SMTP with smtplib. Texts leave through
Flask-Security's own Twilio sender (``SECURITY_SMS_SERVICE = "Twilio"``), subclassed so the
official SDK's ``client.api.base_url`` is perisai's SMS sink, and re-registered in
``SmsSenderFactory.senders["Twilio"]``.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import smtplib
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

# no --flows: perisai reads Flask-Security's "identity" field as an account identifier
TARGET: dict[str, str] = {
    "spec": "file:flask_security_openapi.yaml",
    "known_account": "{sink_email}",
}

# a few per 10 minutes, as a deployment would set them (hardened only)
PER_IDENTITY = "5 per 10 minutes"
PER_IP = "20 per 10 minutes"
# Ofcom's drama range; phonenumbers' metadata calls these unallocated (not valid)
DRAMA_PREFIX = "+447700900"
_LOCK = threading.Lock()


def _append(root: Path, name: str, record: dict[str, Any]) -> None:
    """One JSON line per request or message, so tests can check the target's side."""
    with _LOCK, (root / name).open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def build_app(root: Path, *, hardened: bool) -> Flask:
    """The Flask app with Flask-Security configured and the tester's account seeded."""
    import phonenumbers
    from flask import Flask, Response, jsonify, request
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    from flask_security import (
        MailUtil,
        PhoneUtil,
        Security,
        SmsSenderFactory,
        SQLAlchemySessionUserDatastore,
        hash_password,
        lookup_identity,
        uia_email_mapper,
        uia_phone_mapper,
    )
    from flask_security.models import sqla as fsqla
    from flask_security.utils import TwilioSmsSender
    from flask_wtf import CSRFProtect  # type: ignore[import-untyped]
    from sqlalchemy import create_engine
    from sqlalchemy.orm import DeclarativeBase, scoped_session, sessionmaker
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client
    from werkzeug.exceptions import TooManyRequests

    smtp_host, smtp_port = _host_port(os.environ["PERISAI_TARGET_SMTP"])
    sms_base = os.environ["PERISAI_TARGET_SMS"].rstrip("/")
    sink_email = os.environ["PERISAI_TARGET_SINK_EMAIL"]
    sink_phone = os.environ["PERISAI_TARGET_SINK_PHONE"]

    class SmtpMailUtil(MailUtil):
        """Flask-Security's mail hook, sending by SMTP to perisai's sink (no mail extension)."""

        def send_mail(
            self,
            template: str,
            subject: str,
            recipient: str | tuple[str, str],
            sender: str | tuple[str, str],
            body: str | None,
            html: str | None,
            **kwargs: Any,
        ) -> None:
            to = recipient if isinstance(recipient, str) else recipient[1]
            message = EmailMessage()
            message["Subject"] = str(subject)
            message["From"] = sender if isinstance(sender, str) else f"{sender[0]} <{sender[1]}>"
            message["To"] = to
            message.set_content(body or "")
            if html:
                message.add_alternative(html, subtype="html")
            with smtplib.SMTP(smtp_host, smtp_port, timeout=10) as smtp:
                smtp.send_message(message)
            _append(root, "messages.jsonl", {"channel": "email", "to": to, "template": template})

    class SinkTwilioSmsSender(TwilioSmsSender):
        """Flask-Security's Twilio sender with the official SDK pointed at perisai's sink."""

        def send_sms(self, from_number: str, to_number: str, msg: str) -> None:
            http = TwilioHttpClient(timeout=10)
            if http.session is not None:
                http.session.trust_env = False  # loopback only: no proxy from the environment
            client = Client(self.account_sid, self.auth_token, http_client=http)
            client.api.base_url = sms_base
            client.messages.create(to=to_number, from_=from_number, body=msg)
            _append(root, "messages.jsonl", {"channel": "sms", "to": to_number})

    class DramaRangePhoneUtil(PhoneUtil):
        """Flask-Security's phone checks, plus Ofcom's drama range (the sink number lives
        there, and phonenumbers' metadata marks it unallocated)."""

        def _drama(self, input_data: str) -> str | None:
            try:
                number = phonenumbers.parse(input_data, None)
            except phonenumbers.NumberParseException:
                return None
            e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
            return e164 if e164.startswith(DRAMA_PREFIX) and len(e164) == 13 else None

        def validate_phone_number(self, input_data: str) -> str | None:
            if self._drama(input_data):
                return None
            return super().validate_phone_number(input_data)

        def get_canonical_form(self, input_data: str) -> str | None:
            return self._drama(input_data) or super().get_canonical_form(input_data)

    SmsSenderFactory.senders["Twilio"] = SinkTwilioSmsSender

    class Base(DeclarativeBase):
        pass

    fsqla.FsModels.set_db_info(base_model=Base)  # type: ignore[no-untyped-call]

    class Role(Base, fsqla.FsRoleMixin):
        __tablename__ = "role"

    class User(Base, fsqla.FsUserMixin):
        __tablename__ = "user"

    engine = create_engine(
        f"sqlite:///{root / 'flask_security.sqlite3'}",
        connect_args={"check_same_thread": False, "timeout": 15},
    )
    Base.metadata.create_all(engine)
    db_session = scoped_session(sessionmaker(bind=engine, autoflush=False))

    app = Flask("flask_security_target")
    app.config.update(
        SECRET_KEY=secrets.token_urlsafe(32),
        SECURITY_PASSWORD_SALT=secrets.token_urlsafe(16),
        SECURITY_TOTP_SECRETS={"1": secrets.token_urlsafe(32)},
        SECURITY_TOTP_ISSUER="perisai flask-security target",
        # JSON API without a browser: CSRF stays on for authenticated calls only (FS docs)
        WTF_CSRF_CHECK_DEFAULT=False,
        SECURITY_CSRF_IGNORE_UNAUTH_ENDPOINTS=True,
        SECURITY_UNIFIED_SIGNIN=True,
        SECURITY_US_ENABLED_METHODS=["email", "sms"],
        SECURITY_RECOVERABLE=True,
        SECURITY_CONFIRMABLE=True,
        SECURITY_USER_IDENTITY_ATTRIBUTES=[
            {"email": {"mapper": uia_email_mapper, "case_insensitive": True}},
            {"us_phone_number": {"mapper": uia_phone_mapper}},
        ],
        SECURITY_EMAIL_VALIDATOR_ARGS={"check_deliverability": False},  # no DNS
        SECURITY_EMAIL_SENDER="no-reply@flask-security-target.example.org",
        SECURITY_SMS_SERVICE="Twilio",
        SECURITY_SMS_SERVICE_CONFIG={
            "ACCOUNT_SID": "AC" + secrets.token_hex(16),
            "AUTH_TOKEN": secrets.token_hex(16),
            "PHONE_NUMBER": DRAMA_PREFIX + "000",
        },
        SECURITY_RETURN_GENERIC_RESPONSES=hardened,
    )
    CSRFProtect(app)
    datastore = SQLAlchemySessionUserDatastore(db_session, User, Role)
    security = Security(
        app, datastore, mail_util_cls=SmtpMailUtil, phone_util_cls=DramaRangePhoneUtil
    )

    @app.teardown_appcontext
    def _remove_session(_error: BaseException | None) -> None:
        db_session.remove()

    @app.get("/")
    def index() -> Response:
        return jsonify(service="flask-security-too target", hardened=hardened)

    @app.after_request
    def _log_request(response: Response) -> Response:
        record = {"method": request.method, "path": request.path, "status": response.status_code}
        _append(root, "requests.jsonl", record)
        return response

    if hardened:
        limiter = Limiter(
            get_remote_address,
            app=app,
            storage_uri="memory://",
            headers_enabled=True,
            strategy="fixed-window",
        )

        def identity_key() -> str:
            """Whom the request is about (Flask-Security's identity/email field), resolved the
            way Flask-Security resolves it, so an account's e-mail and phone share one bucket;
            the IP when the request names nobody."""
            data: Any = request.get_json(silent=True) if request.is_json else request.form
            value = ""
            if hasattr(data, "get"):
                value = str(data.get("identity") or data.get("email") or "").strip()
            if not value:
                return f"ip:{get_remote_address()}"
            user = lookup_identity(value)
            if user is not None:
                return f"user:{user.fs_uniquifier}"
            canonical = uia_email_mapper(value) or uia_phone_mapper(value) or value.lower()
            return f"identity:{canonical}"

        for endpoint in (
            "security.us_signin_send_code",
            "security.us_signin",
            "security.login",
            "security.forgot_password",
        ):
            view: Any = app.view_functions[endpoint]
            view = limiter.limit(PER_IP, methods=["POST"], scope=f"{endpoint}:ip")(view)
            view = limiter.limit(
                PER_IDENTITY, key_func=identity_key, methods=["POST"], scope=f"{endpoint}:id"
            )(view)
            app.view_functions[endpoint] = view

        @app.errorhandler(429)
        def _too_many(error: TooManyRequests) -> tuple[Response, int]:
            """Flask-Security's JSON error shape for Flask-Limiter's refusal."""
            text = f"Too many requests: {error.description}"
            body = {"meta": {"code": 429}, "response": {"errors": [text]}}
            return jsonify(body), 429

    with app.app_context():
        phone = security.phone_util.get_canonical_form(sink_phone)
        if phone is None:
            raise SystemExit(f"seed phone {sink_phone} fails Flask-Security's phone check")
        user = datastore.create_user(
            email=sink_email,
            password=hash_password(secrets.token_urlsafe(24)),  # nobody is told
            active=True,
            confirmed_at=datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
        )
        for method in ("email", "sms"):
            secret = security.totp_factory.generate_totp_secret()
            datastore.us_set(user, method, totp_secret=secret, phone=phone)
        datastore.commit()  # type: ignore[no-untyped-call]
        db_session.remove()
    return app


def main() -> None:
    """Serve on 127.0.0.1:$PERISAI_TARGET_PORT until killed."""
    from werkzeug.serving import run_simple

    root = Path(os.environ["PERISAI_TARGET_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    hardened = os.environ.get("PERISAI_TARGET_HARDENED") == "1"
    app = build_app(root, hardened=hardened)
    port = int(os.environ["PERISAI_TARGET_PORT"])
    run_simple("127.0.0.1", port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
