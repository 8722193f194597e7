"""What `perisai classify` writes: a table (one row per file, then the total) or JSON."""

from __future__ import annotations

import io
import json
from enum import StrEnum
from typing import assert_never

from rich.console import Console
from rich.table import Table
from rich.text import Text

from perisai.classify.files import ClassifyReport, FileProfile
from perisai.findings import entity_summary


class ClassifyFormat(StrEnum):
    """The formats ``classify`` offers (``--format``)."""

    TABLE = "table"
    JSON = "json"


def render_classify(report: ClassifyReport, fmt: ClassifyFormat) -> str:
    """``report`` in ``fmt``; a format added to the enum but not here fails mypy."""
    if fmt is ClassifyFormat.TABLE:
        return render_profiles(report.files, report.total)
    if fmt is ClassifyFormat.JSON:
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    assert_never(fmt)


def render_profiles(profiles: list[FileProfile], total: FileProfile, width: int = 140) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False, emoji=False)
    table = Table()
    for column in ("file", "kind", "records", "with personal data", "entities"):
        table.add_column(column, overflow="fold")
    for profile in [*profiles, total]:
        if profile.skipped:
            table.add_row(
                Text(profile.path), Text("skipped"), Text(""), Text(""), Text(profile.skipped)
            )
            continue
        table.add_row(
            Text(profile.path),
            Text(profile.kind),
            Text(f"{profile.records:,}"),
            Text(
                f"{profile.records_with_personal_data:,} ({profile.share_with_personal_data:.0%})"
            ),
            Text(entity_summary(profile.entities) if profile.entities else "none"),
        )
    console.print(table)
    for example in total.examples:
        console.print(Text(f"  e.g. {example}"))
    return buffer.getvalue()
