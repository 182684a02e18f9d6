"""The fault matrix of test_faults.py for the EBS copy method: nothing acknowledged is ever lost,
and nothing of the run is left in AWS, mounted or frozen.

The seed scenario (helpers.fail_over_and_damage_db1: db1 the damaged old primary, rebuilt from
db2, the replica the application failed over to; db1 primary afterwards) with `copy.method:
ebs`, mode copy, `freeze: true`, on loop-volume sandboxes and moto's EC2 (ebs_peer.py: snapshots,
volumes, attach and detach have their block-level effect on loop devices; one world per test).
The steps come from `resync plan --format json` of that runbook, built at collection without
connecting anywhere (the installed mariadbd's version is given, the instance ids are
placeholders); each run checks that its journal has exactly these steps.

Kill points: after every step k (SIGKILL of the controller `resync run --yes` alone, as soon as
its journal shows k done), and twice inside a step:
- mid-copy: once the copy step's tar from the volume mounted at /mnt/resync-<run_id> has
  started. BALLAST_MB of random data in the donor's datadir make the tar last (it reads a loop
  device fed from the page cache): the kill lands while it runs; each case says whether it
  still ran after the kill.
- frozen: inside the donor's create_snapshot call (the world's probe kills the controller from
  moto's thread; the call completes for a dead client), i.e. between `fsfreeze -f` of the
  donor's datadir filesystem and its thaw, with a snapshot made whose id the run never got. The
  stream matrix has no such point (no freeze); it is the worst place for an EBS crash.
While the controller is dead the application user writes one row to each server. Only the
acknowledged writes count: after the snapshot step the donor db2 is read-only (it becomes the
replica), so its write is refused, correctly; while frozen it hangs and times out.

- resume: exit 0 with every acknowledged write on both servers, CHECKSUM TABLE equal
  (`resync verify`), nothing of the run left in AWS (`ebs-release` deletes the volume and the
  snapshot: keep_snapshot is off), nothing mounted at /mnt/resync-<run_id>, the volume's loop
  device gone, the donor's filesystem not frozen (`fsfreeze -u` answers "Invalid argument"),
  no copy end left running, no refusal by the EBS world's hooks (detaching a mounted volume...).
  Or, only when db1 acknowledged a write while the controller was dead (until it is stopped,
  db1 takes writes: a transaction db2 lacks, which the rebuild would throw away), a clear
  refusal by the errant gate with every acknowledged write still where it was written, nothing
  mounted or frozen; then `resync rollback` of that run must restore the topology as below
  (that is the operator's way out, and the snapshot must go with it).
- rollback: both servers back in the topology recorded before the run (db1 on its old datadir,
  db2 on its data, not replicating, read_only as before: writable again after the snapshot step
  set it read-only), every acknowledged write still served (unless the CLI asked for --force:
  then db2's), no volume or snapshot tagged with the run id left in AWS, nothing mounted,
  nothing frozen, no loop device of the world's left attached.

Runtime: each case is a fresh sandbox pair and EBS world, ~10-12 s; the resume cases alone are
close to four minutes. Rollback points (ROLLBACK_POINTS) are therefore the ones where the run
holds something a rollback must take back that no other point covers: `ebs-snapshot` (snapshot
made, donor read-only), `frozen` (donor frozen, a snapshot the journal does not know of),
`move-datadir-aside` (destructive: db1's datadir aside, before any volume), mid-copy (volume
attached and mounted, a tar reading it), `copy-datadir` (volume attached, unmounted; db1 on the
copy) and the last step (finished run: the CLI asks for --force, which it gets). Left out:
`ebs-volume` (its undo is the one `copy-datadir` exercises), `reset-binlogs` and the steps up to
`make-writable` (no EBS state beyond copy-datadir's; their undos are the stream matrix's, and
the last step's --force rollback runs them all). The resume cases that stop at the errant gate
(the kill points before db1 is stopped) also roll back, from a state none of the above has.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws import aws_fixture, moto_endpoint_fixture  # noqa: F401  (fixtures by name)
from ebs_peer import (  # noqa: F401  (fixtures by name)
    NEW_DEVICE,
    EbsWorld,
    ebs_pair_fixture,
    ebs_world_fixture,
    mounts_of,
)
from helpers import (
    app_write,
    copy_ends_of,
    dialect,
    fail_over_and_damage_db1,
    journal_tail,
    kill_when,
    load_app_data,
    plan_json,
    process_lines,
    read_journal,
    resync,
    server_version_arg,
    start_run,
    step_states,
    stop_copy_ends,
    try_sql,
)

from resync.testing.sandbox import REPL_PASSWORD_ENV, Sandbox, mount_table

pytestmark = pytest.mark.integration

MID_COPY = "mid-copy"
FROZEN = "frozen"
SERVERS = ("db1", "db2")
DONOR, RECIPIENT = "db2", "db1"
ROW_BASE = 60000  # the rows written while the controller is dead: 60001 on db1, 60002 on db2
BALLAST_MB = 300  # mid-copy: a file of the donor's datadir that makes the tar last


def ebs_seed_runbook(tmp_path: Path, hosts: dict[str, Any], ebs: dict[str, Any]) -> Path:
    """The seed scenario's runbook with the EBS copy (mode copy, freeze)."""
    doc = {
        "version": 1, "name": "ebs-faults-db2-to-db1", "hosts": hosts,
        "donor": DONOR, "recipient": RECIPIENT, "primary_after": RECIPIENT,
        "replication": {"user": "repl", "password_env": REPL_PASSWORD_ENV, "healthy_timeout": 60},
        "copy": {"method": "ebs", "stall_timeout": 30,
                 "ebs": {**ebs, "mode": "copy", "freeze": True, "timeout": 120}},
        "locks": {"lock_wait_timeout": 10},
    }
    path = tmp_path / "runbook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# --- the matrix, from the plan --------------------------------------------------------------------
