"""downtime.py's results: one line per run, the medians per method with their ratio to the
baseline (the first method listed: the hand procedure by default), README's table."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import KEPT, ROOT, STALL, fmt, median
from rich.console import Console
from rich.markup import escape
from rich.table import Table

README = ROOT / "README.md"
START, END = "<!-- downtime-table:start -->", "<!-- downtime-table:end -->"
NAMES = {"hand": "hand procedure (seed)", "stream": "resync stream", "ssh": "resync ssh",
         "ebs": "resync ebs", "mariabackup": "resync mariabackup"}


@dataclass
class Result:
    method: str
    downtime: float = 0.0  # the writer's longest interval without an acknowledgement
    # every interval without an acknowledgement longer than STALL: (seconds, the run's steps
    # that ran during it), in time order; the longest is `downtime`
    stalls: list[tuple[float, list[str]]] = field(default_factory=list)
    failed: int = 0  # the writer's attempts not acknowledged
    acked: int = 0
    donor_lock: float | None = None
    copy_bytes: int | None = None
    copy_seconds: float | None = None
    figure: float | None = None  # figures.write_downtime_seconds (hand: its own clock)
    minus_copy: float | None = None  # figures.downtime_minus_copy_seconds (hand: its own)
    wall: float = 0.0  # the run (or the procedure) from start to end
    image_copies: float | None = None  # ebs: the EBS world's cp of image files (not in EBS)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_error: str | None = None  # the run failed: left out of the medians
    kept: Path | None = None  # the evidence of a failed run

    @property
    def rate(self) -> float | None:
        """MB/s of the copy (1 MB = 10^6 bytes)."""
        if self.copy_bytes is None or not self.copy_seconds:
            return None
        return self.copy_bytes / self.copy_seconds / 1e6


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def describe_stalls(r: Result) -> str:
    def steps(keys: list[str]) -> str:
        return (", ".join(keys) if len(keys) <= 2 else f"{keys[0]} .. {keys[-1]}") or "-"

    return ", ".join(f"{sec:.2f} s ({steps(keys)})" for sec, keys in r.stalls) or "none"


def print_run(out: Console, round_: int, r: Result) -> None:
    out.print(escape(f"round {round_} {r.method:11s}: app write-downtime {r.downtime:6.2f} s, "
                     f"donor lock {fmt(r.donor_lock)} s, copy {fmt(r.rate, 0)} MB/s, figure "
                     f"{fmt(r.figure)} s (minus copy {fmt(r.minus_copy)} s), wall {r.wall:.1f} s, "
                     f"{r.failed} writes not acknowledged"
                     + (f", EBS world's image copies {r.image_copies:.2f} s" if r.image_copies
                        else "")
                     + f"; stalls > {STALL} s: {describe_stalls(r)}"), soft_wrap=True,
              highlight=False)
    for note in r.notes:
        out.print(escape(f"  note: {note}"), soft_wrap=True, highlight=False)
    for problem in r.problems:
        out.print(f"[bold red]!!! FAILURE ({r.method}): {escape(problem)}[/]", soft_wrap=True)
    if r.kept is not None:
        out.print(f"  evidence kept in {r.kept}")


@dataclass
class Medians:
    runs: int
    downtime: float | None
    donor_lock: float | None
    rate: float | None
    figure: float | None
    minus_copy: float | None
    image_copies: float | None
    checked: str  # "3/3": runs whose every acknowledged write was on both servers


def medians(results: list[Result], method: str) -> Medians | None:
    done = [r for r in results if r.method == method and r.run_error is None]
    ran = [r for r in results if r.method == method]
    if not done:
        return None
    return Medians(len(done), median([r.downtime for r in done]),
                   median([r.donor_lock for r in done]), median([r.rate for r in done]),
                   median([r.figure for r in done]), median([r.minus_copy for r in done]),
                   median([r.image_copies for r in done]),
                   f"{sum(not r.problems for r in ran)}/{len(ran)}")


COLUMNS = ("method", "app write-downtime s", "ratio", "donor lock s", "copy MB/s",
           "resync's write_downtime s", "downtime_minus_copy s", "writes on both")


def rows(results: list[Result], methods: list[str]) -> list[list[str]]:
    base = medians(results, methods[0])
    out = []
    for method in methods:
        m = medians(results, method)
        if m is None:
            out.append([NAMES[method], "failed", "-", "-", "-", "-", "-",
                        f"0/{sum(r.method == method for r in results)}"])
            continue
        ratio = (f"{m.downtime / base.downtime:.2f}" if base is not None and base.downtime
                 and m.downtime is not None else "-")
        out.append([NAMES[method], fmt(m.downtime), ratio, fmt(m.donor_lock), fmt(m.rate, 0),
                    fmt(m.figure), fmt(m.minus_copy), m.checked])
    return out


def markdown(results: list[Result], methods: list[str], caption: str) -> str:
    lines = [caption, "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results, methods)]
    return "\n".join(lines)


def write_readme(text: str, path: Path = README) -> None:
    """Replace what is between the markers (both must be there, once each)."""
    readme = path.read_text()
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise SystemExit(f"{path}: the markers {START} / {END} must be there once each")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    path.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", readme))


def finish(out: Console, results: list[Result], methods: list[str], args: argparse.Namespace,
           measured: str, seconds: float) -> int:
    """The table, the notes, README's table if asked; the exit status."""
    base = NAMES[methods[0]]
    table = Table(title=f"write-downtime, {args.scenario} scenario, {args.size_mb} MB, medians "
                        f"of {args.runs} runs (ratio: app write-downtime / {base}'s)")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in rows(results, methods):
        table.add_row(*row)
    out.print(table)
    for method in methods:
        m = medians(results, method)
        if m is not None and m.image_copies is not None:
            out.print(f"{method}: the EBS world's image copies (the snapshot's, in the donor's "
                      f"lock, and the volume's; EBS does neither), inside the write-downtime: "
                      f"median {m.image_copies:.2f} s")
    caption = (f"Measured {measured}: {args.scenario} scenario, {args.size_mb} MB per server, "
               f"medians of {args.runs} alternating runs, a writer every "
               f"{args.interval * 1000:.0f} ms; ratio = app write-downtime / {base}'s.")
    if args.markdown or args.write_readme:
        text = markdown(results, methods, caption)
        if args.markdown:
            print(text)
        if args.write_readme:
            write_readme(text)
            out.print(f"README.md: table replaced between {START} and {END}")
    out.print(f"{measured}; bench time {seconds:.0f} s")
    if bad := [r for r in results if r.problems]:
        out.print(f"[bold red]!!! {len(bad)} run(s) FAILED or lost acknowledged writes "
                  f"(above; evidence in {KEPT[0] if KEPT else '-'})[/]")
        return 1
    return 0
