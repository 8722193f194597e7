"""The names of the guard's state, and which of them share a Redis Cluster slot.

A key's ``{…}`` part is its hash tag: on a Redis Cluster, keys with one tag share a slot, and
one Lua script can only touch one slot. The state is tagged by what it is about (a number, a
client address, a network, a country, an account) so that the load spreads over the
cluster's nodes. One rule binds two scopes: a decision admits a number's prefix rate only
when the number was never verified (:class:`~perisai.guard.interface.Gate`'s flag), so the
flag and the prefix's keys carry the same tag, the number's *block*: the number minus its
last :data:`BLOCK_DIGITS` digits, which holds every prefix the policy can ask for
(``prefix_drop_digits`` is at most 6). Every key of one number has that tag too.
"""

from __future__ import annotations

__all__ = [
    "BLOCK_DIGITS",
    "account_email",
    "block",
    "code",
    "known",
    "number_prefix",
    "pending",
    "recipient",
    "source",
    "spend",
    "verification",
    "verify_attempts",
]

BLOCK_DIGITS = 6


def block(e164: str) -> str:
    """The hash tag of a number's keys: ``{+62812…}`` without its last six digits."""
    return "{" + e164[: max(2, len(e164) - BLOCK_DIGITS)] + "}"


def _of(recipient_id: str) -> str:
    """A recipient's tag: its number's block, or the whole e-mail address."""
    return "{" + recipient_id + "}" if "@" in recipient_id else block(recipient_id)


def recipient(space: str, recipient_id: str) -> str:
    """The rate of sends to one recipient (``space`` ``s`` for SMS, ``e`` for e-mail)."""
    return f"{space}:to:{_of(recipient_id)}{recipient_id}"


def known(e164: str) -> str:
    """Set once a number verified: it skips pumping checks and its prefix's rate."""
    return f"known:{block(e164)}{e164}"


def number_prefix(e164: str, prefix: str) -> str:
    """The rate of sends to a number prefix, in the slot of the numbers it holds."""
    return f"s:pfx:{block(e164)}{prefix}"


def source(space: str, kind: str, value: str) -> str:
    """The rate from one client address, network, device or account."""
    return f"{space}:{kind}:{{{value}}}"


def verify_attempts(recipient_id: str) -> str:
    return f"va:{_of(recipient_id)}{recipient_id}"


def code(recipient_id: str) -> str:
    return f"code:{_of(recipient_id)}{recipient_id}"


def pending(recipient_id: str) -> str:
    """The sends still waiting for this recipient's verification (pumping credit)."""
    return f"qp:{_of(recipient_id)}{recipient_id}"


def verification(verification_id: str) -> str:
    """Attempts on one code."""
    return f"vc:{{{verification_id}}}"


def account_email(account: str) -> str:
    """The e-mail address an account verified."""
    return f"acctmail:{{{account}}}"


def spend(period: str) -> str:
    """SMS spend in one hour (``h…``) or day (``d…``): one global counter each."""
    return f"sp:{{spend}}:{period}"