def _seed_plan_steps() -> tuple[list[dict[str, Any]], str | None]:
    """The plan's steps, built without connecting anywhere (placeholder instance ids)."""
    with tempfile.TemporaryDirectory(prefix="resync-faults-ebs-plan-") as tmp:
        root = Path(tmp)
        hosts = Sandbox(root / "sandbox", base_port=20000).runbook_hosts()  # nothing is created
        ebs = {"donor_instance": "i-0123456789abcdef0", "recipient_instance": "i-0123456789abcdef1",
               "device": NEW_DEVICE, "test_serials": {"loop9": "vol0123456789abcdef0"}}
        runbook = ebs_seed_runbook(root, hosts, ebs)
        versions = server_version_arg()
        try:
            doc = plan_json(root, runbook, *(["--server-version", versions] if versions else []))
        except Exception as exc:  # reported by every case of the matrix, not as a collection error
            return [], f"{type(exc).__name__}: {exc}"
    return doc["steps"], None


PLAN_STEPS, PLAN_ERROR = _seed_plan_steps()
STEP_KEYS = [s["key"] for s in PLAN_STEPS]
COPY_KEY = next((k for k in STEP_KEYS if k.startswith("copy-datadir")), None)
SNAPSHOT_KEY = next((k for k in STEP_KEYS if k.startswith("ebs-snapshot")), None)
KILL_POINTS = [*STEP_KEYS, *([FROZEN] if SNAPSHOT_KEY else []), *([MID_COPY] if COPY_KEY else [])]


def _first(prefix: str) -> list[str]:
    return [k for k in STEP_KEYS if k.startswith(prefix)][:1]


# see the module's docstring for the choice
ROLLBACK_POINTS = list(dict.fromkeys([
    *_first("ebs-snapshot"), *([FROZEN] if SNAPSHOT_KEY else []), *_first("move-datadir-aside"),
    *([MID_COPY] if COPY_KEY else []), *_first("copy-datadir"), *STEP_KEYS[-1:]]))
