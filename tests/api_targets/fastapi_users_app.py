"""fastapi-users as an ``audit-api`` target: its real JWT login, register, forgot/reset password,
request-verify/verify and users routers on FastAPI, with the reset and verification tokens
mailed to perisai's SMTP sink.

Vulnerable: fastapi-users as it ships, with no rate limiting anywhere. Hardened: the same app
with slowapi limits, per submitted address and per client IP, on the routes that send mail and
on login, plus a per-IP limit on the token-consuming routes; fastapi-users' own uniform 202
answers are kept, and a limit answers 429 with ``Retry-After``.
"""

import asyncio
import json
import os
import secrets
import smtplib
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

TARGET: dict[str, Any] = {"spec": "/openapi.json", "known_account": "{sink_email}"}

# Hardened limits (slowapi/limits notation): mail-sending routes per address and per client IP,
# login per username and per IP, the token-consuming routes per IP.
MAIL_PER_ADDRESS = "3 per 10 minutes"
MAIL_PER_IP = "10 per 10 minutes"
LOGIN_PER_USERNAME = "5 per 10 minutes"
LOGIN_PER_IP = "20 per 10 minutes"
TOKEN_PER_IP = "10 per 10 minutes"

_LOCK = threading.Lock()
_LOOPBACK = {"127.0.0.1", "localhost"}


def _append(path: Path, record: dict[str, Any]) -> None:
    """One JSON line per event, so the tests can read what the target saw and sent."""
    with _LOCK, path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def _loopback(hostport: str) -> tuple[str, int]:
    """``host:port`` of a sink; refuse anything but loopback, the only place mail may go."""
    host, _, port = hostport.rpartition(":")
    if host not in _LOOPBACK:
        raise SystemExit(f"refusing a non-loopback mail relay: {hostport!r}")
    return host, int(port)


def _send_mail(relay: tuple[str, int], to: str, subject: str, body: str) -> None:
    """Plain SMTP to the sink, as a staging deployment's relay setting would."""
    message = EmailMessage()
    message["From"] = "no-reply@example.org"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(relay[0], relay[1], timeout=10) as client:
        client.send_message(message)


def _harden(auth: "APIRouter", reset: "APIRouter", verify: "APIRouter", app: "FastAPI") -> None:
    """Put slowapi limits on fastapi-users' routes, as dependencies of those routes: the routers
    are built by the library, so a limited dependency is how a deployer reaches them."""
    from collections.abc import Awaitable, Callable

    from fastapi import Depends, Request, Response
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute
    from slowapi import Limiter
    from slowapi.errors import RateLimitExceeded
    from slowapi.util import get_remote_address

    limiter = Limiter(key_func=get_remote_address, strategy="moving-window")
    app.state.limiter = limiter

    async def too_many(request: Request, exc: Exception) -> Response:
        """slowapi's own handler only sets Retry-After with headers_enabled, which needs a
        ``response`` parameter fastapi-users' endpoints lack; compute it from the window."""
        retry = 60
        current = getattr(request.state, "view_rate_limit", None)
        if current is not None:
            reset_at, _left = limiter.limiter.get_window_stats(current[0], *current[1])
            retry = max(1, int(reset_at - time.time()) + 1)
        detail = exc.detail if isinstance(exc, RateLimitExceeded) else ""
        return JSONResponse(
            {"detail": f"Rate limit exceeded: {detail}"},
            status_code=429,
            headers={"Retry-After": str(retry)},
        )

    app.add_exception_handler(RateLimitExceeded, too_many)

    async def claimed_email(request: Request) -> None:
        """The address in a JSON body, for the per-address key (slowapi keys are sync)."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        email = body.get("email") if isinstance(body, dict) else None
        request.state.claimed = str(email).strip().lower() if email else ""

    async def claimed_username(request: Request) -> None:
        """The username of the OAuth2 password form that fastapi-users' login reads."""
        form = await request.form()
        username = form.get("username")
        request.state.claimed = username.strip().lower() if isinstance(username, str) else ""

    def by_claim(request: Request) -> str:
        return str(getattr(request.state, "claimed", "")) or "-"

    def attach(
        router: "APIRouter",
        path: str,
        *limits: tuple[str, Callable[[Request], str]],
        reads: Callable[[Request], Awaitable[None]] | None = None,
    ) -> None:
        """Give the route at ``path`` a dependency carrying slowapi limits; ``reads`` runs first
        to fill the per-claim key. slowapi files limits under the function's module and name,
        so each route's check gets its own name."""

        async def check(
            request: Request, _claim: Annotated[None, Depends(reads or _nothing)]
        ) -> None:
            return None

        check.__name__ = check.__qualname__ = "limit" + path.replace("/", "_").replace("-", "_")
        guarded: Callable[..., Any] = check
        for value, key in limits:
            guarded = limiter.limit(value, key_func=key)(guarded)
        for route in router.routes:
            if isinstance(route, APIRoute) and route.path == path:
                route.dependencies.append(Depends(guarded))
                return
        raise RuntimeError(f"fastapi-users has no {path} route to limit")

    mail = ((MAIL_PER_ADDRESS, by_claim), (MAIL_PER_IP, get_remote_address))
    attach(reset, "/forgot-password", *mail, reads=claimed_email)
    attach(verify, "/request-verify-token", *mail, reads=claimed_email)
    login = ((LOGIN_PER_USERNAME, by_claim), (LOGIN_PER_IP, get_remote_address))
    attach(auth, "/login", *login, reads=claimed_username)
    attach(reset, "/reset-password", (TOKEN_PER_IP, get_remote_address))
    attach(verify, "/verify", (TOKEN_PER_IP, get_remote_address))


