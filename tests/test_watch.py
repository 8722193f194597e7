"""``perisai watch`` end to end, against a real Redis that changes between rounds.

The Redis starts with a password (round 1: nothing to alert), is opened with CONFIG SET
(round 2: "opened"), then gets personal data and a ransom note (round 3: "compromised", the
loudest alert, and no separate "worse" for the same store). A webhook receiver on loopback
records what arrives; the metrics endpoint is read while the watch runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from perisai.lab import Instance, start_redis
from perisai.lab.instances import connect_redis, free_port
from perisai.lab.seed import RANSOM_NOTE
from perisai.probes import ScanConfig
from perisai.usecases import UseCaseError
from perisai.watch import (
    ALERT_SCHEMA,
    ChangeKind,
    Deliverer,
    Watcher,
    WatchMetrics,
    WatchPlan,
    WebhookSink,
)
from perisai.watch.alerts import Alert
from perisai.watch.allowlist import AllowList, load_allowlist
from perisai.watch.changes import Change
from perisai.watch.delivery import SendError
from tests.clirun import SRC

pytestmark = pytest.mark.servers

PHONE = "+60 12-345 6789"
EMAIL = "siti.aminah@example.org"
NOTE_KEY = "READ_ME_TO_RECOVER_YOUR_DATA"


class Receiver:
    """A webhook on loopback: records each JSON body; answers ``fail_first`` requests 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests += 1
                if receiver.requests <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet: the test reads what arrived, not a log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def redis_secured(tmp_path: Path) -> Iterator[Instance]:
    instance = start_redis("watched", tmp_path, exposed=False)
    yield instance
    instance.stop()


def _open(instance: Instance) -> None:
    """What a careless operator does: drop the password of a running server."""
    client = connect_redis(instance.host, instance.port, instance.password)
    client.config_set("requirepass", "")
    client.close()


def _compromise(instance: Instance) -> None:
    """Chat rows with personal data, then the extortioner's note (the server is open now)."""
    client = connect_redis(instance.host, instance.port)
    for n in range(5):
        client.set(f"chat:{n}", json.dumps({"from": PHONE, "to": EMAIL, "text": f"hi {n}"}))
    client.set(NOTE_KEY, RANSOM_NOTE)
    client.close()


def _kinds(receiver: Receiver) -> list[tuple[str, str]]:
    return [(body["kind"], body["finding"]["rule"]) for body in receiver.bodies]


EXPECTED = [
    ("opened", "redis.unauthenticated"),
    ("compromised", "compromise.ransom-note"),
]


_ENV = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(SRC))  # a line per round, at once


def _watch_command(redis: Instance, tmp_path: Path, *options: str) -> list[str]:
    """``perisai watch`` of one Redis with this checkout's sources, as a user runs it."""
    target = f"127.0.0.1:{redis.port}"
    store = str(tmp_path / "watch.db")
    return [
        sys.executable,
        "-m",
        "perisai",
        "watch",
        target,
        "--timeout",
        "1",
        "--db",
        store,
        *options,
    ]


def test_watch_alerts_once_per_change_in_order_masked(
    redis_secured: Instance, receiver: Receiver, tmp_path: Path
) -> None:
    """`perisai watch --rounds 3` as a user runs it: the receiver gets exactly the expected
    alerts in order, every one masked, and the metrics endpoint counts them."""
    metrics_port = free_port()
    command = _watch_command(
        redis_secured,
        tmp_path,
        *("--rounds", "3", "--every", "2s"),
        *("--alert-webhook", receiver.url, "--metrics-port", str(metrics_port)),
    )
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV
    ) as watch:
        assert watch.stdout is not None
        lines = []
        metrics = ""
        for line in watch.stdout:
            lines.append(line)
            if line.startswith("round 1:"):
                assert " 0 changes " in line, line
                _open(redis_secured)
            elif line.startswith("round 2:"):
                _compromise(redis_secured)
                metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        _, stderr = watch.communicate(timeout=60)
    assert watch.returncode == 0, stderr
    assert _kinds(receiver) == EXPECTED, (lines, stderr)
    for body in receiver.bodies:
        assert body["schema"] == ALERT_SCHEMA
        assert body["finding"]["target"]["port"] == redis_secured.port
        text = json.dumps(body)
        assert PHONE not in text and EMAIL not in text and "345 6789" not in text
    note = receiver.bodies[1]
    assert note["severity"] == "critical" and note["finding"]["ransom_note"]
    assert 'perisai_alerts_sent_total{kind="opened"} 1.0' in metrics
    assert 'perisai_open_stores{severity="high"} 1.0' in metrics
    assert "perisai_rounds_total 2.0" in metrics


