"""Reading the data sets' annotation tables (CSV files with untidy whitespace)."""

from __future__ import annotations

import csv
from pathlib import Path

from streammood.errors import StreammoodError


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts with whitespace-stripped keys and values.

    Raises
    ------
    StreammoodError
        When the file is missing, unreadable or lacks one of the ``required`` columns.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = [
                {h: v.strip() for h, v in zip(header, row, strict=False)}
                for row in reader
                if any(v.strip() for v in row)
            ]
    except OSError as exc:
        raise StreammoodError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise StreammoodError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in required if c not in header]
    if missing:
        raise StreammoodError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows
