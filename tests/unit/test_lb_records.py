"""Route53: the change each routing sends, computed from the record set as read."""

from __future__ import annotations

from typing import Any

import pytest

from resync.lb.records import find_set, plan_record
from resync.model.errors import ResyncError

NAME = "web.example.internal."
ME, OTHER = "10.0.0.5", "10.0.0.6"


def rset(*values: str, ttl: int = 60, **extra: Any) -> dict[str, Any]:
    return {"Name": NAME, "Type": "A", **extra, "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values]}


def plan(op: str, routing: str, found: dict[str, Any] | None, *, address: str | None = ME,
         ttl: int = 60, weight: int | None = None, identifier: str | None = None) -> Any:
    return plan_record(op, routing, found, name=NAME, address=address, ttl=ttl, weight=weight,
                       identifier=identifier)


def changes(p: Any) -> list[tuple[str, list[str]]]:
    return [(c["Action"], [r["Value"] for r in c["ResourceRecordSet"]["ResourceRecords"]])
            for c in p.change["Changes"]]


def test_own_record_upserts_then_deletes_the_exact_values() -> None:
    assert changes(plan("register", "own_record", None)) == [("UPSERT", [ME])]
    assert plan("register", "own_record", rset(ME)).change is None  # already so
    found = rset(ME, ttl=300)
    p = plan("deregister", "own_record", found)
    assert p.change == {"Changes": [{"Action": "DELETE", "ResourceRecordSet": found}]}
    assert p.ttl == 300  # what resolvers may hold: the record's TTL, not the configured one
    # someone else's record under a fixed name: left alone
    assert plan("deregister", "own_record", rset(OTHER)).change is None
    assert plan("deregister", "own_record", None).change is None


def test_round_robin_changes_one_value_in_one_atomic_batch() -> None:
    found = rset(OTHER)
    assert changes(plan("register", "round_robin", found)) == [("DELETE", [OTHER]),
                                                                ("CREATE", [OTHER, ME])]
    assert changes(plan("register", "round_robin", None)) == [("CREATE", [ME])]
    assert plan("register", "round_robin", rset(OTHER, ME)).change is None
    both = rset(OTHER, ME, ttl=120)
    assert changes(plan("deregister", "round_robin", both)) == [("DELETE", [OTHER, ME]),
                                                                 ("CREATE", [OTHER])]
    assert plan("deregister", "round_robin", both).change["Changes"][1]["ResourceRecordSet"][
        "TTL"] == 120
    assert changes(plan("deregister", "round_robin", rset(ME))) == [("DELETE", [ME])]
    assert plan("deregister", "round_robin", found).change is None  # not a value: nothing
    with pytest.raises(ResyncError, match="needs the instance's address"):
        plan("deregister", "round_robin", both, address=None)


def test_weighted_drains_to_zero_and_records_the_weight() -> None:
    found = rset(ME, SetIdentifier="i-1", Weight=20)
    p = plan("deregister", "weighted", found, identifier="i-1")
    assert p.change["Changes"][0]["Action"] == "UPSERT"
    assert p.change["Changes"][0]["ResourceRecordSet"]["Weight"] == 0
    assert p.weight == 20 and p.state == "in_service"
    drained = rset(ME, SetIdentifier="i-1", Weight=0)
    assert plan("deregister", "weighted", drained, identifier="i-1").change is None
    assert plan("status", "weighted", drained, identifier="i-1").state == "drained"
    back = plan("register", "weighted", drained, identifier="i-1", weight=20)
    assert back.change["Changes"][0]["ResourceRecordSet"]["Weight"] == 20


def test_multivalue_is_the_instances_own_set() -> None:
    p = plan("register", "multivalue", None, identifier="i-1")
    new = p.change["Changes"][0]["ResourceRecordSet"]
    assert (new["SetIdentifier"], new["MultiValueAnswer"]) == ("i-1", True)
    found = rset(ME, SetIdentifier="i-1", MultiValueAnswer=True)
    assert plan("deregister", "multivalue", found, identifier="i-1").change == {
        "Changes": [{"Action": "DELETE", "ResourceRecordSet": found}]}


def test_find_set_matches_name_type_and_identifier() -> None:
    sets = [rset(ME, SetIdentifier="a", Weight=1), rset(OTHER, SetIdentifier="b", Weight=1),
            {**rset(ME), "Name": "other.example.internal."}, {**rset(ME), "Type": "TXT"}]
    assert find_set(sets, "WEB.example.internal", "b") == sets[1]
    assert find_set(sets, NAME, None) is None
    with pytest.raises(ResyncError, match="alias"):
        find_set([{"Name": NAME, "Type": "A", "AliasTarget": {}}], NAME, None)


def test_status_states() -> None:
    assert plan("status", "own_record", None).state == "absent"
    assert plan("status", "own_record", rset(ME)).state == "in_service"
    assert plan("status", "own_record", rset(OTHER)).state == "other_values"
    assert plan("status", "round_robin", rset(OTHER)).state == "absent"
    assert plan("status", "round_robin", rset(OTHER)).change is None
