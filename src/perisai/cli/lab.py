"""``perisai lab``: the local lab of exposed and secured data stores to try perisai on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perisai.cli.common import fail, spinner
from perisai.lab import SERVICES as LAB_SERVICES
from perisai.lab import Lab, LabError, MissingBinary, scan_ports
from perisai.lab.api_server import KNOWN_ACCOUNT, ApiInstance

lab_app = typer.Typer(
    help="A deliberately exposed local lab: every store perisai probes, exposed and secured "
    "twins, on loopback.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

StateDirOption = Annotated[
    Path, typer.Option("--state-dir", help="Where the lab keeps its servers' data and state.")
]
DEFAULT_LAB_DIR = Path(".perisai-lab")


@lab_app.command("up", short_help="Start the lab: exposed and secured twins, seeded.")
def lab_up(
    state_dir: StateDirOption = DEFAULT_LAB_DIR,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            "-s",
            help=f"Only this service (repeatable): {', '.join(LAB_SERVICES)}.",
            show_default="all",
        ),
    ] = None,
    install: Annotated[
        bool,
        typer.Option(
            "--install",
            help="Install missing server packages with apt-get (needs root) and npm.",
        ),
    ] = False,
) -> None:
    """Start exposed and secured twins of every data store perisai probes, on loopback,
    seeded with synthetic personal data."""
    try:
        with spinner("starting the lab… (about 20 s for all services on 2 cores)"):
            instances = Lab(state_dir, services=service).up(install=install)
    except (LabError, MissingBinary) as error:
        fail(str(error))
    audits = []
    for instance in instances:
        kind = "exposed" if instance.exposed else "secured"
        ports = ",".join(str(port) for port in scan_ports(instance))
        where = f"{instance.host}:{ports}" if ports else instance.url
        print(f"{instance.name:20} {kind:8} {where}")
        if isinstance(instance, ApiInstance):
            audits.append(
                f"perisai audit-api --spec {instance.spec_url} --base-url {instance.url} "
                f"--smtp-sink {instance.smtp_relay} --known-account {KNOWN_ACCOUNT} "
                f"--sink-phone {KNOWN_ACCOUNT}"
            )
    ports = ",".join(str(port) for instance in instances for port in scan_ports(instance))
    print(f"\nscan it:  perisai scan 127.0.0.1 --ports {ports}")
    for command in audits:
        print(f"audit it: {command}")


@lab_app.command("status")
def lab_status(
    state_dir: StateDirOption = DEFAULT_LAB_DIR,
    ports_only: Annotated[
        bool,
        typer.Option(
            "--ports", help="Print only the ports, comma separated (for `perisai scan --ports`)."
        ),
    ] = False,
) -> None:
    """Show the lab's servers and whether each answers."""
    try:
        rows = Lab(state_dir).status()
    except LabError as error:
        fail(str(error))
    if not rows:
        fail(f"no lab is up in {state_dir}") if ports_only else print("no lab is up")
        return
    if ports_only:
        print(",".join(str(port) for instance, _ in rows for port in scan_ports(instance)))
        return
    for instance, answering in rows:
        ports = ",".join(str(port) for port in scan_ports(instance))
        state = "up" if answering else "NOT ANSWERING"
        print(f"{instance.name:20} {instance.host}:{ports:<12} {state}")


@lab_app.command("down")
def lab_down(state_dir: StateDirOption = DEFAULT_LAB_DIR) -> None:
    """Stop the lab's servers and remove their data."""
    try:
        Lab(state_dir).down()
    except LabError as error:
        fail(str(error))
    print("lab is down")
