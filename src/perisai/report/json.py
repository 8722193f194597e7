"""The findings contract as JSON (DESIGN.md); with ``--diff``, what changed."""

from __future__ import annotations

import json
from typing import Any

from perisai.findings import ScanDiff, ScanReport
from perisai.report.interface import Reporter


class JsonReporter(Reporter):
    """Exactly ``report.to_dict()``: tools parse it, so nothing is added but the diff."""

    def render(self, report: ScanReport, diff: ScanDiff | None = None) -> str:
        document: dict[str, Any] = report.to_dict()
        if diff is not None:
            document["diff"] = {
                "previous_scan_id": diff.previous.scan_id if diff.previous else None,
                "new": [f.id for f in diff.new],
                "resolved": [f.to_dict() for f in diff.resolved],
            }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
