"""Results: what every scenario returns, and its rendering as markdown (for people) and JSON (for tools)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np


@attrs.define
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = attrs.Factory(list)


@attrs.define
class ScenarioResult:
    """One scenario's output: tables and notes for the markdown, `data` (JSON-able) for the JSON file."""

    name: str
    title: str
    description: str
    tables: list[Table] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    data: dict[str, Any] = attrs.Factory(dict)


def percentiles(values: Sequence[float] | np.ndarray, scale: float = 1000.0) -> dict[str, float | None]:
    """p50 / p99 / max (and mean) of `values` times `scale` (seconds → ms by default); None when empty."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"p50": None, "p99": None, "max": None, "mean": None}
    p50, p99 = np.percentile(arr, [50, 99])
    return {
        "p50": float(p50) * scale,
        "p99": float(p99) * scale,
        "max": float(arr.max()) * scale,
        "mean": float(arr.mean()) * scale,
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(header: dict[str, Any], results: Sequence[ScenarioResult]) -> str:
    lines = ["# relay benchmark results", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    for result in results:
        lines += ["", f"## {result.title}", "", result.description]
        for table in result.tables:
            lines += ["", f"### {table.title}", ""]
            lines.append("| " + " | ".join(table.columns) + " |")
            lines.append("|" + "|".join("---:" if i else "---" for i in range(len(table.columns))) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in table.rows]
        if result.notes:
            lines += ["", "Notes:", ""]
            lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def write(
    out: Path, header: dict[str, Any], meta: dict[str, Any], results: Sequence[ScenarioResult]
) -> tuple[str, Path]:
    """Write `out` (markdown) and the JSON beside it (`meta` holds the header's facts unformatted)."""
    markdown = render_markdown(header, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    json_path = out.with_suffix(".json")
    document = {**meta, "scenarios": {r.name: r.data for r in results}}
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    return markdown, json_path