def test_a_watch_counts_what_it_sent_and_saw(
    redis_secured: Instance, receiver: Receiver, tmp_path: Path
) -> None:
    """The library's watch, three rounds with the same changes: the last round's metrics say
    one critical open store, one ransom note, and each kind of alert sent once."""
    config = ScanConfig(timeout=1.0)
    plan = WatchPlan(
        targets=(f"127.0.0.1:{redis_secured.port}",),
        every=0.1,
        rounds=3,
        db=str(tmp_path / "watch.db"),
        config=config,
    )
    metrics = WatchMetrics()
    changes = {1: _open, 2: _compromise}

    def between_rounds(result: Any) -> None:
        step = changes.get(result.number)
        if step is not None:
            step(redis_secured)

    watcher = Watcher(
        plan, Deliverer([WebhookSink(receiver.url)]), metrics, on_round=between_rounds
    )
    results = watcher.run()
    assert [len(r.changes) for r in results] == [0, 1, 1]
    assert _kinds(receiver) == EXPECTED
    text = metrics.text()
    assert 'perisai_open_stores{severity="critical"} 1.0' in text
    assert "perisai_compromise_findings 1.0" in text
    assert 'perisai_alerts_sent_total{kind="compromised"} 1.0' in text
    assert "perisai_alerts_failed_total 0.0" in text
    # a fourth round, nothing changed: no alert again (one alert per change)
    again = Watcher(
        WatchPlan(plan.targets, every=0.1, rounds=1, db=plan.db, config=config),
        Deliverer([WebhookSink(receiver.url)]),
    ).run()
    assert again[0].changes == [] and len(receiver.bodies) == 2


def test_a_resolved_store_is_a_quiet_notice(
    redis_secured: Instance, receiver: Receiver, tmp_path: Path
) -> None:
    """Open in round 1, secured again before round 2: the second round says it is resolved."""
    _open(redis_secured)
    plan = WatchPlan(
        targets=(f"127.0.0.1:{redis_secured.port}",),
        every=0.1,
        rounds=2,
        db=str(tmp_path / "watch.db"),
        config=ScanConfig(timeout=1.0),
    )

    def close_it(result: Any) -> None:
        if result.number != 1:
            return
        client = connect_redis(redis_secured.host, redis_secured.port)
        client.config_set("requirepass", "s3cret-again-" + "x" * 12)
        client.close()

    Watcher(plan, Deliverer([WebhookSink(receiver.url)]), on_round=close_it).run()
    assert _kinds(receiver) == [
        ("opened", "redis.unauthenticated"),
        ("resolved", "redis.unauthenticated"),
    ]


def _alert() -> Alert:
    from tests.reports import redis_exposed

    return Alert(Change(ChangeKind.OPENED, redis_exposed()), 1, "2026-12-07T00:00:00+00:00", ())


def test_a_failing_webhook_is_retried_with_backoff() -> None:
    """Two 500s, then a 2xx: delivered on the third attempt, after waits of 1 and 2 units."""
    receiver = Receiver(fail_first=2)
    waits: list[float] = []
    try:
        report = Deliverer([WebhookSink(receiver.url)], attempts=4, backoff=0.5, sleep=waits.append)
        outcome = report.deliver([_alert()])
    finally:
        receiver.close()
    assert outcome.sent == 1 and outcome.failed == [] and outcome.pending == 0
    assert receiver.requests == 3 and waits == [0.5, 1.0]
    assert len(receiver.bodies) == 1


def test_an_undelivered_alert_is_reported_and_kept_for_the_next_round() -> None:
    """Every attempt fails: the failure is reported (sink, alert, why), the alert is kept, and
    the next delivery sends it first once the receiver is back."""
    receiver = Receiver(fail_first=3)
    try:
        deliverer = Deliverer([WebhookSink(receiver.url)], attempts=3, sleep=lambda _: None)
        first = deliverer.deliver([_alert()])
        assert first.sent == 0 and first.pending == 1
        [failure] = first.failed
        assert receiver.url in failure and "HTTP 500 (after 3 attempts)" in failure
        second = deliverer.deliver([])
    finally:
        receiver.close()
    assert second.sent == 1 and second.pending == 0 and len(receiver.bodies) == 1


def test_an_unreachable_webhook_fails_one_line_per_attempt() -> None:
    """Nothing listens: a connection error, not a hang, and nothing raised to the watch."""
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook")
    with pytest.raises(SendError, match="ConnectError"):
        sink.send(_alert())
    report = Deliverer([sink], attempts=2, sleep=lambda _: None).deliver([_alert()])
    assert report.sent == 0 and "after 2 attempts" in report.failed[0]


def test_a_stop_request_finishes_the_round_then_ends(
    redis_secured: Instance, tmp_path: Path
) -> None:
    """stop() during a round (as SIGTERM does): that round completes, no other starts."""
    plan = WatchPlan(
        targets=(f"127.0.0.1:{redis_secured.port}",),
        every=3600,
        db=str(tmp_path / "watch.db"),
        config=ScanConfig(timeout=1.0),
    )
    watcher = Watcher(plan, Deliverer([]))
    timer = threading.Timer(0.05, watcher.stop)
    timer.start()
    started = time.monotonic()
    results = watcher.run()
    timer.cancel()
    assert len(results) == 1 and results[0].report.scan_id is not None
    assert time.monotonic() - started < 3600  # the hour-long wait was cut short


