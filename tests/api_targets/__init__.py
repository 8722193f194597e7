"""Real authentication frameworks from PyPI as ``audit-api`` targets, each in a vulnerable and a
hardened configuration, started on loopback with their mail and texts pointed at perisai's sinks.

Each target is a module here run as ``python -m tests.api_targets.<module>``. It reads its
settings from the environment (``PERISAI_TARGET_*`` below), seeds one account *the tester
owns* whose e-mail is the sink address and whose phone is the sink number, serves on
``127.0.0.1:$PERISAI_TARGET_PORT``, and appends one JSON line per request it receives
(``requests.jsonl``: method, path, status) and per message it sends (``messages.jsonl``:
channel ``sms``/``email``, ``to``) under ``$PERISAI_TARGET_DIR``. That is how the tests check
the safety rules from the target's side: no unsafe method received, no message to anyone but
the sinks. A module declares what perisai needs to audit it in a module-level ``TARGET``
dict (its heavy imports stay inside ``main()``):

- ``spec``: an OpenAPI document, a path on the server (``/openapi.json``) or a file beside the
  module (``file:NAME``);
- ``flows``: optional, a ``--flows`` file beside the module;
- ``known_account``: what ``--known-account`` is given (the seeded account's e-mail or phone,
  ``{sink_email}``/``{sink_phone}`` filled in).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from perisai.lab.instances import free_port

__all__ = [
    "FLAWS",
    "SINK_EMAIL",
    "SINK_PHONE",
    "TWIN_FLAWS",
    "RunningTarget",
    "audit_args",
    "reaches_only_sinks",
    "start_target",
]

SINK_EMAIL = "perisai-sink@example.org"
SINK_PHONE = "+447700900555"  # Ofcom's drama range: never a real subscriber
START_TIMEOUT = 60.0
HERE = Path(__file__).parent
ROOT = HERE.parent.parent

# What the lab's vulnerable API twin (src/perisai/lab/api_server.py) gets wrong
TWIN_FLAWS = frozenset(
    {
        "api.otp-send-unlimited",
        "api.otp-send-any-recipient",
        "api.otp-verify-bruteforce",
        "api.otp-in-response",
        "api.account-enumeration",
        "api.mail-relay",
        "api.no-challenge",
    }
)

# What each vulnerable configuration gets wrong, as its framework's settings make it (the
# hardened configurations get nothing wrong that perisai checks).
FLAWS = {
    # no rate limit at all; forgot-password and request-verify-token mail a token each time
    "fastapi_users_app": frozenset({"api.otp-send-unlimited", "api.no-challenge"}),
    # ACCOUNT_RATE_LIMITS = False, ACCOUNT_PREVENT_ENUMERATION = False, attempts uncapped
    "allauth_app": frozenset(
        {
            "api.otp-send-unlimited",
            "api.otp-verify-bruteforce",
            "api.account-enumeration",
            "api.no-challenge",
        }
    ),
    # no Flask-Limiter, SECURITY_RETURN_GENERIC_RESPONSES = False
    "flask_security_app": frozenset(
        {
            "api.otp-send-unlimited",
            "api.otp-verify-bruteforce",
            "api.account-enumeration",
            "api.login-enumeration",
            "api.no-challenge",
        }
    ),
}


def reaches_only_sinks(address: str) -> bool:
    """A recipient that is perisai's sink, Ofcom's drama range or RFC 2606's example.org."""
    return (
        address in (SINK_EMAIL, SINK_PHONE)
        or address.startswith("+447700900")
        or address.endswith("@example.org")
    )


@dataclass
class RunningTarget:
    """One framework app running on loopback, and where to read what it saw."""

    module: str
    hardened: bool
    base_url: str
    spec: str
    flows: Path | None
    known_account: str
    root: Path
    process: subprocess.Popen[bytes]

    def requests(self) -> list[dict[str, Any]]:
        return _jsonl(self.root / "requests.jsonl")

    def messages(self) -> list[dict[str, Any]]:
        return _jsonl(self.root / "messages.jsonl")

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def audit_args(target: RunningTarget, smtp: int, sms: int) -> list[str]:
    """``perisai audit-api`` arguments for ``target``, its sinks on these loopback ports."""
    args = [
        "audit-api",
        "--spec",
        target.spec,
        "--base-url",
        target.base_url,
        "--smtp-sink",
        f"127.0.0.1:{smtp}",
        "--sms-sink",
        f"127.0.0.1:{sms}",
        "--sink-email",
        SINK_EMAIL,
        "--sink-phone",
        SINK_PHONE,
        "--known-account",
        target.known_account,
        "--pace",
        "0",
        "--format",
        "json",
    ]
    if target.flows is not None:
        args += ["--flows", str(target.flows)]
    return args


def start_target(
    module: str,
    workdir: Path,
    *,
    hardened: bool,
    smtp: tuple[str, int],
    sms: tuple[str, int],
) -> RunningTarget:
    """Start ``tests.api_targets.<module>`` on a free 127.0.0.1 port; raise with its log when it
    does not answer within a minute."""
    meta: dict[str, Any] = importlib.import_module(f"tests.api_targets.{module}").TARGET
    root = workdir / f"{module}-{'hardened' if hardened else 'vulnerable'}"
    shutil.rmtree(root, ignore_errors=True)  # a fresh database and fresh logs every start
    root.mkdir(parents=True)
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "PERISAI_TARGET_PORT": str(port),
            "PERISAI_TARGET_DIR": str(root),
            "PERISAI_TARGET_HARDENED": "1" if hardened else "0",
            "PERISAI_TARGET_SMTP": f"{smtp[0]}:{smtp[1]}",
            "PERISAI_TARGET_SMS": f"http://{sms[0]}:{sms[1]}",
            "PERISAI_TARGET_SINK_EMAIL": SINK_EMAIL,
            "PERISAI_TARGET_SINK_PHONE": SINK_PHONE,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
    )
    with (root / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"tests.api_targets.{module}"],
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    spec = str(meta["spec"])
    spec = str(HERE / spec.removeprefix("file:")) if spec.startswith("file:") else base_url + spec
    flows = HERE / meta["flows"] if meta.get("flows") else None
    known = str(meta["known_account"]).format(sink_email=SINK_EMAIL, sink_phone=SINK_PHONE)
    target = RunningTarget(module, hardened, base_url, spec, flows, known, root, process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            httpx.get(base_url + "/", timeout=2, trust_env=False)
            return target
        except httpx.HTTPError:
            time.sleep(0.2)
    target.stop()
    raise RuntimeError(f"{module} did not start on {base_url}:\n{target.log()}")
