"""Preflight checks of the datadir layout: what a physical copy of one directory can carry."""

from __future__ import annotations

import json
from collections.abc import Mapping

from resync.model.errors import ResyncError

# InnoDB files that live outside the datadir when these point elsewhere: the copy would miss them
DIRECTORY_VARIABLES = ("innodb_data_home_dir", "innodb_log_group_home_dir", "innodb_undo_directory")
# settings baked into the files: the recipient's server must be configured as the donor's was
MUST_MATCH = ("innodb_page_size", "lower_case_table_names", "innodb_data_file_path")


LAYOUT_VARIABLES = DIRECTORY_VARIABLES + MUST_MATCH


def layout_of(rows_json: str) -> dict[str, str]:
    """SHOW GLOBAL VARIABLES rows (captured as JSON [[name, value], ...]) as a mapping."""
    return {str(name).lower(): str(value or "") for name, value in json.loads(rows_json)}


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
