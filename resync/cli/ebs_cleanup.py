"""`resync cleanup --run-id ID RUNBOOK`: what a run of the EBS copy left in AWS, found by its tag.

Volumes and snapshots tagged `resync:run-id=ID`, looked for in the runbook's region (copy.ebs.
region, else boto3's own), each listed and then deleted once the operator agrees: a volume is
detached first from every instance holding it (always naming the instance). A run still going
(its journal locked by its process) is refused: its volume may be mounted and being copied.
The calls are journaled in memory and shown as a table at the end, also after a failure.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from resync.model.errors import Aborted, BadInputError
from resync.model.runbook import LoadedRunbook
from resync.run.journal import JournalLock, MemoryJournal

RUN_ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{4}")


def regions_of(loaded: LoadedRunbook) -> list[str]:
    region = loaded.model.copy_.ebs.region
    if region:
        return [region]
    import boto3

    default = boto3.session.Session().region_name
    if not default:
        raise BadInputError("no AWS region to look in: set copy.ebs.region in the runbook, or "
                            "AWS_REGION / AWS_DEFAULT_REGION")
    return [default]


def refuse_if_running(loaded: LoadedRunbook, run_id: str, journal_dir: Path) -> None:
    for journal in journal_dir.glob(f"*-{run_id}.json"):
        lock = JournalLock(journal)
        lock.acquire()  # raises JournalError naming the process that runs it
        lock.release()


def cleanup_leftovers(loaded: LoadedRunbook, run_id: str, console: Console, *, yes: bool,
                      journal_dir: Path = Path("resync-journal")) -> None:
    from rich.prompt import Confirm

    from resync.lb.command import records_table
    from resync.run.runner import executor_for
    from resync.steps.copy.ebs.cleanup import delete_leftovers, find_leftovers, found

    if not RUN_ID.fullmatch(run_id):
        raise BadInputError(f"--run-id {run_id!r} is not a run id like 20261201T053443-1a2b "
                            "(the journal's name ends with it)")
    refuse_if_running(loaded, run_id, journal_dir)
    regions = regions_of(loaded)
    exe = executor_for(loaded, MemoryJournal("cleanup"))
    try:
        exe.begin("cleanup-find")
        exe.run(find_leftovers(run_id, regions))
        leftovers = found(exe.captured, regions)
        if not leftovers:
            console.print(f"nothing tagged resync:run-id={run_id} in {', '.join(regions)}")
            return
        console.print(f"left by run {run_id}:")
        for item in leftovers:
            console.print(f"  {item}")
        if not yes and not Confirm.ask("detach and delete them?", console=console, default=False):
            raise Aborted("cleanup aborted by the operator; nothing was deleted")
        exe.begin("cleanup-delete")
        exe.run(delete_leftovers(leftovers), prefix="1.")
        console.print(f"deleted {len(leftovers)} leftover(s) of run {run_id}")
    finally:
        exe.close()
        console.print(records_table(exe.journal.data.commands, f"resync cleanup --run-id {run_id}"))
