"""A messaging service's JSON-lines log, shaped like the one in the breach perisai was built for.

The labeled corpus (``corpus.py``) is the worst case for speed: every value is new and most
lines are dense with entities and look-alikes. A live service's log is different: a bounded
population of users appears again and again (the same phone numbers, addresses and IPs), most
lines are request logs with one IP address, and a share carry chat messages with sender,
recipient and GPS position. This module writes such a log, deterministically, for the speed
benchmark; its values come from ``corpus._Maker`` so they are as valid as the labeled ones.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from benchmarks.corpus import _EPOCH, _Maker

USERS = 5000  # active users in the log's window
# Line kinds and their shares: (kind, weight).
MIX = (
    ("http", 45),
    ("message", 25),
    ("otp", 8),
    ("login", 8),
    ("debug", 10),
    ("payment", 4),
)
_PATHS = ("/v1/messages", "/v1/contacts/sync", "/v1/profile", "/v1/media/upload", "/v1/keys")
_AGENTS = ("okhttp/4.12.0", "CFNetwork/1490.0.4 Darwin/23.2.0", "Dart/3.2 (dart:io)")


@dataclass(frozen=True)
class _User:
    msisdn: str
    email: str
    name: str
    ic: str
    ip: str
    lat: float
    lon: float
    device: str


def _users(maker: _Maker, count: int) -> list[_User]:
    rnd = maker.rnd
    users = []
    for _ in range(count):
        phone, _style = maker.phone()
        digits = "".join(ch for ch in phone if ch.isdigit())
        users.append(
            _User(
                msisdn=digits if not phone.startswith("0") else "60" + digits[1:],
                email=f"{maker.fake.user_name()}@example.{rnd.choice(('com', 'org', 'net'))}",
                name=f"{maker.fake.first_name()} {maker.fake.last_name()}",
                ic=maker.mykad(),
                ip=maker.ip(),
                lat=round(rnd.uniform(1.2, 6.7), 6),
                lon=round(rnd.uniform(100.1, 119.2), 6),
                device=maker.uuid(),
            )
        )
    return users


def _line(maker: _Maker, users: list[_User], messages: list[str], index: int) -> dict[str, object]:
    rnd = maker.rnd
    kind = rnd.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
    user = rnd.choice(users)
    stamp = _EPOCH + timedelta(milliseconds=index * 37 + rnd.randint(0, 36))
    record: dict[str, object] = {
        "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": "INFO",
        "request_id": maker.uuid(),
    }
    if kind == "http":
        record |= {
            "event": "http.request",
            "method": rnd.choice(("GET", "POST")),
            "path": rnd.choice(_PATHS),
            "status": rnd.choice((200, 200, 200, 201, 204, 304, 401, 404)),
            "latency_ms": rnd.randint(2, 900),
            "client_ip": user.ip,
            "user_agent": rnd.choice(_AGENTS),
        }
    elif kind == "message":
        peer = rnd.choice(users)
        record |= {
            "event": "message.sent",
            "sender": user.msisdn,
            "recipient": peer.msisdn,
            "body": rnd.choice(messages),
            "lat": user.lat,
            "lon": user.lon,
            "device_id": user.device,
        }
    elif kind == "otp":
        code = maker.digits(6)
        record |= {
            "event": "otp.sent",
            "msisdn": user.msisdn,
            "sms_text": f"Your TAC is {code}. Do not share it with anyone.",
            "gateway": "sms-gw-2",
        }
    elif kind == "login":
        record |= {
            "event": "auth.login",
            "email": user.email,
            "ip": user.ip,
            "device_id": user.device,
            "mfa": rnd.choice((True, False)),
        }
    elif kind == "payment":
        record |= {
            "event": "payment.created",
            "customer_name": user.name,
            "ic": user.ic,
            "amount_myr": round(rnd.uniform(5, 500), 2),
            "order_no": f"ORD-2026-{rnd.randint(0, 999_999):06d}",
        }
    else:
        record |= {
            "level": "DEBUG",
            "event": "db.slow_query",
            "query": "SELECT id, created_at FROM messages WHERE thread_id = $1 LIMIT 50",
            "duration_ms": rnd.randint(200, 4000),
            "app_version": f"4.{rnd.randint(0, 30)}.{rnd.randint(0, 9)}",
        }
    return record


def write_app_log(path: Path, target_bytes: int, seed: int = 7, users: int = USERS) -> int:
    """Write the log until at least ``target_bytes``; returns the bytes written."""
    maker = _Maker(seed)
    population = _users(maker, users)
    messages = [maker.message() for _ in range(20_000)]
    written = 0
    index = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        while written < target_bytes:
            line = json.dumps(_line(maker, population, messages, index)) + "\n"
            handle.write(line)
            written += len(line.encode())
            index += 1
    return written


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--mb", type=float, default=100)
    args = parser.parse_args()
    print(write_app_log(args.path, int(args.mb * 1e6)))


if __name__ == "__main__":
    random.seed(0)
    _main()
