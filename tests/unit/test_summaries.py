"""Summaries that scale: a list that grows with the data prints counts and its exceptions."""

from __future__ import annotations

import io

from rich.console import Console

from resync.cli.ui import checksum_overview


def test_a_verify_of_ten_thousand_tables_prints_counts_and_the_exceptions() -> None:
    rows = [(f"app.t{i}", "1", "1") for i in range(10_004)]
    rows[7], rows[5000], rows[9999] = ("app.t7", "1", "2"), ("app.t5000", "3", None), \
        ("app.t9999", None, "4")
    out = io.StringIO()
    checksum_overview(Console(file=out, width=120, color_system=None), "verify", rows)
    text = out.getvalue()
    assert "verify: 10,001 of 10,004 tables equal, 3 differ" in text
    assert all(t in text for t in ("app.t7 ", "app.t5000", "app.t9999"))
    assert "app.t8 " not in text and len(text.splitlines()) < 15
