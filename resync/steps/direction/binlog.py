"""A stopped MariaDB recipient's GTIDs, read from mariadb-binlog's output of its last binary log
(pure: the command that prints it is `gate.binlog_gtids_command`).

The output is mariadb-binlog's own, filtered, with lines of ours marked RESYNC-* around it: the
file read, or why none was, and the tool's exit status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resync.steps.direction.gtid import GtidState, parse_gtid_list

BINLOG_FILE_MARK = "RESYNC-BINLOG"
NO_BINLOG_MARK = "RESYNC-NO-BINLOG"
EXIT_MARK = "RESYNC-EXIT"
MOVED_MARK = "RESYNC-MOVED"
# an event header ("#240101 12:00:00 server id 1  end_log_pos 256 ..."): only these are read as
# events, so a query's text that looks like a GTID is never taken for one
_EVENT = re.compile(r"^#\d+\s+\d+:\d+:\d+\s+server id \d+\s+end_log_pos \d+\b")
_EVENT_GTID = re.compile(r"\sGTID (\d+)-(\d+)-(\d+)\b")


@dataclass(frozen=True)
class BinlogRead:
    """What the last binary log of a stopped server says about its GTIDs."""

    file: str | None
    state: GtidState
    has_list: bool  # its Gtid list event was read: the state of every earlier binary log
    missing: str | None = None  # why no binary log was read
    exit_code: int | None = None  # mariadb-binlog's, when it was not 0
    moved: str | None = None  # the datadir was moved aside there already (a repeated step)


def parse_binlog_output(text: object) -> BinlogRead:
    """The output of `binlog_gtids_command` (or mariadb-binlog's own): the Gtid list event sets
    the state at the file's start; every GTID event after it moves its (domain, server_id) on."""
    file: str | None = None
    missing: str | None = None
    exit_code: int | None = None
    moved: str | None = None
    state: GtidState = {}
    has_list = False
    listing: list[str] | None = None
    for raw in str(text or "").splitlines():
        line = raw.rstrip()
        if listing is not None:  # "# 0-7-4," continuation lines of the Gtid list
            listing.append(line.lstrip("#").strip())
            if "]" in line:
                state.update(_gtid_list_text(" ".join(listing)))
                listing = None
            continue
        if line.startswith(BINLOG_FILE_MARK + " "):
            file = line[len(BINLOG_FILE_MARK) + 1:].strip()
        elif line.startswith(NO_BINLOG_MARK):
            missing = line[len(NO_BINLOG_MARK):].strip() or "no binary log"
        elif line.startswith(MOVED_MARK + " "):
            moved = line[len(MOVED_MARK) + 1:].strip()
        elif line.startswith(EXIT_MARK + " "):
            exit_code = int(line[len(EXIT_MARK) + 1:].strip() or 1)
        elif _EVENT.match(line):
            at = line.find("Gtid list [")
            if at >= 0 and not has_list:
                has_list = True
                rest = line[at + len("Gtid list "):]
                if "]" in rest:
                    state.update(_gtid_list_text(rest))
                else:
                    listing = [rest]
                continue
            m = _EVENT_GTID.search(line)
            if m:
                state[(int(m[1]), int(m[2]))] = int(m[3])
    if listing is not None:
        raise ValueError("the Gtid list event of the binary log is cut short")
    return BinlogRead(file, state, has_list, missing, exit_code, moved)


def _gtid_list_text(text: str) -> GtidState:
    inner = text.strip()
    if not inner.startswith("[") or "]" not in inner:
        raise ValueError(f"not a Gtid list: {text!r}")
    return parse_gtid_list(inner[1:inner.index("]")].replace(" ", ""))