if PLAN_ERROR:
    KILL_POINTS = ROLLBACK_POINTS = ["plan-unavailable"]


# --- one crash ------------------------------------------------------------------------------------
@dataclass
class Crash:
    kill_point: str
    world: EbsWorld
    runbook: Path
    journal: Path
    run_id: str
    at_kill: dict[str, Any]  # the journal as the killed process left it
    before: dict[str, dict[str, Any]]  # each server's state before the run
    writes: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # name -> (id, refusal)
    run_err: str = ""
    datadirs: list[str] = field(default_factory=list)  # of this test's servers
    at_kill_seen: str = ""  # what was true on the machine right after the kill

    @property
    def pair(self) -> Sandbox:
        return self.world.sandbox

    def acknowledged(self) -> dict[str, int]:
        return {name: row for name, (row, refused) in self.writes.items() if refused is None}

    def landed(self) -> str:
        states = step_states(self.at_kill)
        running = [k for k, v in states.items() if v not in ("done", "pending")]
        return (f"killed with {running or 'no step'} under way, outcome "
                f"{self.at_kill.get('outcome')}{self.at_kill_seen}")

    def story(self, *more: str) -> str:
        lines = [f"kill point: {self.kill_point}; {self.landed()}",
                 "writes while dead: " + ", ".join(
                     f"{n}: row {row} " + ("ACKNOWLEDGED" if why is None else f"refused ({why})")
                     for n, (row, why) in self.writes.items()),
                 "journal at the kill:", journal_tail(self.at_kill, commands=5),
                 *([f"the killed run's stderr: {self.run_err}"] if self.run_err.strip() else []),
                 f"EBS world events: {self.world.kinds()}; errors: {self.world.errors}"]
        return "\n".join([*lines, *more])


def _replica_state(pair: Sandbox, name: str) -> dict[str, Any] | None:
    d = dialect(pair, name)
    rows = try_sql(pair, name, d.replica_status().sql)
    if isinstance(rows, str) or not rows:
        return None if not isinstance(rows, str) else {"error": rows}
    f, row = d.status_fields, rows[0]
    return {"io": row[f.io_running], "sql": row[f.sql_running], "host": row[f.source_host],
            "port": int(row[f.source_port]), "using_gtid": str(row[f.using_gtid])}


def _read_only(pair: Sandbox, name: str) -> int | str:
    ro = try_sql(pair, name, "SELECT @@GLOBAL.read_only AS ro")
    return ro if isinstance(ro, str) else int(ro[0]["ro"])


def _server_state(pair: Sandbox, name: str) -> dict[str, Any]:
    return {"read_only": _read_only(pair, name), "replica": _replica_state(pair, name)}


def _scratch(run_id: str) -> Path:
    return Path(f"/mnt/resync-{run_id}")


def _add_ballast(pair: Sandbox) -> None:
    """A file of BALLAST_MB MiB of random data in the donor's datadir (not a table: the server
    ignores it, the copy takes it along; random: nothing sparse or compressible in it)."""
    target = pair[DONOR].datadir / "ballast.bin"
    with target.open("wb") as out:
        for _ in range(BALLAST_MB):
            out.write(os.urandom(1 << 20))


def _thawed(path: Path) -> str | None:
    """None if the filesystem at path is not frozen (`fsfreeze -u` says Invalid argument), else
    what fsfreeze answered (a frozen one is thawed by it: the test goes on with it thawed)."""
    done = subprocess.run(["fsfreeze", "-u", str(path)], capture_output=True, text=True,
                          timeout=30)
    if done.returncode != 0 and "Invalid argument" in done.stderr:
        return None
    return f"fsfreeze -u {path}: exit {done.returncode} {done.stderr.strip()!r} (it WAS frozen)"


def _tagged(world: EbsWorld, run_id: str) -> dict[str, list[str]]:
    ec2 = world.aws.client("ec2")
    by_tag = [{"Name": "tag:resync:run-id", "Values": [run_id]}]
    return {"volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=by_tag)["Volumes"]],
            "snapshots": [s["SnapshotId"] for s in ec2.describe_snapshots(
                OwnerIds=["self"], Filters=by_tag)["Snapshots"]]}


