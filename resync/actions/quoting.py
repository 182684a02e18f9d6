"""How values appear in SQL and shell text: one renderer each, used by plans and execution alike.

SQL literals are rendered by pymysql's own escaping, so a rendered statement is byte for byte
what the driver sends once it interpolates the bound parameters.
"""

from __future__ import annotations

import json
import shlex

from pymysql.converters import escape_item

from resync.model.secrets import MASK, EnvSecret, Secret

SQL_MASK = f"'{MASK}'"


def sql_literal(value: object) -> str:
    """A value as pymysql sends it in a statement (secrets masked)."""
    if isinstance(value, Secret | EnvSecret):
        return SQL_MASK
    return str(escape_item(value, "utf8mb4"))


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def table_list(value: object) -> str:
    """A captured JSON list of [schema, table] pairs as `schema`.`table`, ... for SQL."""
    pairs = json.loads(str(value)) if value else []
    return ", ".join(".".join(quote_ident(str(p)) for p in pair) for pair in pairs)


def q(value: str) -> str:
    """Shell-quote one word."""
    return shlex.quote(value)


def argv(*words: str) -> str:
    """A command line from its words, each quoted as needed."""
    return shlex.join(words)
