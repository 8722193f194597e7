"""Targets from other tools' files: real nmap XML (made on loopback with nmap 7.93 -sV
against a lab Redis), and masscan and Shodan samples written to their documented formats
(masscan's README for -oJ/-oL; Shodan's banner specification for the JSON-lines export).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from perisai.lab import Instance, start_redis
from perisai.target_files import ImportedTarget, read_masscan, read_nmap, read_shodan
from perisai.targets import TargetError
from tests.clirun import perisai

DATA = Path(__file__).parent / "data"


def test_nmap_xml_gives_the_open_ports_with_nmap_s_guess_as_a_hint() -> None:
    """The closed port nmap also reported is not a target."""
    assert read_nmap(DATA / "nmap-loopback.xml") == [
        ImportedTarget("127.0.0.1", 34399, "Redis key-value store")
    ]


def test_masscan_json_and_list_outputs() -> None:
    """Its trailing commas tolerated; UDP ports and repeats left out."""
    assert read_masscan(DATA / "masscan-oJ.json") == [
        ImportedTarget("127.0.0.1", 6379),
        ImportedTarget("127.0.0.1", 5432),
    ]
    assert read_masscan(DATA / "masscan-oL.txt") == [
        ImportedTarget("127.0.0.1", 6379),
        ImportedTarget("127.0.0.1", 11211),
    ]


def test_a_gzipped_shodan_export_gives_tcp_services_with_their_product() -> None:
    assert read_shodan(DATA / "shodan-export.json.gz") == [
        ImportedTarget("127.0.0.1", 9200, "Elastic"),
        ImportedTarget("127.0.0.1", 27017, "mongodb"),  # no product: the module names it
    ]


@pytest.mark.parametrize(
    ("reader", "content", "said"),
    [
        (read_nmap, b"<html><body>not nmap</body></html>", "not nmap XML (-oX): root is <html>"),
        (read_nmap, b"<nmaprun><host>", "not nmap XML (-oX)"),
        (
            read_nmap,
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<nmaprun>&b;</nmaprun>",
            "not nmap XML (-oX)",  # entities refused, never expanded
        ),
        (read_masscan, b"open tcp 6379\n", "line 1: not -oL output"),
        (read_masscan, b"[\n{ not json },\n]\n", "line 2: not -oJ output"),
        (read_shodan, b'{"ip_str": "127.0.0.1"}\n', "line 1: no ip_str and port"),
        (read_shodan, b'{"ip_str": "localhost", "port": 1}\n', "'localhost' is not an IP address"),
        (read_shodan, b'{"ip_str": "127.0.0.1", "port": 70000}\n', "'70000' is not a port"),
    ],
)
def test_a_bad_file_is_one_clear_error(
    tmp_path: Path, reader: object, content: bytes, said: str
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    with pytest.raises(TargetError, match=None) as caught:
        reader(path)  # type: ignore[operator]
    assert said in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.servers
def test_a_scan_from_an_export_trusts_the_answer_not_the_hint(tmp_path: Path) -> None:
    """The export calls the port nginx; perisai identifies the Redis that answers there, finds
    it open, and notes the disagreement; the exit code follows the finding."""
    redis: Instance = start_redis("exported", tmp_path, exposed=True)
    try:
        export = tmp_path / "export.json.gz"
        record = {"ip_str": "127.0.0.1", "port": redis.port, "transport": "tcp", "product": "nginx"}
        with gzip.open(export, "wt") as out:
            out.write(json.dumps(record) + "\n")
        done = perisai(
            "scan", "--from-shodan", str(export), "--no-store", "--format", "json", "--timeout", "1"
        )
    finally:
        redis.stop()
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert {f["rule"] for f in report["findings"]} == {"redis.unauthenticated"}
    assert report["targets"] == [f"127.0.0.1:{redis.port}"]
    assert (
        f"127.0.0.1:{redis.port}: the imported file said 'nginx'; perisai identified redis"
        in done.stderr
    )


def test_scan_with_no_target_at_all_says_how_to_give_one() -> None:
    done = perisai("scan", "--no-store")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "perisai: error: nothing to scan: give targets, or --from-nmap/--from-masscan/--from-shodan"
    )
    missing = perisai("scan", "--from-nmap", "/nonexistent/scan.xml", "--no-store")
    assert (
        missing.returncode == 2 and "cannot read nmap file /nonexistent/scan.xml" in missing.stderr
    )