def _ebs_leftovers(crash: Crash, *, aws: bool = True) -> list[str]:
    """What of the run is left that must not be: in AWS (aws=True), mounted, frozen, running,
    and every refusal of the world's hooks (a refusal there is a product bug: e.g. detaching a
    mounted volume)."""
    world, problems = crash.world, []
    if aws and (left := _tagged(world, crash.run_id)) != {"volumes": [], "snapshots": []}:
        problems.append(f"in AWS, tagged with the run id: {left}")
    scratch = _scratch(crash.run_id)
    mounted = [f"{m.source} on {m.target}" for m in mount_table()
               if m.target == scratch or str(m.target).startswith(f"{scratch}/")]
    mounted += [f"{world.restore_device} on {m.target}" for m in mounts_of(world.restore_device)
                if world.restore_device in world.our_bound_devices()]
    if mounted:
        problems.append(f"still mounted: {sorted(set(mounted))}")
    if aws and (bound := world.our_bound_devices()):
        problems.append(f"the volume's loop device still attached: {sorted(bound)}")
    if (frozen := _thawed(crash.pair[DONOR].base)) is not None:
        problems.append(f"the donor's filesystem was left frozen: {frozen}")
    if left_ends := copy_ends_of(crash.run_id, crash.datadirs):
        problems.append(f"copy ends left running: {process_lines(left_ends)}")
    if world.errors:
        problems.append(f"the EBS world's hooks refused: {world.errors}")
    return problems


def _clean_up(crash: Crash) -> None:
    """Teardown of what a failed case left of the run (the fixtures release the rest): its copy
    ends (they would hold the mount), its scratch mount and directory."""
    stop_copy_ends(crash.run_id, crash.datadirs)
    scratch = _scratch(crash.run_id)
    if os.path.ismount(scratch):
        subprocess.run(["umount", str(scratch)], capture_output=True, check=False, timeout=60)
    if scratch.is_dir() and not os.path.ismount(scratch):
        with contextlib.suppress(OSError):
            scratch.rmdir()


def _frozen_now(j: dict[str, Any]) -> bool:
    """The snapshot step has frozen the donor's filesystem and not thawed it yet."""
    texts = [c["text"] for c in j["commands"] if c["step"] == SNAPSHOT_KEY and c["phase"] == "run"]
    return (step_states(j).get(str(SNAPSHOT_KEY)) == "running"
            and any(t.startswith("fsfreeze -f") for t in texts)
            and not any("fsfreeze -u" in t for t in texts))


class SnapshotKiller:
    """The world's probe that SIGKILLs the controller from inside the donor's create_snapshot
    (in moto's thread, before the snapshot's copy): the call completes for a dead client."""

    def __init__(self) -> None:
        self.pid, self.done = 0, threading.Event()  # pid: set once the run is started

    def __call__(self, name: str) -> str:
        if name != DONOR or self.done.is_set() or not self.pid:
            return "not killing"
        os.kill(self.pid, signal.SIGKILL)
        self.done.set()
        return f"controller {self.pid} killed"


def _kill_in_create_snapshot(tmp_path: Path, world: EbsWorld,
                             proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    killer = world.probe
    assert isinstance(killer, SnapshotKiller)
    killer.pid = proc.pid
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the run never called create_snapshot; steps: "
                             f"{step_states(read_journal(tmp_path))}") from None
    finally:
        world.probe = None
    assert killer.done.is_set(), (
        f"the run ended (exit {proc.returncode}) before its snapshot; steps: "
        f"{step_states(read_journal(tmp_path))}\n"
        f"{(tmp_path / 'run.err').read_text(errors='replace')[-3000:]}")
    journal = read_journal(tmp_path)
    assert journal is not None
    return journal


