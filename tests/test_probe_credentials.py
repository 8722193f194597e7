"""The one loader of vendor-default logins (``probes/defaults/<service>.txt``), on its own."""

from __future__ import annotations

from perisai.probes import probe_classes
from perisai.probes.credentials import (
    Credential,
    default_credentials,
    default_logins,
    mask_secret,
    parse_credentials,
)

SAMPLE = "\n".join(
    (
        "# a comment",
        "admin:admin",
        "  root:pa:ss  ",
        "s3cr3t",
        "",
        "admin:admin",
        "#root:commented-out",
        ":empty-user",
    )
)


def test_lines_comments_blanks_and_duplicates() -> None:
    assert parse_credentials(SAMPLE) == (
        Credential("admin", "admin"),
        Credential("root", "pa:ss"),  # split at the first colon only; the line is stripped
        Credential(None, "s3cr3t"),  # a bare line is a password (or token) alone
        Credential("", "empty-user"),  # an empty user is a user (MySQL's anonymous one)
    )


def test_a_bare_password_belongs_to_the_superuser_only_where_asked() -> None:
    bare, named = Credential(None, "s3cr3t"), Credential("ruser", "T0pS3cr3t")
    assert bare.user_or("root") == "root" and named.user_or("root") == "ruser"
    assert bare.describe() == "token s3***"
    assert bare.describe("guest") == "guest/s3***"
    assert named.describe("guest") == "ruser/T0***"
    assert mask_secret("abc") == "***" and mask_secret("abcd") == "ab***"


def test_a_missing_file_means_no_defaults() -> None:
    assert default_credentials("no-such-service") == ()
    assert default_logins("no-such-service", "admin") == ()


def test_redis_and_postgres_defaults_come_from_their_files() -> None:
    assert default_credentials("redis") == tuple(
        Credential(None, password)
        for password in ("foobared", "redis", "password", "123456", "admin")
    )
    assert default_logins("postgres", "postgres") == (
        ("postgres", "postgres"),
        ("postgres", "password"),
        ("postgres", "admin"),
        ("postgres", "123456"),
    )


def test_every_defaults_file_is_a_short_list() -> None:
    for probe in probe_classes():
        assert len(default_credentials(probe.service)) <= 12, probe.service
