"""What a report reader needs beside a finding: how to check it, how to fix it, where to read.

Keyed on the service name and rule id a finding carries, never on protocol details: the
commands are the read-only ones an operator types to see the exposure for themselves (each
matching what the probe itself sent), the config lines are what closes it. A service not
listed here gets generic advice; nothing here ever comes from the scanned server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perisai.findings import Finding, Rule

# {host} and {port} are filled in from the finding's target (quoted for a shell).
VERIFY_COMMANDS: dict[str, tuple[str, ...]] = {
    "redis": (
        "redis-cli -h {host} -p {port} PING",
        "redis-cli -h {host} -p {port} INFO keyspace",
        "redis-cli -h {host} -p {port} --scan --count 100 | head",
    ),
    "postgres": (
        "psql -h {host} -p {port} -U postgres -w -c '\\l'",
        "psql -h {host} -p {port} -U postgres -w -c 'SELECT relname, reltuples FROM pg_class "
        "WHERE relkind = '\\''r'\\'' ORDER BY reltuples DESC LIMIT 20'",
    ),
    "mysql": (
        "mysql -h {host} -P {port} -u root --skip-password -e 'SHOW DATABASES'",
        "mysql -h {host} -P {port} -u root --skip-password -e 'SELECT table_schema, "
        "table_name, table_rows FROM information_schema.tables LIMIT 20'",
    ),
    "mongodb": (
        "mongosh --host {host} --port {port} --quiet "
        "--eval 'db.adminCommand({{listDatabases: 1}})'",
    ),
    "elasticsearch": (
        "curl -s http://{host}:{port}/",
        "curl -s 'http://{host}:{port}/_cat/indices?v'",
    ),
    "kibana": ("curl -s http://{host}:{port}/api/status",),
    "couchdb": (
        "curl -s http://{host}:{port}/",
        "curl -s http://{host}:{port}/_all_dbs",
    ),
    "clickhouse": ("curl -s 'http://{host}:{port}/?query=SHOW%20DATABASES'",),
    "influxdb": ("curl -s 'http://{host}:{port}/query?q=SHOW%20DATABASES'",),
    "etcd": ("etcdctl --endpoints=http://{host}:{port} get / --prefix --keys-only --limit=20",),
    "rabbitmq": (
        "curl -s -u guest:guest http://{host}:{port}/api/overview",
        "curl -s -u guest:guest http://{host}:{port}/api/queues",
    ),
    "mqtt": ("mosquitto_sub -h {host} -p {port} -t '#' -v -C 10 -W 5",),
    "nats": ("nats --server nats://{host}:{port} server info",),
    "memcached": ("printf 'stats\\r\\nquit\\r\\n' | nc {host} {port}",),
    "zookeeper": (
        "echo srvr | nc {host} {port}",
        "zkCli.sh -server {host}:{port} ls /",
    ),
}

# Lines to put in the service's configuration; a comment line says which file.
CONFIG_LINES: dict[str, tuple[str, ...]] = {
    "redis": (
        "# redis.conf",
        "requirepass <a long random secret>",
        "bind 127.0.0.1 10.0.0.5",
        "protected-mode yes",
        'rename-command CONFIG ""',
    ),
    "postgres": (
        "# pg_hba.conf: no `trust` lines for hosts",
        "host    all    all    10.0.0.0/8    scram-sha-256",
        "# postgresql.conf",
        "listen_addresses = 'localhost,10.0.0.5'",
        "password_encryption = scram-sha-256",
    ),
    "mysql": (
        "# my.cnf [mysqld]",
        "bind-address = 127.0.0.1",
        "# and give root a password:",
        "ALTER USER 'root'@'%' IDENTIFIED BY '<a long random secret>';",
    ),
    "mongodb": (
        "# mongod.conf",
        "security:",
        "  authorization: enabled",
        "net:",
        "  bindIp: 127.0.0.1,10.0.0.5",
    ),
    "elasticsearch": (
        "# elasticsearch.yml",
        "xpack.security.enabled: true",
        "network.host: 10.0.0.5",
    ),
    "kibana": (
        "# kibana.yml",
        'server.host: "127.0.0.1"',
        'elasticsearch.username: "kibana_system"',
    ),
    "couchdb": (
        "# local.ini",
        "[admins]",
        "admin = <a long random secret>",
        "[chttpd]",
        "bind_address = 127.0.0.1",
        "require_valid_user = true",
    ),
    "clickhouse": (
        "<!-- users.d/default.xml -->",
        "<password_sha256_hex>…</password_sha256_hex>",
        "<networks><ip>10.0.0.0/8</ip></networks>",
        "<!-- config.d/listen.xml -->",
        "<listen_host>127.0.0.1</listen_host>",
    ),
    "influxdb": (
        "# influxdb.conf [http]",
        "auth-enabled = true",
        'bind-address = "127.0.0.1:8086"',
    ),
    "etcd": (
        "# etcd flags",
        "--client-cert-auth=true",
        "--listen-client-urls=https://10.0.0.5:2379",
        "etcdctl auth enable",
    ),
    "rabbitmq": (
        "# rabbitmq.conf",
        "loopback_users.guest = true",
        "# and delete the guest user where it is not needed:",
        "rabbitmqctl delete_user guest",
    ),
    "mqtt": (
        "# mosquitto.conf",
        "allow_anonymous false",
        "password_file /etc/mosquitto/passwd",
        "listener 1883 127.0.0.1",
    ),
    "nats": (
        "# nats-server.conf",
        'authorization { token: "<a long random secret>" }',
        "listen: 127.0.0.1:4222",
    ),
    "memcached": (
        "# /etc/memcached.conf",
        "-l 127.0.0.1",
        "-U 0",
        "-S   # SASL authentication",
    ),
    "zookeeper": (
        "# zoo.cfg",
        "clientPortAddress=127.0.0.1",
        "4lw.commands.whitelist=srvr",
        "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    ),
}

GENERIC_VERIFY = ("nc -vz {host} {port}",)
GENERIC_CONFIG = (
    "# require authentication, listen on a private interface only,",
    "# and block the port from the internet at the firewall",
)

# OWASP API Security Top 10 (2023) ids, by the last part of a rule id.
_OWASP_API: dict[str, tuple[str, ...]] = {
    "unauthenticated": ("OWASP API8:2023 Security Misconfiguration",),
    "default-credentials": (
        "OWASP API2:2023 Broken Authentication",
        "OWASP API8:2023 Security Misconfiguration",
    ),
    "otp-bombing": (
        "OWASP API4:2023 Unrestricted Resource Consumption",
        "OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",
    ),
    "sms-pumping": (
        "OWASP API4:2023 Unrestricted Resource Consumption",
        "OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",
    ),
    "otp-brute-force": ("OWASP API2:2023 Broken Authentication",),
    "mail-relay": ("OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",),
    # audit-api's rules
    "otp-send-unlimited": (
        "OWASP API4:2023 Unrestricted Resource Consumption",
        "OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",
    ),
    "otp-send-any-recipient": ("OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",),
    "otp-verify-bruteforce": ("OWASP API2:2023 Broken Authentication",),
    "otp-in-response": ("OWASP API2:2023 Broken Authentication",),
    "account-enumeration": ("OWASP API2:2023 Broken Authentication",),
    "login-enumeration": ("OWASP API2:2023 Broken Authentication",),
    "no-challenge": ("OWASP API6:2023 Unrestricted Access to Sensitive Business Flows",),
}
_CWE_BY_SUFFIX: dict[str, str] = {
    "unauthenticated": "CWE-306",
    "default-credentials": "CWE-1392",
    "ransom-note": "CWE-306",
    "planted-payload": "CWE-506",
    "otp-bombing": "CWE-799",
    "sms-pumping": "CWE-799",
    "otp-brute-force": "CWE-307",
    "mail-relay": "CWE-799",
    "otp-send-unlimited": "CWE-799",
    "otp-send-any-recipient": "CWE-799",
    "otp-verify-bruteforce": "CWE-307",
    "otp-in-response": "CWE-200",
    "account-enumeration": "CWE-204",
    "login-enumeration": "CWE-204",
    "no-challenge": "CWE-799",
}
_CWE_URL = re.compile(r"cwe\.mitre\.org/data/definitions/(\d+)\.html")
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_.:/\-]+")


@dataclass(frozen=True)
class Reference:
    """A label (``CWE-306``) and, where there is one, where to read it."""

    label: str
    url: str | None = None


def _shell(value: str) -> str:
    return value if _SHELL_SAFE.fullmatch(value) else "'" + value.replace("'", "'\\''") + "'"


def _fill(templates: tuple[str, ...], finding: Finding) -> list[str]:
    """A rule's templates for this finding: {method} and {url} of an API operation, {host},
    {port}; ``str.replace`` rather than ``format`` so JSON braces in a template stay as written."""
    method, path = finding.operation or ("GET", finding.object)
    values = {
        "{method}": method,
        "{url}": _shell(finding.target.uri(path)),
        "{host}": _shell(finding.target.host),
        "{port}": str(finding.target.port),
    }
    out = []
    for template in templates:
        for key, value in values.items():
            template = template.replace(key, value)
        out.append(template)
    return out


def verify_commands(finding: Finding, rule: Rule | None = None) -> list[str]:
    """How to see it yourself: the rule's own commands (an API check's requests), else the
    read-only commands for this finding's service."""
    if rule is not None and rule.verify:
        return _fill(rule.verify, finding)
    templates = VERIFY_COMMANDS.get(finding.target.service, GENERIC_VERIFY)
    host, port = _shell(finding.target.host), str(finding.target.port)
    return [template.format(host=host, port=port) for template in templates]


