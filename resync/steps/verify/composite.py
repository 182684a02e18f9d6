"""The chunked verify as one composite action: rounds of snapshots for the transactional tables,
one short lock per chunk for the others, progress kept in the journal as it goes."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from resync.actions.dialect import Dialect
from resync.actions.types import Composite, Leaf
from resync.model.keys import (
    VERIFY_PRIMARY_SUMS,
    VERIFY_REPLICA_SUMS,
    VERIFY_REPORT,
    VERIFY_TABLES,
    Key,
)
from resync.run.executor import CompositeRun
from resync.steps.verify.chunks import LOCK_BUDGET, ROUND_SECONDS, transactional
from resync.steps.verify.parts import (
    MDL_CHECK_SECONDS,
    MDL_WAITERS,
    Mode,
    VerifyParts,
    by_gtid,
    verify_parts,
)
from resync.steps.verify.progress import (
    CHUNKS_READ,
    PROGRESS,
    REPLICA_TABLES,
    RESUMED,
    Progress,
    TableProgress,
    checksum_texts,
)
from resync.steps.verify.scan import NextRound, Scanner
from resync.steps.verify.sync import Server, Syncer, Tally

CHECKPOINT_SECONDS = 2.0  # the progress is written to the journal at most this often
LONGEST_LOCK = Key("verify.longest_lock_seconds")
NEXT_ROUND_LIMIT = 3  # rounds a table may be put off (its definition kept changing)


class ChunkedVerify(Composite):
    def __init__(self, primary: str, replica: str, primary_dialect: Dialect,
                 replica_dialect: Dialect, mode: Mode, lock_timeout: int) -> None:
        self.primary, self.replica = primary, replica
        self.dialects = (primary_dialect, replica_dialect)
        self.by_gtid = by_gtid(mode, replica_dialect)
        self.lock_timeout = lock_timeout
        self.layout: VerifyParts = verify_parts(primary, replica, primary_dialect,
                                                replica_dialect, mode)
        self.host = primary
        self.title = (f"checksum every user table on {primary} and {replica} in key chunks, "
                      "both servers at one binlog position at a time, no long lock")

    def parts(self) -> tuple[Leaf, ...]:
        return self.layout.leaves

    def execute(self, run: CompositeRun) -> None:
        Verifier(self, run).verify()


def _listed(raw: object) -> list[tuple[str, str, str, int]]:
    return [(str(s), str(t), str(e or ""), int(n or 0)) for s, t, e, n in json.loads(str(raw))]


class Verifier:
    def __init__(self, action: ChunkedVerify, run: CompositeRun) -> None:
        self.action, self.ctx = action, run
        self.tallies = {name: Tally() for name in action.layout.names}
        pd, rd = action.dialects
        self.primary = Server(run, action.primary, pd, "primary", self.tallies)
        self.replica = Server(run, action.replica, rd, "replica", self.tallies)
        self.syncer = Syncer(self.primary, self.replica, action.by_gtid, action.lock_timeout,
                             LOCK_BUDGET)
        self.progress = Progress()
        self.saved = 0.0
        self.mdl_checked = 0.0
        self.put_off: dict[str, int] = {}

    def verify(self) -> None:
        layout, run = self.action.layout, self.ctx
        run.do(layout.index("tables"))
        run.do(layout.index("replica_tables"))
        self.progress = Progress.load(run.captured)
        run.capture(RESUMED, self.progress.reconcile(self._tables()))
        failure: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-replica")
        scanner = Scanner(self.primary, self.replica, pool)
        try:
            self.syncer.recover()
            self._rounds(scanner)
            self._locked(scanner)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            pool.shutdown(wait=True)
            self.primary.close()
            self.replica.close()
            self._save(force=True)
            run.capture(CHUNKS_READ, scanner.chunks_read)
            run.capture(LONGEST_LOCK, round(self.syncer.longest_lock, 3))
            self._publish()
            self._records(failure)

    def _tables(self) -> list[tuple[str, str, str, int]]:
        """Every table of either server (one only on the replica is compared too): the
        primary's engine, the non-transactional one if they differ."""
        captured = self.ctx.captured
        primary = {f"{s}.{t}": (s, t, e, n) for s, t, e, n in _listed(captured[str(VERIFY_TABLES)])}
        replica = {f"{s}.{t}": (s, t, e, n) for s, t, e, n in _listed(captured[str(REPLICA_TABLES)])}
        out = []
        for name in sorted({*primary, *replica}):
            mine, theirs = primary.get(name), replica.get(name)
            row = mine or theirs
            assert row is not None
            engine = row[2]
            if mine and theirs and transactional(mine[2]) != transactional(theirs[2]):
                engine = mine[2] if not transactional(mine[2]) else theirs[2]
            out.append((row[0], row[1], engine, row[3]))
        return out

    # -- the work ---------------------------------------------------------------------------------
    def _rounds(self, scanner: Scanner) -> None:
        """Transactional tables, chunk after chunk, in snapshot pairs of ROUND_SECONDS each."""
        while self.progress.open_tables(snapshot=True):
            scanner.shapes.clear()  # a table's columns are read again in each snapshot
            self.syncer.open_round()
            self.progress.syncs += 1
            deadline = time.monotonic() + ROUND_SECONDS
            try:
                for t in self.progress.open_tables(snapshot=True):
                    if not self._chunks_until(scanner, t, deadline):
                        break
            finally:
                self.syncer.close_round()
            self._save(force=True)

    def _chunks_until(self, scanner: Scanner, t: TableProgress, deadline: float) -> bool:
        """Chunks of one table until it is done (True) or the round's time is up (False)."""
        while t.open:
            if time.monotonic() >= deadline:
                return False
            try:
                scanner.snapshot_chunk(t)
                if self._ddl_waits():
                    return False
            except NextRound:  # its definition changed: read it again in the next round
                self.put_off[t.name] = self.put_off.get(t.name, 0) + 1
                if self.put_off[t.name] >= NEXT_ROUND_LIMIT:
                    t.status = "unverified"
                    t.note = "its definition kept changing while it was compared"
                return False
            self._tick()
        return True

    def _ddl_waits(self) -> bool:
        """Does a session wait for a metadata lock (ALTER TABLE behind our snapshot's)?"""
        now = time.monotonic()
        if now - self.mdl_checked < MDL_CHECK_SECONDS:
            return False
        self.mdl_checked = now
        for server in (self.primary, self.replica):  # the replica's applier, replaying DDL
            rows = server.sql("mdl_waiters", "meta", MDL_WAITERS)
            if rows and int(rows[0]["n"] or 0) > 0:
                self.tallies["mdl_waiters"].note = "a round was ended early for a waiting session"
                return True
        return False

    def _locked(self, scanner: Scanner) -> None:
        """Non-transactional tables: one chunk per short read lock of that table."""
        for t in self.progress.open_tables(snapshot=False):
            while t.open:
                scanner.locked_chunk(t, self.syncer)
                self.progress.syncs += 1
                self._tick()
            self._save(force=True)

    # -- progress ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        done, total = self.progress.rows_done(), self.progress.estimated_total()
        self.ctx.progress(done, max(total, done), "verify")
        self._save()

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.saved >= CHECKPOINT_SECONDS:
            self.ctx.capture(PROGRESS, self.progress.dumps())
            self.saved = now

    def _publish(self) -> None:
        """The per-table checksums and the differing ranges, as the summary shows them."""
        primary, replica = checksum_texts(self.progress)
        self.ctx.capture(VERIFY_PRIMARY_SUMS, json.dumps(primary))
        self.ctx.capture(VERIFY_REPLICA_SUMS, json.dumps(replica))
        self.ctx.capture(VERIFY_REPORT, json.dumps(self.progress.report()))

    def _records(self, failure: BaseException | None) -> None:
        """One record per leaf, in the plan's order: how often it ran, how long in all."""
        resumed = self.ctx.captured.get(str(RESUMED))
        for i, name in enumerate(self.action.layout.names):
            if name in ("tables", "replica_tables"):
                continue  # journaled when they ran
            tally = self.tallies[name]
            if failure is not None and not tally.count and tally.error is None:
                continue
            detail = f"{tally.count} time(s), {tally.seconds:.3f}s in all"
            if name == "checksum_p" and resumed:
                detail += f"; resumed: {resumed} chunk(s) done before were kept"
            if tally.note:
                detail += f"; {tally.note}"
            if tally.error:
                detail += f"; last error: {tally.error}"
            self.ctx.record(i, tally.error is None or failure is None,
                            time.monotonic() - tally.seconds, detail)
