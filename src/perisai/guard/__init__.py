"""perisai guard: a run-time shield for OTP, SMS and e-mail flows, and a self-hosted Verify API.

from perisai.guard import Guard
guard = Guard()  # defaults, in-memory state
decision = guard.check("send_otp", to="+60123456789", ip="203.0.113.9")
if decision.allowed:
    ...  # send, then guard.record("sent", "+60123456789", ip="203.0.113.9")
"""

from __future__ import annotations

from perisai.guard.backends import DEFAULT_STATE, open_backend
from perisai.guard.config import FailMode, GuardConfig, GuardConfigError, Mode, load_config
from perisai.guard.engine import Guard, Started, VerifyOutcome, VerifyStatus
from perisai.guard.interface import Action, Backend, BackendError, Decision, Event, Verdict

__all__ = [
    "DEFAULT_STATE",
    "Action",
    "Backend",
    "BackendError",
    "Decision",
    "Event",
    "FailMode",
    "Guard",
    "GuardConfig",
    "GuardConfigError",
    "Mode",
    "Started",
    "Verdict",
    "VerifyOutcome",
    "VerifyStatus",
    "load_config",
    "open_backend",
]
