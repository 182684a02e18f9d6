"""Preflight checks of the datadir layout: what a physical copy of one directory can carry."""

from __future__ import annotations

from collections.abc import Mapping

from resync.actions.types import q
from resync.model.errors import ResyncError
from resync.model.runbook import LoadedRunbook
from resync.steps.base import StepContext

# InnoDB files that live outside the datadir when these point elsewhere: the copy would miss them
DIRECTORY_VARIABLES = ("innodb_data_home_dir", "innodb_log_group_home_dir", "innodb_undo_directory")
# settings baked into the files: the recipient's server must be configured as the donor's was
MUST_MATCH = ("innodb_page_size", "lower_case_table_names", "innodb_data_file_path")


def server_layout(ctx: StepContext, host: str) -> dict[str, str]:
    names = DIRECTORY_VARIABLES + MUST_MATCH
    rows = ctx.query(host, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                     + ", ".join(["%s"] * len(names)) + ")", names)
    return {str(r["Variable_name"]).lower(): str(r["Value"] or "") for r in rows}


def innodb_dirs_inside(layout: Mapping[str, str], datadir: str, host: str) -> str:
    outside = [f"{name}={layout[name]}" for name in DIRECTORY_VARIABLES
               if layout.get(name, "") not in ("", ".", "./")
               and layout[name].rstrip("/") != datadir.rstrip("/")]
    if outside:
        raise ResyncError(f"on {host} InnoDB keeps files outside the datadir ({', '.join(outside)}): "
                          "a copy of the datadir would miss them; move them into the datadir first")
    return "InnoDB system, redo and undo files live in the datadir"


def settings_match(donor: Mapping[str, str], recipient: Mapping[str, str]) -> str:
    differ = [f"{n}: donor {donor.get(n)!r}, recipient {recipient.get(n)!r}" for n in MUST_MATCH
              if donor.get(n) != recipient.get(n)]
    if differ:
        raise ResyncError("the recipient's server is configured differently from the donor's in "
                          "settings baked into the copied files (" + "; ".join(differ) + "): "
                          "align its my.cnf first")
    return ", ".join(f"{n}={donor.get(n)}" for n in MUST_MATCH)


def not_a_mount_point(ctx: StepContext, loaded: LoadedRunbook) -> str:
    rb = loaded.model
    datadir = rb.hosts[rb.recipient].datadir.rstrip("/")
    probe = ctx.host(rb.recipient).run(f"mountpoint -q {q(datadir)}", check=False)
    if probe.exit_code == 0:
        raise ResyncError(
            f"{datadir} on {rb.recipient} is a mount point: resync moves the old datadir aside "
            "with a rename, which cannot move a mount point. Mount the volume one level up "
            f"(e.g. {datadir}-vol) with the datadir a directory inside it")
    return f"{datadir} is a directory (renamed aside, kept on the same filesystem)"
