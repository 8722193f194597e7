"""``perisai watch``: scan an estate on a schedule and tell a human when it gets worse.

:mod:`~perisai.watch.changes` decides what changed (reusing ``report --diff``'s comparison),
:mod:`~perisai.watch.alerts` shapes the alerts, :mod:`~perisai.watch.delivery` sends them
with retries, :mod:`~perisai.watch.metrics` serves Prometheus metrics, and
:mod:`~perisai.watch.loop` runs the rounds.
"""

from perisai.watch.alerts import ALERT_SCHEMA, Alert
from perisai.watch.changes import Change, ChangeKind, changes_between
from perisai.watch.delivery import Deliverer, EmailSink, SlackSink, WebhookSink
from perisai.watch.loop import RoundResult, Watcher, WatchPlan, check_plan
from perisai.watch.metrics import WatchMetrics

__all__ = [
    "ALERT_SCHEMA",
    "Alert",
    "Change",
    "ChangeKind",
    "Deliverer",
    "EmailSink",
    "RoundResult",
    "SlackSink",
    "WatchMetrics",
    "WatchPlan",
    "Watcher",
    "WebhookSink",
    "changes_between",
    "check_plan",
]