def _allow(tmp_path: Path, text: str) -> AllowList:
    path = tmp_path / "allow.yaml"
    path.write_text(text, encoding="utf-8")
    return load_allowlist(path, date.today())


def test_a_reviewed_allow_list_entry_silences_until_it_expires(
    redis_secured: Instance, receiver: Receiver, tmp_path: Path
) -> None:
    """An accepted open Redis does not alert while its entry lives; the same finding with an
    expired entry alerts, and the round says the entry expired."""
    _open(redis_secured)
    where = f"127.0.0.1:{redis_secured.port}"
    entry = (
        f"- rule: redis.unauthenticated\n  target: '{where}'\n  reason: lab box (SEC-142)\n"
        "  reviewed_by: a.rahman\n  expires: {day}\n"
    )
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    for day, db, alerted in ((tomorrow, "live.db", []), (yesterday, "expired.db", ["opened"])):
        plan = WatchPlan(
            targets=(where,),
            rounds=1,
            db=str(tmp_path / db),
            config=ScanConfig(timeout=1.0),
            allow=_allow(tmp_path, entry.format(day=day)),
        )
        before = len(receiver.bodies)
        [result] = Watcher(plan, Deliverer([WebhookSink(receiver.url)])).run()
        assert [b["kind"] for b in receiver.bodies[before:]] == alerted
        assert result.silenced == (0 if alerted else 1)
        assert bool(result.notes) == bool(alerted)
        if alerted:
            assert "expired on" in result.notes[0] and "a.rahman" in result.notes[0]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "- rule: redis.unauthenticated\n  target: 'h:1'\n",
            "reason, reviewed_by, expires missing",
        ),
        (
            "- rule: compromise.ransom-note\n  target: 'h:1'\n  reason: r\n  reviewed_by: b\n"
            "  expires: 2026-12-31\n",
            "never silenced",
        ),
        ("- reason: r\n  reviewed_by: b\n  expires: 2026-12-31\n", "name a finding id"),
        ("- finding: abc\n  reason: r\n  reviewed_by: b\n  expires: soon\n", "must be a date"),
        ("- finding: abc\n  reason: r\n  reviewed_by: b\n  expires: 2099-01-01\n", "a year ahead"),
        ("{not: [a list", "is not YAML"),
    ],
)
def test_a_bad_allow_list_is_one_clear_error(tmp_path: Path, text: str, said: str) -> None:
    with pytest.raises(UseCaseError) as caught:
        _allow(tmp_path, text)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_compromise_is_never_silenced(tmp_path: Path) -> None:
    """Even an entry naming the exact finding id does not hide a ransom note."""
    from tests.reports import redis_exposed

    note = replace(redis_exposed(), rule="compromise.ransom-note", object="README")
    allow = _allow(
        tmp_path,
        f"- finding: {note.id}\n  reason: r\n  reviewed_by: b\n  expires: {date.today()}\n",
    )
    assert allow.silences(note, date.today()) is None
    assert allow.silences(redis_exposed(), date.today()) is None  # another finding


def test_sigterm_ends_the_watch_cleanly_after_its_round(
    redis_secured: Instance, tmp_path: Path
) -> None:
    """`systemctl stop`: SIGTERM in the hour-long wait after round 1 ends the watch at once,
    exit 0, the round saved."""
    command = _watch_command(redis_secured, tmp_path, "--every", "1h")
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV
    ) as watch:
        assert watch.stdout is not None
        first = watch.stdout.readline()
        watch.terminate()
        rest, stderr = watch.communicate(timeout=30)
    assert first.startswith("round 1: scan 1 ")
    assert watch.returncode == 0, stderr
    assert "SIGTERM: finishing this round, then stopping (again to stop at once)" in stderr
    assert "round 2" not in rest


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    """Asked twice (an impatient Ctrl-C), the watch stops mid-round, says what is dropped, and
    exits 128 + the signal; one request still finishes the round (the test above)."""
    # a port that takes connections and never answers: every fingerprint waits its timeout
    with socket.create_server(("127.0.0.1", 0), backlog=128) as silent:
        port = silent.getsockname()[1]
        command = [
            *(sys.executable, "-m", "perisai", "watch", f"127.0.0.1:{port}"),
            *("--timeout", "5", "--every", "1h", "--db", str(tmp_path / "watch.db")),
        ]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV
        ) as watch:
            time.sleep(2.0)
            watch.send_signal(signal.SIGINT)
            time.sleep(0.3)
            watch.send_signal(signal.SIGINT)
            out, stderr = watch.communicate(timeout=30)
    assert watch.returncode == 128 + signal.SIGINT, stderr
    assert "SIGINT: finishing this round" in stderr
    assert "SIGINT again: stopping now; this round's scan and alerts are dropped" in stderr
    assert "round 1" not in out and "Traceback" not in stderr
