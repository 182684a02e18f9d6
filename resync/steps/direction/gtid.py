"""MariaDB GTID lists, and which of the recipient's GTIDs the donor lacks (pure).

A MariaDB GTID is domain-server_id-seq_no. Within one (domain, server_id) the seq_no only grows,
so a state keeps the last seq_no of each pair, and the donor covers the recipient's GTID d-s-n
when it has the pair (d, s) at n or beyond.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

GtidState = dict[tuple[int, int], int]  # (domain, server_id) -> the last seq_no logged

_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def parse_gtid_list(text: object) -> GtidState:
    """'0-1-5,1-2-7' (gtid_binlog_state, gtid_slave_pos, ...) -> {(0, 1): 5, (1, 2): 7}.

    Empty text or None is the empty state; a (domain, server_id) listed twice keeps its highest
    seq_no. Anything that is not a GTID list is a ValueError (never silently "nothing errant").
    """
    state: GtidState = {}
    if text is None:
        return state
    for item in str(text).replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        m = _GTID.match(item)
        if m is None:
            raise ValueError(f"not a MariaDB GTID: {item!r} (in {str(text)[:200]!r})")
        key = (int(m[1]), int(m[2]))
        state[key] = max(state.get(key, 0), int(m[3]))
    return state


def format_gtid_state(state: Mapping[tuple[int, int], int]) -> str:
    return ",".join(f"{d}-{s}-{n}" for (d, s), n in sorted(state.items())) or "(empty)"


@dataclass(frozen=True)
class Errant:
    """Transactions of one (domain, server_id) the recipient logged and the donor lacks."""

    domain: int
    server_id: int
    recipient_seq: int
    donor_seq: int | None  # the donor's last seq_no for the same domain and server_id

    @property
    def at_most(self) -> int:
        """An upper bound: other servers' GTIDs of the domain may share the seq_no range."""
        return self.recipient_seq - (self.donor_seq or 0)

    def __str__(self) -> str:
        d, s = self.domain, self.server_id
        first = (self.donor_seq or 0) + 1
        span = (f"{d}-{s}-{self.recipient_seq}" if first >= self.recipient_seq
                else f"{d}-{s}-{first}..{d}-{s}-{self.recipient_seq}")
        donor = f"{d}-{s}-{self.donor_seq}" if self.donor_seq is not None else "none"
        count = "transaction" if self.at_most == 1 else "transactions"
        return (f"{span} (domain {d}, server_id {s}: recipient at {self.recipient_seq}, donor's "
                f"last {donor}; at most {self.at_most} {count})")


def mariadb_errant(recipient: Mapping[tuple[int, int], int],
                   donor: Sequence[Mapping[tuple[int, int], int]]) -> tuple[Errant, ...]:
    """The recipient's GTIDs no donor state covers: a GTID d-s-n is covered when one of the
    donor's states has the same domain d and server_id s with a seq_no >= n."""
    out: list[Errant] = []
    for (d, s), n in sorted(recipient.items()):
        seen = [st[(d, s)] for st in donor if (d, s) in st]
        best = max(seen) if seen else None
        if best is None or best < n:
            out.append(Errant(d, s, n, best))
    return tuple(out)
