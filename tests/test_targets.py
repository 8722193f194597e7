"""Target and port parsing, and the authorisation rule for addresses outside private ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from perisai.targets import TargetError, check_scope, parse_ports, parse_target, parse_targets


def test_host_host_port_ipv6_and_cidr() -> None:
    assert parse_target("127.0.0.1").port is None
    assert parse_target("127.0.0.1:6379").port == 6379
    v6 = parse_target("[::1]:5432")
    assert (str(v6.network.network_address), v6.port) == ("::1", 5432)
    net = parse_target("127.0.0.0/30")
    assert list(net.addresses()) == ["127.0.0.1", "127.0.0.2"]
    assert list(parse_target("127.0.0.5/32").addresses()) == ["127.0.0.5"]


def test_localhost_resolves_to_loopback() -> None:
    spec = parse_target("localhost:6379")
    assert spec.network.is_loopback and spec.hostname == "localhost"


def test_target_file_with_comments(tmp_path: Path) -> None:
    listing = tmp_path / "targets.txt"
    listing.write_text("# lab\n127.0.0.1:6379  # redis\n\n127.0.0.2\n", encoding="utf-8")
    assert [t.text for t in parse_targets([f"@{listing}"])] == ["127.0.0.1:6379", "127.0.0.2"]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("not a target", "is not a target"),
        ("127.0.0.1:99999", "bad port"),
        ("127.0.0.1:http", "bad port"),
        ("10.0.0.0/33", "not a valid CIDR"),
        ("10.0.0.0/8", "split it"),
        ("[::1]6379", "IPv6 with a port"),
    ],
)
def test_bad_targets_say_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(TargetError, match=says):
        parse_target(spec)


def test_missing_target_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot read target file"):
        parse_targets([f"@{tmp_path / 'absent.txt'}"])


def test_ports() -> None:
    assert parse_ports("6379,15000-15002, 6379") == (6379, 15000, 15001, 15002)
    for bad in ("0", "70000", "20-10", "a-b", ","):
        with pytest.raises(TargetError):
            parse_ports(bad)


def test_public_addresses_need_authorized() -> None:
    private = parse_targets(["127.0.0.1", "10.1.2.3", "192.168.1.0/24", "[::1]:1"])
    check_scope(private, authorized=False)  # no error: loopback and private ranges
    public = parse_targets(["8.8.8.8"])  # parsed, never connected to
    with pytest.raises(TargetError, match="--authorized"):
        check_scope(public, authorized=False)
    check_scope(public, authorized=True)
