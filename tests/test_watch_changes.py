"""What a watch alerts on, decided from two rounds' findings (no server): one alert per
change, the loudest first, reminders only when due; and the Slack and e-mail shapes, the
latter delivered to a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

from dataclasses import replace
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller

from perisai.findings import DataProfile, ScanDiff, Severity
from perisai.lab.instances import free_port
from perisai.watch import Alert, ChangeKind, Deliverer, EmailSink, changes_between
from perisai.watch.changes import Change
from tests.reports import redis_exposed, redis_secured, report

OPEN_EMPTY = replace(redis_exposed(), severity=Severity.HIGH, data=DataProfile())
NOTE = replace(redis_exposed(), rule="compromise.ransom-note", title="Ransom note", object="README")


def _kinds(previous: list[Any], current: list[Any], **options: Any) -> list[tuple[str, str]]:
    diff = ScanDiff.between(report(*current), report(*previous) if previous else None)
    return [(c.kind.value, c.finding.rule) for c in changes_between(diff, **options)]


def test_the_first_round_alerts_on_what_is_already_open_never_on_info() -> None:
    assert _kinds([], [redis_exposed(), redis_secured()]) == [("opened", "redis.unauthenticated")]


def test_an_open_store_alerts_once() -> None:
    assert _kinds([redis_exposed()], [redis_exposed()]) == []


def test_personal_data_appearing_is_worse() -> None:
    assert _kinds([OPEN_EMPTY], [redis_exposed()]) == [("worse", "redis.unauthenticated")]


def test_a_ransom_note_is_the_loudest_and_the_only_alert_for_its_store() -> None:
    """The note makes the exposure critical too; one alert says it, not two."""
    kinds = _kinds([OPEN_EMPTY, redis_secured(port=6390)], [redis_exposed(), NOTE, OPEN_EMPTY])
    assert kinds == [("compromised", "compromise.ransom-note")]


def test_resolved_is_last_and_only_for_what_alerted() -> None:
    kinds = _kinds([redis_exposed(), redis_secured()], [NOTE])
    assert kinds == [
        ("compromised", "compromise.ransom-note"),
        ("resolved", "redis.unauthenticated"),
    ]


def test_a_reminder_only_once_the_interval_has_passed() -> None:
    finding = redis_exposed()
    alerted = {finding.id: 1000.0}
    kept = {"last_alerted": alerted, "remind_after": 3600.0}
    assert _kinds([finding], [finding], now=1000.0 + 3599, **kept) == []
    assert _kinds([finding], [finding], now=1000.0 + 3600, **kept) == [
        ("reminder", "redis.unauthenticated")
    ]


def _alert(kind: ChangeKind = ChangeKind.OPENED) -> Alert:
    return Alert(Change(kind, redis_exposed()), 7, "2026-12-07T01:00:00+00:00", ("127.0.0.1",))


def test_slack_gets_its_incoming_webhook_shape() -> None:
    message = _alert().slack()
    assert set(message) == {"text"}
    assert message["text"].startswith(
        "[perisai] newly exposed: redis 127.0.0.1:6379: Redis readable without authentication"
    )
    assert "\n>PING answered +PONG without AUTH" in message["text"]


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


def test_an_e_mail_alert_reaches_a_real_smtp_server() -> None:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        sink = EmailSink("secops@example.org", "127.0.0.1", controller.port)
        delivery = Deliverer([sink], attempts=1).deliver([_alert(ChangeKind.COMPROMISED)])
    finally:
        controller.stop()
    assert delivery.sent == 1
    [(sender, recipients, content)] = inbox.messages
    assert (sender, recipients) == ("perisai-watch@localhost", ["secops@example.org"])
    mail = message_from_bytes(content)
    assert str(mail["Subject"]).startswith("[perisai] COMPROMISED: redis 127.0.0.1:6379")
    body = mail.get_payload()
    assert isinstance(body, str)
    assert "+60 12-*** **89" in body and "fix: " in body and "scan 7 started" in body


def test_an_unreachable_relay_is_a_failed_delivery_not_a_crash() -> None:
    sink = EmailSink("secops@example.org", "127.0.0.1", free_port())
    delivery = Deliverer([sink], attempts=2, sleep=lambda _: None).deliver([_alert()])
    assert delivery.sent == 0 and "e-mail secops@example.org" in delivery.failed[0]
