"""A real one-member etcd cluster on free loopback ports: exposed or secured, and its seeder.

Secured: v3 auth enabled, with a ``root`` user (the only way etcd 3.4 enables auth), before any
data goes in. etcd counts every gRPC call by method on ``/metrics``
(``grpc_server_started_total``): the record the read-only tests read.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import httpx

from perisai.lab.binaries import BinarySearch, find_binary
from perisai.lab.errors import LabError, ServerStartError
from perisai.lab.instances import twin_password
from perisai.lab.seed import (
    RANSOM_NOTE,
    RANSOM_TABLE,
    SEED,
    Person,
    log_record,
    make_messages,
    make_people,
)
from perisai.lab.servers.http_store import (
    HTTP_STORE_LOG_RECORDS,
    HTTP_STORE_USERS,
    HTTP_TIMEOUT,
    HttpStoreInstance,
    answers,
    b64,
    port_taken,
)
from perisai.lab.spec import ServerSpec
from perisai.lab.supervisor import (
    HOST,
    START_TIMEOUT,
    free_port,
    log_tail,
    make_root,
    spawn,
    start_with_retries,
)

__all__ = ["ETCD_PACKAGE", "ETCD_RANSOM_KEY", "SPEC", "find_etcd", "seed_etcd", "start_etcd"]

ETCD_PACKAGE = "etcd-server"
ETCD_RANSOM_KEY = f"/{RANSOM_TABLE}"
_NOT_YET = (httpx.HTTPError, LabError, ValueError)


def find_etcd(search: BinarySearch | None = None) -> Path:
    """The ``etcd`` server executable, or :class:`MissingBinary` naming its package."""
    return find_binary("etcd", ETCD_PACKAGE, search)


def start_etcd(
    name: str,
    base_dir: Path,
    *,
    exposed: bool,
    password: str | None = None,
    enable_v2: bool = False,
    search: BinarySearch | None = None,
    timeout: float = START_TIMEOUT,
) -> HttpStoreInstance:
    """Start a one-member etcd cluster under ``base_dir/name`` and wait until it answers.

    Secured servers (``exposed=False``) get a ``root`` user with ``password`` (a random one if
    None) and v3 auth enabled before this returns. ``enable_v2`` also serves the v2 API
    (off by default in etcd 3.4), whose keys v3 auth does not protect.
    """
    password = twin_password(exposed, password, "an exposed etcd has no password")
    binary = find_etcd(search)
    root = make_root(base_dir, name)
    return start_with_retries(
        root,
        lambda: _start_etcd_once(name, root, binary, exposed, password, enable_v2, timeout),
        port_taken,
    )


def _start_etcd_once(
    name: str,
    root: Path,
    binary: Path,
    exposed: bool,
    password: str | None,
    enable_v2: bool,
    timeout: float,
) -> HttpStoreInstance:
    client_port, peer_port = free_port(), free_port()
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    log_file = root / "etcd.log"
    log_file.unlink(missing_ok=True)
    client_url, peer_url = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
    argv = [
        str(binary),
        "--name=perisai-lab",
        f"--data-dir={data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=perisai-lab={peer_url}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={name}",
        "--logger=zap",
        "--log-outputs=stderr",
        f"--enable-v2={'true' if enable_v2 else 'false'}",
        "--snapshot-count=10000",
    ]
    launch = spawn(name, argv, log_file, HttpStoreInstance.PROCESSES["etcd"])

    def ready() -> bool:
        with httpx.Client(base_url=client_url, timeout=1.0, trust_env=False) as client:
            return answers(client, "etcd")

    pid = launch.await_ready(ready, timeout, client_url, port_taken=port_taken, not_yet=_NOT_YET)
    if password is not None:
        try:
            _enable_etcd_auth(client_url, password)
        except _NOT_YET as error:
            launch.abort()
            raise ServerStartError(
                name, f"could not enable auth: {error}", log_tail(log_file)
            ) from error
    return HttpStoreInstance(
        name=name,
        service="etcd",
        host=HOST,
        port=client_port,
        exposed=exposed,
        user=None if password is None else "root",
        password=password,
        pid=pid,
        root=root,
        log_file=log_file,
        database="/",
    )


def _enable_etcd_auth(url: str, password: str) -> None:
    """etcd 3.4's recipe: a root user holding the root role, then ``auth enable``."""
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT, trust_env=False) as client:
        for path, body in (
            ("/v3/auth/user/add", {"name": "root", "password": password}),
            ("/v3/auth/role/add", {"name": "root"}),
            ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
            ("/v3/auth/enable", {}),
        ):
            response = client.post(path, json=body)
            if response.status_code != 200:
                raise LabError(f"{path}: HTTP {response.status_code} {response.text[:200]}")


def seed_etcd(
    instance: HttpStoreInstance, *, ransom_note: bool = False, v2: bool = False, seed: int = SEED
) -> int:
    """Write chat-gateway log records, user profiles and a config key (and, with
    ``ransom_note``, the extortion note at :data:`ETCD_RANSOM_KEY`) through the v3 API;
    with ``v2`` also a few keys through the v2 API. Returns the number of v3 keys written."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    people = make_people(HTTP_STORE_USERS, rng)
    messages = make_messages(people, HTTP_STORE_LOG_RECORDS, rng)
    entries: list[tuple[str, str]] = []
    for n, message in enumerate(messages, start=1):
        entries.append(
            (f"/chat/log/msg/{n:05d}", json.dumps(log_record(message, rng, client=False)))
        )
    for n, person in enumerate(people, start=1):
        entries.append((f"/users/{n:04d}", json.dumps(_profile(person))))
    entries.append(
        ("/config/features", json.dumps({"typing_indicator": True, "max_upload_mb": 64}))
    )
    if ransom_note:
        entries.append((ETCD_RANSOM_KEY, RANSOM_NOTE))
    with instance.client() as client:
        for key, value in entries:
            response = client.post("/v3/kv/put", json={"key": b64(key), "value": b64(value)})
            if response.status_code != 200:
                raise LabError(f"etcd put {key}: HTTP {response.status_code}")
        if v2:
            for n, person in enumerate(people[:10], start=1):
                response = client.put(
                    f"/v2/keys/sessions/{n:03d}", data={"value": json.dumps(_profile(person))}
                )
                if response.status_code not in (200, 201):
                    raise LabError(f"etcd v2 put: HTTP {response.status_code}")
    return len(entries)


def _profile(person: Person) -> dict[str, str]:
    return {
        "name": person.name,
        "phone": person.e164,
        "email": person.email,
        "device_id": person.device_id,
        "country": person.region,
    }


SPEC = ServerSpec(service="etcd", find=find_etcd, start=start_etcd, seed=seed_etcd)
