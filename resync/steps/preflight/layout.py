"""Preflight checks of the datadir layout: what a physical copy of one directory can carry."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence

from resync.actions.quoting import q
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


# -- the datadir's surroundings: what a copy of the directory alone would miss or could not open ----

# tablespaces the layout check above already covers (innodb_data_home_dir, innodb_undo_directory)
# or that are never copied (the temporary tablespace is recreated at start)
_LAYOUT_SPACES = ("innodb_system", "innodb_temporary")
ENCRYPTION_VARIABLES = (
    "innodb_encrypt_tables", "innodb_encrypt_log", "aria_encrypt_tables",  # MariaDB
    "default_table_encryption", "innodb_redo_log_encrypt", "innodb_undo_log_encrypt",  # MySQL 8
)
KEY_PLUGINS_SQL = ("SELECT PLUGIN_NAME FROM information_schema.PLUGINS "
                   "WHERE PLUGIN_STATUS = 'ACTIVE' "
                   "AND (PLUGIN_NAME LIKE 'keyring%' OR PLUGIN_NAME LIKE '%key_management%')")
LOG_VARIABLES = ("log_bin_basename", "relay_log_basename", "log_bin_index")
_ENCRYPTED = ("ON", "FORCE", "1", "YES")


def tablespace_files_sql(flavor: str, number: tuple[int, int, int]) -> str:
    """The InnoDB tablespaces whose file is not named relative to the datadir (NAME, PATH), for
    the server's version: a file in the datadir is listed as ./schema/table.ibd."""
    if flavor == "mariadb":
        if number >= (10, 6, 0):  # INNODB_SYS_DATAFILES was removed; FILENAME came instead
            return ("SELECT NAME, FILENAME AS PATH FROM information_schema.INNODB_SYS_TABLESPACES "
                    "WHERE FILENAME NOT LIKE './%'")
        return ("SELECT t.NAME, d.PATH FROM information_schema.INNODB_SYS_DATAFILES d "
                "LEFT JOIN information_schema.INNODB_SYS_TABLESPACES t ON t.SPACE = d.SPACE "
                "WHERE d.PATH NOT LIKE './%'")
    # MySQL 5.7 and 8: general tablespaces too; undo tablespaces are the layout check's
    return ("SELECT TABLESPACE_NAME AS NAME, FILE_NAME AS PATH FROM information_schema.FILES "
            "WHERE ENGINE = 'InnoDB' AND FILE_TYPE NOT IN ('TEMPORARY', 'UNDO LOG') "
            "AND FILE_NAME NOT LIKE './%'")


def global_variables_sql(flavor: str, names: tuple[str, ...]) -> str:
    """One row with a column per variable (NULL where the server has no such variable):
    unlike @@name, it cannot fail on a flavor or version that lacks one."""
    table = ("information_schema.GLOBAL_VARIABLES" if flavor == "mariadb"
             else "performance_schema.global_variables")
    columns = ", ".join(f"MAX(CASE WHEN LOWER(VARIABLE_NAME) = '{n}' THEN VARIABLE_VALUE END) "
                        f"AS {n}" for n in names)
    listed = ", ".join(f"'{n}'" for n in names)
    return f"SELECT {columns} FROM {table} WHERE LOWER(VARIABLE_NAME) IN ({listed})"


def links_command(datadir: str) -> str:
    """Prints `isl PATH` for InnoDB link files and `link PATH -> TARGET` for symbolic links in the
    datadir and its schema directories (a schema directory or a table file living elsewhere)."""
    d = q(datadir.rstrip("/"))
    return (f"find {d} -name '*.isl' -printf 'isl %P\\n' 2>/dev/null; "
            f"find {d} -mindepth 1 -maxdepth 2 -type l -printf 'link %P -> %l\\n' 2>/dev/null; true")


def _inside(path: str, datadir: str) -> bool:
    if not path.startswith("/"):
        return True  # relative to the datadir (./app/t.ibd)
    return posixpath.normpath(path).startswith(datadir.rstrip("/") + "/")


