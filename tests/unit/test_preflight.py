"""Preflight refusals that a sandbox cannot easily stage: too little disk, binlog off, versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resync.actions.dialect import ServerVersion
from resync.model.errors import ResyncError
from resync.model.runbook import load_runbook
from resync.steps import preflight
from resync.steps.copy.commands import CopySpec
from resync.steps.copy.pipeline import DONOR_BYTES
from resync.transport.local import CommandResult

RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "rebuild-old-primary.yaml"
SPEC = CopySpec(donor="db2", recipient="db1", donor_datadir="/var/lib/mysql",
                recipient_datadir="/var/lib/mysql", listen_address="db1", port=7878,
                owner="mysql:mysql", excludes=("./*-bin.[0-9]*",))


class FakeHost:
    def __init__(self, name: str, outputs: dict[str, str]) -> None:
        self.name, self.outputs = name, outputs

    def run(self, command: str, **_: Any) -> CommandResult:
        for prefix, out in self.outputs.items():
            if command.startswith(prefix):
                return CommandResult(self.name, command, 0, out, "")
        raise AssertionError(f"unexpected command on {self.name}: {command}")


class FakeCtx:
    def __init__(self, hosts: dict[str, FakeHost]) -> None:
        self.hosts = hosts
        self.captured: dict[str, Any] = {}

    def host(self, name: str) -> FakeHost:
        return self.hosts[name]

    def capture(self, key: str, value: Any) -> None:
        self.captured[key] = value


def disk_ctx(donor_bytes: int, free_bytes: int) -> FakeCtx:
    return FakeCtx({"db2": FakeHost("db2", {"du -sb": f"{donor_bytes}\n"}),
                    "db1": FakeHost("db1", {"df -B1": f"{free_bytes}\n"})})


def test_too_little_disk_on_the_recipient_is_refused() -> None:
    loaded = load_runbook(RUNBOOK)
    ctx = disk_ctx(donor_bytes=100 * 2**30, free_bytes=105 * 2**30)  # needs 110 GiB
    with pytest.raises(ResyncError, match=r"db1 has 105.00 GiB free under /var/lib, needs 110.00 GiB"):
        preflight._disk(ctx, loaded, SPEC)  # type: ignore[arg-type]


def test_enough_disk_passes_and_records_the_donor_size() -> None:
    loaded = load_runbook(RUNBOOK)
    ctx = disk_ctx(donor_bytes=10 * 2**30, free_bytes=12 * 2**30)
    assert "to copy: 10.00 GiB" in preflight._disk(ctx, loaded, SPEC)  # type: ignore[arg-type]
    assert ctx.captured[DONOR_BYTES] == 10 * 2**30


def test_binlog_off_is_refused() -> None:
    with pytest.raises(ResyncError, match="binary logging is off"):
        preflight._true("0", "binary logging is off")
    assert preflight._true("1", "unused") == "on"


def test_equal_server_ids_are_refused() -> None:
    with pytest.raises(ResyncError, match="same server_id 7"):
        preflight._distinct(7, 7)


@pytest.mark.parametrize(("donor", "recipient", "problem"), [
    ("mariadb-10.11.19", "mariadb-10.6.20", "older than the donor"),
    ("mysql-8.4.3", "mariadb-11.4.4", "one flavor"),
])
def test_incompatible_versions_are_refused(donor: str, recipient: str, problem: str) -> None:
    with pytest.raises(ResyncError, match=problem):
        preflight._compatible(ServerVersion.parse(donor), ServerVersion.parse(recipient))


def test_newer_recipient_is_accepted() -> None:
    assert preflight._compatible(ServerVersion.parse("mariadb-10.6.20"),
                                 ServerVersion.parse("mariadb-10.11.19"))


def test_innodb_files_outside_the_datadir_are_refused() -> None:
    from resync.steps.layout import innodb_dirs_inside

    inside = {"innodb_data_home_dir": "", "innodb_log_group_home_dir": "./",
              "innodb_undo_directory": "/var/lib/mysql/"}
    assert "live in the datadir" in innodb_dirs_inside(inside, "/var/lib/mysql", "db1")
    with pytest.raises(ResyncError, match="innodb_log_group_home_dir=/redo"):
        innodb_dirs_inside({**inside, "innodb_log_group_home_dir": "/redo"}, "/var/lib/mysql", "db1")


def test_settings_baked_into_the_files_must_match() -> None:
    from resync.steps.layout import settings_match

    donor = {"innodb_page_size": "16384", "lower_case_table_names": "0",
             "innodb_data_file_path": "ibdata1:12M:autoextend"}
    assert "innodb_page_size=16384" in settings_match(donor, dict(donor))
    with pytest.raises(ResyncError, match="innodb_page_size: donor '16384', recipient '65536'"):
        settings_match(donor, {**donor, "innodb_page_size": "65536"})
