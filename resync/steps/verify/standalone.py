"""`resync verify RUNBOOK` keeps a journal of its own, so that a verify killed midway continues
from its saved chunks when it is run again.

Its journal is `resync-journal/verify-<runbook name>/journal.json` (or `--journal`): a plan of
one step (the verify), its records and its captured progress, as a run's journal. It is
continued when it is unfinished, younger than a day, of the same runbook and the same plan;
otherwise (or with `--restart`) it is kept as `<its run id>.json` beside the new one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from resync.model.runbook import LoadedRunbook
from resync.plan.document import plan_hash, step_view
from resync.run.journal import Journal
from resync.steps.verify.progress import Progress
from resync.steps.verify.step import VerifyData

MAX_AGE_SECONDS = 24 * 3600  # older saved chunks are not trusted: the data moved on since


def default_path(loaded: LoadedRunbook) -> Path:
    return Path("resync-journal") / f"verify-{loaded.model.name}" / "journal.json"


def verify_document(loaded: LoadedRunbook, step: VerifyData, mode: str,
                    versions: dict[str, str]) -> dict[str, Any]:
    rb = loaded.model
    steps = [step_view(1, step).as_json()]
    return {"runbook": {"name": rb.name, "path": str(loaded.path), "sha256": loaded.sha256},
            "donor": rb.donor, "recipient": rb.recipient, "primary_after": rb.primary_after,
            "replication_mode": mode, "versions": versions, "versions_source": "detected",
            "plan_sha256": plan_hash(steps), "steps": steps}


def why_not_continue(journal: Journal, loaded: LoadedRunbook, doc: dict[str, Any]) -> str | None:
    """Why the saved verify cannot be continued (None: it can)."""
    data = journal.data
    if data.runbook_sha256 != loaded.sha256:
        return "the runbook changed since"
    if data.plan_sha256 != doc["plan_sha256"]:
        return "its plan differs from this one (server versions, replication mode or resync)"
    if data.outcome == "done":
        return "it finished"
    if time.time() - data.created_at > MAX_AGE_SECONDS:
        return "it is more than a day old"
    progress = Progress.load(data.captured)
    if data.outcome is not None and not any(t.open for t in progress.tables.values()):
        return "it compared every table to its end"
    return None


def open_journal(path: Path, loaded: LoadedRunbook, step: VerifyData, doc: dict[str, Any], *,
                 restart: bool) -> tuple[Journal, str]:
    """The journal to run the verify in (call with its JournalLock held), and what was done."""
    note = ""
    if path.exists():
        old = Journal.load(path)
        why = "--restart" if restart else why_not_continue(old, loaded, doc)
        if why is None:
            chunks = Progress.load(old.data.captured).chunks
            return old, (f"continuing the verify started {_ago(old.data.created_at)} ago "
                         f"({chunks} chunk(s) done; --restart to start over): {path}")
        kept = path.with_name(f"{old.data.run_id}.json")
        path.replace(kept)
        note = f"a new verify ({why}; the previous one is kept as {kept}): "
    run_id = "verify-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    journal = Journal.create(path, run_id=run_id, runbook_path=str(loaded.path.resolve()),
                             runbook_sha256=loaded.sha256, steps=[(step.key, step.title)],
                             plan=doc, plan_sha256=doc["plan_sha256"])
    return journal, note + str(path)


def _ago(since: float) -> str:
    seconds = max(0, int(time.time() - since))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"