def _kill_run(tmp_path: Path, world: EbsWorld, kill_point: str) -> Crash:
    """Seed, start the run, SIGKILL it at the kill point, write as the application meanwhile."""
    if PLAN_ERROR:
        pytest.fail(f"the seed scenario's EBS plan could not be built at collection: {PLAN_ERROR}")
    pair = world.sandbox
    load_app_data(pair)
    fail_over_and_damage_db1(pair)
    runbook = ebs_seed_runbook(tmp_path, pair.runbook_hosts(),
                               world.ebs_section(DONOR, RECIPIENT))
    if kill_point == MID_COPY:
        _add_ballast(pair)
    before = {name: _server_state(pair, name) for name in SERVERS}
    if kill_point == FROZEN:
        world.probe = SnapshotKiller()
    proc = start_run(tmp_path, runbook)
    seen = ""
    try:
        if kill_point == MID_COPY:
            copy_key = str(COPY_KEY)

            def reached(j: dict[str, Any]) -> bool:  # the tar from the mounted volume started
                return (step_states(j).get(copy_key) == "running"
                        and os.path.ismount(_scratch(j["run_id"]))
                        and any(c["step"] == copy_key and c["ok"] is None for c in j["commands"]))
            at_kill = kill_when(tmp_path, proc, reached)
            ends = copy_ends_of(at_kill["run_id"], [str(s.datadir) for s in pair])
            seen = (f"; scratch mount {'there' if os.path.ismount(_scratch(at_kill['run_id'])) else 'GONE'}"
                    f", tar {'still running' if ends else 'already ended'} after the kill")
        elif kill_point == FROZEN:
            at_kill = _kill_in_create_snapshot(tmp_path, world, proc)
            seen = "; killed inside create_snapshot, the donor's filesystem frozen"
        else:
            at_kill = kill_when(tmp_path, proc, lambda j: step_states(j).get(kill_point) == "done")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    journal = sorted((tmp_path / "resync-journal").glob("*.json"))[0]
    crash = Crash(kill_point, world, runbook, journal, at_kill["run_id"], at_kill, before,
                  run_err=(tmp_path / "run.err").read_text(errors="replace")[-2000:],
                  datadirs=[str(server.datadir) for server in pair], at_kill_seen=seen)
    assert list(step_states(at_kill)) == STEP_KEYS, (
        "this run's plan (detected) has other steps than the matrix collected from "
        f"`resync plan`: {list(step_states(at_kill))} vs {STEP_KEYS}")
    if kill_point == MID_COPY:
        assert step_states(at_kill)[str(COPY_KEY)] == "running", crash.story("the copy ended")
    if kill_point == FROZEN:
        assert _frozen_now(at_kill), crash.story("not killed while frozen")
    for i, name in enumerate(SERVERS, 1):
        row = ROW_BASE + i
        crash.writes[name] = (row, app_write(pair, name, row, f"while dead on {name}"))
    return crash


