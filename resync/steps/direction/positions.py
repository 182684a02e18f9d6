"""MySQL without GTIDs: binary log positions (pure).

Without GTIDs only a replica of the recipient shows how far it got in the recipient's binary log,
so the donor's executed position is compared only when the donor replicates from the recipient.
"""

from __future__ import annotations

from collections.abc import Sequence


def binlog_sequence(file: str) -> int:
    """The numeric suffix of a binary log file name: mysql-bin.000012 -> 12."""
    _, _, suffix = str(file).rpartition(".")
    if not suffix.isdigit():
        raise ValueError(f"not a binary log file name: {file!r}")
    return int(suffix)


def position_ahead(recipient: tuple[str, int], donor: tuple[str, int]) -> bool:
    """Whether the recipient's binary log position is past the donor's executed one (file by
    its numeric suffix, then position)."""
    return (binlog_sequence(recipient[0]), int(recipient[1])) > \
        (binlog_sequence(donor[0]), int(donor[1]))


def replicates_from(source_host: object, source_port: object, names: Sequence[str],
                    port: int) -> bool:
    """Whether a replica's source (SHOW REPLICA STATUS) is the server at one of `names`:`port`."""
    if source_host is None or str(source_host).strip() == "":
        return False
    try:
        same_port = int(str(source_port)) == port
    except ValueError:
        return False
    return same_port and str(source_host).strip().lower().rstrip(".") in \
        {n.lower().rstrip(".") for n in names}
