"""An interactive run in a real terminal (a pty) on the sandbox pair, every question answered
the moment it appears: none comes while the application cannot write. The locked phase is
confirmed once, before the donor's lock (issue 13)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import journal_of, seed_incident

pytestmark = pytest.mark.integration

QUESTION = re.compile(rb"\? \(y\)es / (?:\(s\)kip / )?\(a\)bort")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def drive(cwd: Path, *args: str, timeout: float = 300) -> tuple[int, list[tuple[float, bytes]], bytes]:
    """Run resync on a pty, answer 'y' to each question as it appears. Returns the exit code,
    (time, question) for each question, and the whole output."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "resync", *args], cwd=cwd,
                            stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
                            env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(terminal)
    output, asked, pending = b"", [], b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            pending += ANSI.sub(b"", chunk)
            match = QUESTION.search(pending)
            if match:
                asked.append((time.time(), match.group(0)))
                pending = b""
                os.write(controller, b"y\n")
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(controller)
    return proc.returncode, asked, output


def test_no_question_while_the_donor_is_locked(tmp_path: Path, sandbox_pair: Any) -> None:
    runbook = seed_incident(tmp_path, sandbox_pair)
    code, asked, output = drive(tmp_path, "run", str(runbook))
    text = ANSI.sub(b"", output).decode(errors="replace")
    assert code == 0, text[-3000:]
    journal = json.loads(journal_of(tmp_path).read_text())
    steps = {s["key"]: s for s in journal["steps"]}
    lock = steps["read-lock:db2:donor"]
    writable = next(s for k, s in steps.items() if k.startswith("make-writable:"))
    opened, closed = lock["started_at"], writable["finished_at"]
    during = [t for t, _ in asked if opened <= t <= closed]
    assert not during, f"{len(during)} question(s) while the donor was write-locked"
    group = [q for _, q in asked if b"run steps" in q or b"(y)es / (a)bort" in q]
    assert len(group) == 1, "the locked phase is confirmed once"
    locked = [k for k in steps if steps[k]["started_at"] and opened <= steps[k]["started_at"] <= closed]
    assert len(asked) == len(steps) - len(locked) + 1
    assert "the locked phase" in text and "estimated write-downtime ~" in text
    assert journal["outcome"] == "done"
