"""The vendor-default logins probes try, read from ``probes/defaults/<service>.txt``.

One file per service, one login a line: ``user:password`` (split at the first colon, so a
password may hold colons) or a bare line, which is a password alone: a token for NATS, the
``requirepass`` for Redis, and where every login names a user, the password of the service's
usual superuser (``root`` for MySQL, ``admin`` for MongoDB; see :meth:`Credential.user_or`).
Blank lines and lines starting with ``#`` are skipped, a login listed twice is tried once, and
a missing file means there is nothing to try. The lists are short on purpose: a probe tries
each login once, after the anonymous attempt, and never guesses more.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

__all__ = [
    "Credential",
    "default_credentials",
    "default_logins",
    "mask_secret",
    "parse_credentials",
]


@dataclass(frozen=True)
class Credential:
    """One vendor-default login. ``user`` is None for a password (or token) alone."""

    user: str | None
    password: str

    def user_or(self, superuser: str) -> str:
        """The user to log in as: ``superuser`` for a password alone."""
        return superuser if self.user is None else self.user

    def describe(self, superuser: str | None = None) -> str:
        """``guest/gu***`` for evidence, or ``token s3***`` for a password alone (when there is
        no ``superuser`` it belongs to): defaults are public, but no password is shown whole."""
        user = superuser if self.user is None else self.user
        secret = mask_secret(self.password)
        return f"token {secret}" if user is None else f"{user}/{secret}"


def mask_secret(secret: str) -> str:
    """``gu***``: the first two characters of a password longer than three, else ``***``."""
    return (secret[:2] + "***") if len(secret) > 3 else "***"


def default_credentials(service: str) -> tuple[Credential, ...]:
    """The logins in ``defaults/<service>.txt``, in file order, each once (a bare line is
    ``Credential(None, line)``); empty when the service has no such file."""
    entry = resources.files("perisai.probes") / "defaults" / f"{service}.txt"
    try:
        text = entry.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return ()
    return parse_credentials(text)


def parse_credentials(text: str) -> tuple[Credential, ...]:
    """The logins in the text of a defaults file (the format is in this module's docstring)."""
    found: dict[Credential, None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, password = line.partition(":")
        found[Credential(user, password) if colon else Credential(None, line)] = None
    return tuple(found)


def default_logins(service: str, superuser: str) -> tuple[tuple[str, str], ...]:
    """``(user, password)`` pairs for a service whose logins always name a user, a password
    alone being ``superuser``'s; in file order, each pair once."""
    logins = ((c.user_or(superuser), c.password) for c in default_credentials(service))
    return tuple(dict.fromkeys(logins))
