"""Route53: from the record sets as read to the change that registers or deregisters (pure).

- own_record (seed 001): the instance's own A record: UPSERT on register; on deregister, DELETE
  with the exact values read (only when it holds this instance's address).
- round_robin (seed 002): one value of a shared A record. The old set is DELETEd and the new one
  CREATEd in ONE batch: Route53 applies a batch atomically and refuses a DELETE whose values do
  not match, so two instances changing the record at once cannot lose each other's change (a
  plain UPSERT of a read-modify-write could). The last value going: DELETE alone.
- weighted: weight 0 drains (the weight found is recorded), the recorded weight (else the
  configured one) restores.
- multivalue: the instance's own set (SetIdentifier) of a multivalue answer: like own_record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resync.model.errors import ResyncError

RecordSet = dict[str, Any]


@dataclass(frozen=True)
class RecordPlan:
    change: dict[str, Any] | None  # the ChangeBatch to send (None: nothing to change)
    ttl: int  # how long resolvers may still hold what was there
    state: str  # in_service | absent | drained | other_values, before the change
    said: str  # what was found, in words
    weight: int | None = None  # weighted: the weight found


def fqdn(name: str) -> str:
    return name.lower() if name.endswith(".") else f"{name.lower()}."


def find_set(sets: Sequence[Mapping[str, Any]], name: str, identifier: str | None) -> RecordSet | None:
    """The A record set of `name` (and `identifier` for weighted/multivalue), as read."""
    for s in sets:
        if s.get("Type") == "A" and fqdn(str(s.get("Name", ""))) == fqdn(name) \
                and s.get("SetIdentifier") == identifier:
            if "AliasTarget" in s:
                raise ResyncError(f"{name}: an alias record: resync manages plain A records only")
            return dict(s)
    return None


def values_of(found: Mapping[str, Any] | None) -> list[str]:
    return [str(r["Value"]) for r in (found or {}).get("ResourceRecords", [])]


def describe(found: Mapping[str, Any] | None) -> str:
    if found is None:
        return "no such record"
    extra = f" weight {found['Weight']}" if "Weight" in found else ""
    return f"A {', '.join(values_of(found))} TTL {found.get('TTL')}{extra}"


def _batch(*changes: tuple[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {"Changes": [{"Action": a, "ResourceRecordSet": dict(s)} for a, s in changes]}


def _set(name: str, ttl: int, values: Sequence[str], identifier: str | None = None,
         **extra: Any) -> RecordSet:
    out: RecordSet = {"Name": name, "Type": "A"}
    if identifier is not None:
        out["SetIdentifier"] = identifier
    out.update(extra)
    out["TTL"] = ttl
    out["ResourceRecords"] = [{"Value": v} for v in values]
    return out


def _same(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    if a is None:
        return False
    keys = ("SetIdentifier", "Weight", "MultiValueAnswer", "TTL")
    return all(a.get(k) == b.get(k) for k in keys) and sorted(values_of(a)) == sorted(values_of(b))


def state_of(routing: str, found: Mapping[str, Any] | None, address: str | None) -> str:
    if found is None:
        return "absent"
    if routing == "weighted" and found.get("Weight") == 0:
        return "drained"
    if address is None or address in values_of(found):
        return "in_service"
    return "absent" if routing == "round_robin" else "other_values"


def plan_record(op: str, routing: str, found: RecordSet | None, *, name: str,
                address: str | None, ttl: int, weight: int | None,
                identifier: str | None) -> RecordPlan:
    """What to send for `op` (status | register | deregister) given the set as read."""
    state = state_of(routing, found, address)
    said = describe(found)
    old_ttl = int(found.get("TTL", ttl)) if found else ttl
    found_weight = int(found["Weight"]) if found and "Weight" in found else None
    if op == "status":
        return RecordPlan(None, old_ttl, state, said, found_weight)
    if op == "register":
        change = _register(routing, found, name=name, address=address, ttl=ttl, weight=weight,
                           identifier=identifier)
        return RecordPlan(change, old_ttl, state, said, found_weight)
    if op != "deregister":
        raise ValueError(op)
    return RecordPlan(_deregister(routing, found, address), old_ttl, state, said, found_weight)


def _register(routing: str, found: RecordSet | None, *, name: str, address: str | None,
              ttl: int, weight: int | None, identifier: str | None) -> dict[str, Any] | None:
    if address is None:
        raise ResyncError(f"{name}: registering needs the instance's address")
    if routing == "round_robin":
        values = values_of(found)
        if address in values and found is not None and found.get("TTL") == ttl:
            return None
        new = _set(fqdn(name), ttl, [*[v for v in values if v != address], address])
        return _batch(("DELETE", found), ("CREATE", new)) if found else _batch(("CREATE", new))
    if routing == "weighted":
        new = _set(fqdn(name), ttl, [address], identifier, Weight=weight)
    elif routing == "multivalue":
        new = _set(fqdn(name), ttl, [address], identifier, MultiValueAnswer=True)
    else:
        new = _set(fqdn(name), ttl, [address])
    return None if _same(found, new) else _batch(("UPSERT", new))


def _deregister(routing: str, found: RecordSet | None, address: str | None) -> dict[str, Any] | None:
    if found is None:
        return None
    values = values_of(found)
    if routing == "round_robin" and address is None:
        raise ResyncError(f"{found.get('Name')}: removing one value needs the instance's address")
    if routing == "weighted":
        return None if found.get("Weight") == 0 else _batch(("UPSERT", {**found, "Weight": 0}))
    if address is not None and address not in values:
        return None  # not this instance's value: left alone
    if routing == "round_robin" and len(values) > 1:
        rest = {**found, "ResourceRecords": [{"Value": v} for v in values if v != address]}
        return _batch(("DELETE", found), ("CREATE", rest))
    return _batch(("DELETE", found))