def files_inside(tablespaces_json: str, links: str, datadir: str, host: str) -> str:
    """Refuses tablespaces whose file is outside the datadir, InnoDB .isl link files and symbolic
    links (schema directories, MyISAM DATA/INDEX DIRECTORY): the copy of the datadir would miss
    the files or carry links to the donor's own paths."""
    spaces = [(str(name or ""), str(path or "")) for name, path in json.loads(tablespaces_json)]
    outside = [f"tablespace {name or '?'}: {path}" for name, path in spaces
               if path and name.lower() not in _LAYOUT_SPACES
               and not name.lower().startswith("innodb_undo") and not _inside(path, datadir)]
    found = [line.strip() for line in links.splitlines() if line.strip()]
    outside += [f"InnoDB link file {line[4:]}" for line in found if line.startswith("isl ")]
    outside += [f"symbolic link {line[5:]}" for line in found if line.startswith("link ")]
    if outside:
        raise ResyncError(f"on {host} table files live outside the datadir {datadir} or are "
                          f"linked to it ({'; '.join(outside)}): a copy of the datadir would miss "
                          "them. Move them into the datadir (ALTER TABLE ... without DATA "
                          "DIRECTORY, or move the schema directory back) first")
    return "every tablespace file in the datadir; no .isl link files or symbolic links"


def no_encryption(plugins_json: str, variables_json: str, host: str) -> str:
    """Refuses an active keyring / key management plugin or encryption switched on: the copied
    files could only be opened with the donor's keys."""
    plugins = [str(row[0]) for row in json.loads(plugins_json)]
    variables = layout_of(variables_json)
    on = [f"{n}={v}" for n, v in variables.items() if v.upper() in _ENCRYPTED]
    if plugins or on:
        used = ", ".join([*(f"plugin {p}" for p in plugins), *on])
        raise ResyncError(f"on {host} encryption or a keyring is in use ({used}): the copy would "
                          "need the keys, which resync does not carry; rebuild this pair with a "
                          "method that handles the keyring (mariadb-backup/xtrabackup)")
    return "no keyring or key management plugin; encryption off"


def logs_placement(values: Mapping[str, object], datadir: str, host: str) -> str:
    """Where the recipient's binary and relay logs are: never refused. In the datadir they go
    aside with it; outside it they are moved aside with the old datadir too (named here)."""
    parts: list[str] = []
    for name, what in (("log_bin_basename", "binary logs"), ("relay_log_basename", "relay logs")):
        base = str(values.get(name) or "").strip()
        if not base:
            parts.append(f"{what}: none (off)" if name == "log_bin_basename" else f"{what}: none")
        elif _inside(base, datadir):
            parts.append(f"{what} {base}.*: in the datadir, set aside with it")
        else:
            parts.append(f"{what} {base}.*: OUTSIDE the datadir; they are moved aside with the "
                         "old datadir")
    return f"on {host}: " + "; ".join(parts)


def own_files(listing: str, excludes: Sequence[str], host: str) -> str:
    """MySQL keeps TLS keys (*.pem) and SET PERSIST settings (mysqld-auto.cnf) in the datadir:
    informational, what the rebuild does with the recipient's own."""
    names = sorted({line.strip() for line in listing.splitlines() if line.strip()})
    if not names:
        return f"no TLS keys or mysqld-auto.cnf in {host}'s datadir"
    pem = [n for n in names if n.endswith(".pem")]
    out: list[str] = []
    if pem:
        kept = [n for n in pem if f"./{n}" in excludes]
        replaced = [n for n in pem if f"./{n}" not in excludes]
        if kept:
            out.append(f"{host}'s own TLS keys ({', '.join(kept)}) are not copied over: they "
                       "are put back from its old datadir after the copy")
        if replaced:
            out.append(f"{host}'s {', '.join(replaced)} are replaced by the donor's copy")
    if "mysqld-auto.cnf" in names:
        copied = "./mysqld-auto.cnf" not in excludes
        out.append("its mysqld-auto.cnf (SET PERSIST settings) is " +
                   ("replaced by the donor's" if copied else
                    "not copied: the rebuilt server starts without its persisted settings"))
    return "; ".join(out) + " (its own stay in its old datadir)"