def config_lines(finding: Finding, rule: Rule | None = None) -> list[str]:
    """Concrete changes that close it: the rule's own (an API check's), else the service's
    configuration."""
    if rule is not None and rule.fix:
        return _fill(rule.fix, finding)
    return list(CONFIG_LINES.get(finding.target.service, GENERIC_CONFIG))


def references(finding: Finding, rule: Rule | None) -> list[Reference]:
    """CWE ids (from the rule's declared references or its kind) and OWASP API Top 10 ids."""
    found: list[Reference] = []
    seen: set[str] = set()

    def add(label: str, url: str | None) -> None:
        if label not in seen:
            seen.add(label)
            found.append(Reference(label, url))

    for ref in rule.references if rule else ():
        match = _CWE_URL.search(ref)
        add(f"CWE-{match.group(1)}" if match else ref, ref)
    suffix = finding.rule.rsplit(".", 1)[-1]
    cwe = _CWE_BY_SUFFIX.get(suffix)
    if cwe:
        number = cwe.split("-", 1)[1]
        add(cwe, f"https://cwe.mitre.org/data/definitions/{number}.html")
    for owasp in _OWASP_API.get(suffix, ()):
        add(owasp, "https://owasp.org/API-Security/editions/2023/en/0x11-t10/")
    return found
