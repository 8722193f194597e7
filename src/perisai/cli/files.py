"""``perisai classify`` and ``perisai redact``: personal data in files and logs."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import typer

from perisai.bounded import DecompressionCapped, not_a_regular_file, open_text
from perisai.cli.common import RegionOption, fail, progress, regions, say
from perisai.redact import RedactionMode, Redactor, RedactorError, redact_stream
from perisai.report import ClassifyFormat, render_classify
from perisai.usecases import UseCaseError, classify_files


def classify(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or directories (recursive); .gz, JSON lines, CSV and plain text."
        ),
    ],
    output_format: Annotated[
        ClassifyFormat, typer.Option("--format", "-f", case_sensitive=False)
    ] = ClassifyFormat.TABLE,
    region: RegionOption = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=256,
            metavar="N",
            help="Processes to classify with; big files are cut at line boundaries (a .gz or "
            "CSV file is one part). Same counts as one process.",
        ),
    ] = 1,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="ADDRESS",
            help="Classify on a Dask cluster's workers (tcp://HOST:8786), in the parts --jobs "
            "cuts (a .gz or CSV file is one part). The workers read the files: each must be "
            "at the same path on every worker (shared storage). Needs perisai[cluster].",
        ),
    ] = None,
) -> None:
    """Find personal data in files, dumps and logs: per-file and total entity counts, masked
    examples, and the share of records holding personal data."""
    chosen = regions(region)
    try:
        with progress() as bar:
            report = classify_files(paths, regions=chosen, progress=bar, jobs=jobs, cluster=cluster)
    except UseCaseError as error:
        fail(str(error))
    sys.stdout.write(render_classify(report, output_format))
    for skipped in report.skipped:
        say(f"skipped {skipped.path}: {skipped.skipped}")


def redact(
    files: Annotated[
        list[str] | None, typer.Argument(help="Files to redact ('-' or none: standard input).")
    ] = None,
    mode: Annotated[
        RedactionMode,
        typer.Option(
            "--mode",
            case_sensitive=False,
            help="mask keeps a hint; hash gives a keyed token (joinable across "
            "records); tag keeps only the type.",
        ),
    ] = RedactionMode.MASK,
    key_env: Annotated[
        str,
        typer.Option(
            "--key-env", help="Environment variable holding the secret key for --mode hash."
        ),
    ] = "PERISAI_REDACT_KEY",
    region: RegionOption = None,
) -> None:
    """Redact personal data from logs, streaming to standard output; JSON lines stay valid
    JSON."""
    key = os.environ.get(key_env, "").encode() or None
    if mode is RedactionMode.HASH and key is None:
        fail(
            f"--mode hash needs a secret key in ${key_env}: set it, e.g. "
            f"export {key_env}=$(openssl rand -hex 32), and keep it to join tokens later"
        )
    try:
        redactor = Redactor(mode, key=key, regions=regions(region))
    except RedactorError as error:
        fail(str(error))
    sources = files or ["-"]
    for source in sources:
        if source == "-":
            continue
        if not Path(source).exists():
            fail(f"no such file: {source}")
        why = not_a_regular_file(Path(source))
        if Path(source).is_dir() or (why is not None and not Path(source).is_fifo()):
            fail(f"cannot redact {source}: {why or 'a directory'}")
    out = sys.stdout
    try:
        for source in sources:
            with _text_source(source) as stream:
                for piece in redact_stream(stream, redactor):
                    out.write(piece)
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
    except DecompressionCapped as error:
        out.flush()
        fail(f"{source}: {error}; what came before it was written")
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror or error}")


@contextmanager
def _text_source(source: str) -> Iterator[IO[str]]:
    if source == "-":
        yield io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return
    with open_text(Path(source)) as handle:
        yield handle