async def _nothing() -> None:
    return None


def build_app(root: Path, *, hardened: bool, relay: tuple[str, int], seed_email: str) -> "FastAPI":
    """The app a fastapi-users deployer writes: SQLAlchemy users on SQLite, a JWT bearer
    backend, a UserManager whose hooks mail the tokens, and the library's five routers."""
    import uuid
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, Request, Response
    from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
    from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase

    secret = secrets.token_urlsafe(32)
    database = root / "users.sqlite3"
    database.unlink(missing_ok=True)
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    class Base(DeclarativeBase):
        pass

    class User(SQLAlchemyBaseUserTableUUID, Base):
        pass

    class UserRead(schemas.BaseUser[uuid.UUID]):
        pass

    class UserCreate(schemas.BaseUserCreate):
        pass

    class UserUpdate(schemas.BaseUserUpdate):
        pass

    async def deliver(to: str, subject: str, body: str, purpose: str) -> None:
        """Mail off the event loop; a failed send is logged, not raised, so the route's answer
        stays fastapi-users' own."""
        try:
            await asyncio.to_thread(_send_mail, relay, to, subject, body)
        except (OSError, smtplib.SMTPException) as error:
            print(f"mail to {to} failed: {error!r}", file=sys.stderr, flush=True)
            return
        _append(root / "messages.jsonl", {"channel": "email", "to": to, "purpose": purpose})

    class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
        reset_password_token_secret = secret
        verification_token_secret = secret

        async def on_after_forgot_password(
            self, user: User, token: str, request: Request | None = None
        ) -> None:
            text = f"Reset your password with this token:\n\n{token}\n"
            await deliver(user.email, "Reset your password", text, "forgot-password")

        async def on_after_request_verify(
            self, user: User, token: str, request: Request | None = None
        ) -> None:
            text = f"Verify your e-mail address with this token:\n\n{token}\n"
            await deliver(user.email, "Verify your e-mail address", text, "request-verify")

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def get_user_db(
        session: Annotated[AsyncSession, Depends(get_session)],
    ) -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
        yield SQLAlchemyUserDatabase(session, User)

    async def get_user_manager(
        user_db: Annotated[SQLAlchemyUserDatabase[User, uuid.UUID], Depends(get_user_db)],
    ) -> AsyncIterator[UserManager]:
        yield UserManager(user_db)

    def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
        return JWTStrategy(secret=secret, lifetime_seconds=3600)

    backend = AuthenticationBackend(
        name="jwt",
        transport=BearerTransport(tokenUrl="auth/jwt/login"),
        get_strategy=get_jwt_strategy,
    )
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        """Fresh tables and the tester's account, unverified, with a password nobody knows."""
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        async with sessions() as session:
            manager = UserManager(SQLAlchemyUserDatabase(session, User))
            await manager.create(UserCreate(email=seed_email, password=secrets.token_urlsafe(24)))
        yield
        await engine.dispose()

    app = FastAPI(title="fastapi-users target", lifespan=lifespan)

    @app.middleware("http")
    async def log_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        record = {
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
        }
        _append(root / "requests.jsonl", record)
        return response

    auth_router = users.get_auth_router(backend)
    reset_router = users.get_reset_password_router()
    verify_router = users.get_verify_router(UserRead)
    if hardened:
        _harden(auth_router, reset_router, verify_router, app)
    app.include_router(auth_router, prefix="/auth/jwt", tags=["auth"])
    app.include_router(
        users.get_register_router(UserRead, UserCreate), prefix="/auth", tags=["auth"]
    )
    app.include_router(reset_router, prefix="/auth", tags=["auth"])
    app.include_router(verify_router, prefix="/auth", tags=["auth"])
    app.include_router(
        users.get_users_router(UserRead, UserUpdate), prefix="/users", tags=["users"]
    )
    return app


def main() -> None:
    """Serve on loopback with the settings ``start_target`` passes in the environment."""
    import uvicorn

    root = Path(os.environ["PERISAI_TARGET_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    app = build_app(
        root,
        hardened=os.environ.get("PERISAI_TARGET_HARDENED") == "1",
        relay=_loopback(os.environ["PERISAI_TARGET_SMTP"]),
        seed_email=os.environ["PERISAI_TARGET_SINK_EMAIL"],
    )
    port = int(os.environ["PERISAI_TARGET_PORT"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