def _missing_rows(pair: Sandbox, where: dict[tuple[str, str], int],
                  timeout: float) -> dict[str, str]:
    """Of {(acknowledged by, looked for on): row}, those not there within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        missing, final = {}, False
        for (name, server), row in where.items():
            got = try_sql(pair, server, f"SELECT id FROM app.orders WHERE id = {int(row)}")
            if got != [{"id": row}]:
                missing[f"row {row} (acknowledged by {name}) on {server}"] = (
                    got if isinstance(got, str) else "absent")
                final = final or server == name
        if not missing or final or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def _result(crash: Crash, text: str) -> None:
    writes = ", ".join(f"{n} {'ACK' if why is None else 'refused'}"
                       for n, (_, why) in crash.writes.items())
    print(f"FAULT-MATRIX-EBS {crash.kill_point}: {crash.landed()}; writes: {writes}; {text}")


# --- rollback, and what it must restore ------------------------------------------------------------
def _rollback(tmp_path: Path, crash: Crash) -> tuple[subprocess.CompletedProcess[str], str]:
    """`resync rollback --yes`; with --force when the CLI asks for it. Returns the last answer and
    the note of a refused plain rollback ('' if none)."""
    proc = resync(tmp_path, "rollback", "--yes", str(crash.journal))
    if proc.returncode == 3 and "--force" in proc.stderr:
        forced = f"plain rollback refused (exit 3): {proc.stderr.strip()}; then --force\n"
        return resync(tmp_path, "rollback", "--yes", "--force", str(crash.journal)), forced
    return proc, ""


def _topology_restored(crash: Crash, proc: subprocess.CompletedProcess[str], forced: str,
                       story: str) -> None:
    pair = crash.pair
    assert proc.returncode == 0, story
    # db1 runs on its own old datadir again (its damage included), not on the copy
    assert try_sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 9999") == [
        {"n": 1}], f"db1 is not back on its old datadir\n{story}"
    assert try_sql(pair, "db1", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [
        {"n": 0}], f"db1 still has db2's data\n{story}"
    # db2 runs on its data and does not replicate (the failover had stopped it)
    assert try_sql(pair, "db2", "SELECT COUNT(*) AS n FROM app.orders WHERE id = 5001") == [
        {"n": 1}], f"db2 lost its data\n{story}"
    now = {name: _server_state(pair, name) for name in SERVERS}
    story += f"\nbefore the run: {json.dumps(crash.before)}\nafter rollback: {json.dumps(now)}"
    db2, was = now["db2"]["replica"] or {}, crash.before["db2"]["replica"] or {}
    assert db2.get("sql") != "Yes", (
        f"db2 replicates from {db2.get('host')}:{db2.get('port')} after the rollback\n{story}")
    assert (db2.get("io"), db2.get("sql"), db2.get("host"), db2.get("port"),
            db2.get("using_gtid")) == (was.get("io"), was.get("sql"), was.get("host"),
                                       was.get("port"), was.get("using_gtid")), (
        f"db2's replication is not as recorded before the run\n{story}")
    assert (now["db1"]["replica"] or {}).get("sql") == (
        crash.before["db1"]["replica"] or {}).get("sql"), f"db1's replication changed\n{story}"
    for name in SERVERS:  # db2 writable again: the snapshot step had set it read-only
        assert now[name]["read_only"] == crash.before[name]["read_only"], (
            f"{name}: read_only {now[name]['read_only']}, before the run "
            f"{crash.before[name]['read_only']}\n{story}")
    # the writes acknowledged while the controller was dead are still served, unless --force
    kept = {n: row for n, row in crash.acknowledged().items() if not forced or n == "db2"}
    missing = _missing_rows(pair, {(n, n): row for n, row in kept.items()}, 2)
    assert not missing, (f"a rollback {'with' if forced else 'without'} --force threw away "
                         f"acknowledged writes: {missing}\n{story}")
    # nothing of the run in AWS (keep_snapshot is off), mounted or frozen
    left = _ebs_leftovers(crash)
    assert not left, f"after the rollback: {left}\n{story}"
    assert crash.world.restored is None, f"the volume from the snapshot still exists\n{story}"


# --- resume ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_kill_then_resume_loses_nothing_and_leaves_nothing(tmp_path: Path, ebs_pair: EbsWorld,
                                                           kill_point: str) -> None:
    world = ebs_pair
    crash = _kill_run(tmp_path, world, kill_point)
    pair = crash.pair
    try:
        proc = resync(tmp_path, "resume", "--yes", str(crash.journal))
        after = read_journal(tmp_path)
        outcome = (after or {}).get("outcome")
        resumed = (f"resume exit {proc.returncode}; stderr:\n{proc.stderr[-2500:]}\n"
                   f"stdout tail:\n{proc.stdout[-1500:]}")
        story = crash.story(resumed, "journal after resume:", journal_tail(after))
        acknowledged = crash.acknowledged()

        assert "Traceback" not in proc.stderr, story
        if proc.returncode == 0 or outcome == "done":
            assert outcome == "done", story
            missing = _missing_rows(pair, {(name, server): row for name, row in
                                           acknowledged.items() for server in SERVERS}, 15)
            assert not missing, f"acknowledged writes missing: {missing}\n{story}"
            verify = resync(tmp_path, "verify", str(crash.runbook))
            assert verify.returncode == 0, (f"resync verify -> {verify.returncode}\n"
                                            f"{verify.stdout[-2000:]}\n{verify.stderr}\n{story}")
            left = _ebs_leftovers(crash)
            assert not left, f"after the resumed run: {left}\n{story}"
            _result(crash, f"resume exit {proc.returncode}, outcome done; acknowledged "
                           f"{sorted(acknowledged)}: on both servers; verify ok; nothing left")
            return
        # stopped: only by the errant gate, for a write db1 acknowledged (the rebuild would
        # throw it away), with a clear message, and nothing lost where it was acknowledged
        problems = []
        if proc.returncode not in (1, 3) or "resync:" not in proc.stderr:
            problems.append(f"exit {proc.returncode} without a message")
        if "db1" not in acknowledged or "transactions db2 lacks" not in proc.stderr:
            problems.append("resume stopped, not by the errant gate for a write db1 acknowledged")
        # (a server the run left stopped is looked at after the rollback, which starts it:
        # started here, the rollback would find it running where it must restore its datadir)
        if missing := _missing_rows(pair, {(name, name): row for name, row in
                                           acknowledged.items() if pair[name].is_running()}, 2):
            problems.append(f"acknowledged writes gone: {missing}")
        problems += _ebs_leftovers(crash, aws=False)  # the snapshot stays until the rollback
        assert not problems, f"after the stopped resume: {problems}\n{story}"
        message = proc.stderr.strip().splitlines()[0]
        stopped_with = {name: _read_only(pair, name) for name in SERVERS}
        # the way out: the rollback of that run restores the topology and deletes the snapshot
        undo, forced = _rollback(tmp_path, crash)
        story = crash.story(resumed, f"{forced}rollback exit {undo.returncode}; stderr:\n"
                                     f"{undo.stderr[-2500:]}\nstdout tail:\n{undo.stdout[-1500:]}",
                            "journal after rollback:", journal_tail(read_journal(tmp_path)))
        _topology_restored(crash, undo, forced, story)
        _result(crash, f"resume exit {proc.returncode} (outcome {outcome}): {message}; "
                       f"acknowledged {sorted(acknowledged)} still where written; read_only "
                       f"after it {stopped_with} (before the run: "
                       f"{ {n: crash.before[n]['read_only'] for n in SERVERS} }); then "
                       f"{'rollback --force' if forced else 'rollback'}: topology restored")
    finally:
        _clean_up(crash)


# --- rollback -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kill_point", ROLLBACK_POINTS)
def test_kill_then_rollback_restores_and_deletes_what_the_run_made(
        tmp_path: Path, ebs_pair: EbsWorld, kill_point: str) -> None:
    world = ebs_pair
    crash = _kill_run(tmp_path, world, kill_point)
    try:
        finished = crash.at_kill.get("outcome") == "done" or all(
            v == "done" for v in step_states(crash.at_kill).values())
        proc, forced = _rollback(tmp_path, crash)
        if proc.returncode == 3 and finished and not forced:
            pytest.skip(f"the CLI refuses to roll back a finished run: {proc.stderr.strip()}")
        after = read_journal(tmp_path)
        story = crash.story(
            f"{forced}rollback exit {proc.returncode}; stderr:\n{proc.stderr[-2500:]}\n"
            f"stdout tail:\n{proc.stdout[-1500:]}", "journal after rollback:",
            journal_tail(after))
        _topology_restored(crash, proc, forced, story)
        assert (after or {}).get("outcome") == "rolled back", story
        _result(crash, f"{forced.strip() or 'rollback'} exit 0; topology as recorded; "
                       f"acknowledged {sorted(crash.acknowledged())}; nothing left in AWS, "
                       "mounted or frozen")
    finally:
        _clean_up(crash)
