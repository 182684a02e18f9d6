"""Unattended runs on real servers: `run --yes --log-json` with a `notify:` section posting to a
real HTTP receiver on 127.0.0.1 and a notify command. Every expected event arrives with the
run id (start, each phase begun and ended, success; a failing run: failure with its journal and
the next command), the log's every line parses, and no secret is in anything written."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import journal_of, load_app_data, resync, write_runbook

from resync.testing.sandbox import REPL_PASSWORD_ENV, SANDBOX_PASSWORD_ENV

WEBHOOK_TOKEN = "T0KEN-of-the-webhook-9d1"


class Receiver:
    """A chat webhook on loopback: answers `script`'s statuses first, then 200; keeps what it
    accepted."""

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.script.pop(0) if receiver.script else 200
                receiver.statuses.append(status)
                if status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{WEBHOOK_TOKEN}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver([500, 500])  # the first delivery is retried twice
    monkeypatch.setenv("CHAT_WEBHOOK_URL", r.url)
    yield r
    r.server.shutdown()
    r.server.server_close()


def notify_runbook(tmp_path: Path, pair: Any, **hosts_change: str) -> Path:
    hosts = pair.runbook_hosts()
    for name, stop in hosts_change.items():
        hosts[name]["service"]["stop"] = stop
    path = write_runbook(tmp_path, pair, donor="db1", recipient="db2", primary_after="db1",
                         hosts=hosts)
    doc = yaml.safe_load(path.read_text())
    doc["notify"] = {"webhooks": [{"url_env": "CHAT_WEBHOOK_URL"}],
                     "command": f"cat >> {tmp_path / 'command.jsonl'}; "
                                f"echo >> {tmp_path / 'command.jsonl'}",
                     "timeout": 5, "retries": 3}
    path.write_text(yaml.safe_dump(doc))
    return path


def log_events(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def assert_no_secret(*texts: str) -> None:
    secrets = [os.environ[SANDBOX_PASSWORD_ENV], os.environ[REPL_PASSWORD_ENV], WEBHOOK_TOKEN]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_a_run_notifies_every_phase_and_logs_every_event(tmp_path: Path, sandbox_pair: Any,
                                                         receiver: Receiver) -> None:
    load_app_data(sandbox_pair)
    runbook = notify_runbook(tmp_path, sandbox_pair)
    log = tmp_path / "run.jsonl"

    proc = resync(tmp_path, "run", "--yes", str(runbook), "--log-json", str(log), check=True)

    # the webhook: retried through two 500s, then every event, each once, in order
    assert receiver.statuses[:3] == [500, 500, 200]
    run_id = receiver.bodies[0]["run_id"]
    assert all(b["run_id"] == run_id and b["runbook"] == "test-db1-to-db2"
               for b in receiver.bodies)
    phases = [(b["phase"], b["state"]) for b in receiver.bodies if b["event"] == "phase"]
    assert phases == [
        ("preflight", "begin"), ("preflight", "end"), ("copy", "begin"),
        ("lock window", "begin"), ("copy", "end"), ("replication", "begin"),
        ("lock window", "end"), ("replication", "end"), ("verify", "begin"), ("verify", "end")]
    assert receiver.events() == ["start", *["phase"] * 10, "success"]
    success = receiver.bodies[-1]
    downtime = success["figures"]["figures.write_downtime_seconds"]
    assert downtime > 0 and f"write downtime {downtime:.1f} s" in success["text"]
    lock = next(b for b in receiver.bodies if b.get("phase") == "lock window" and
                b["state"] == "end")
    assert abs(lock["seconds"] - downtime) < 1.0, "the lock window is the write downtime"
    assert success["journal"] == str(journal_of(tmp_path).resolve())
    commanded = [json.loads(line) for line in (tmp_path / "command.jsonl").read_text().splitlines()]
    assert [c["event"] for c in commanded] == receiver.events()

    # the JSON log: every line parses, every step started and finished, actions, progress
    events = log_events(log)
    assert all(e["run_id"] == run_id for e in events)
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-2:] == ["success", "summary"]
    plan = json.loads(journal_of(tmp_path).read_text())["plan"]
    keys = [s["key"] for s in plan["steps"]]
    assert [e["step"] for e in events if e["event"] == "step-started"] == keys
    assert [(e["step"], e["state"]) for e in events if e["event"] == "step-finished"] == [
        (k, "done") for k in keys]
    actions = [e for e in events if e["event"] == "action"]
    assert len(actions) > 20 and {a["host"] for a in actions} >= {"db1", "db2"}
    copy = [e for e in events if e["event"] == "progress" and e["message"] == "copy"]
    assert copy and copy[-1]["figures"]["done"] == copy[-1]["figures"]["total"] > 1_000_000
    summary = events[-1]
    assert summary["message"] == "done" and summary["figures"]["copy.bytes"] > 1_000_000

    # plain lines without a terminal, and no secret anywhere
    assert "\x1b[" not in proc.stdout
    assert re.search(rf"^\d\d:\d\d:\d\d step 1/{len(keys)} preflight started", proc.stdout, re.M)
    assert_no_secret(log.read_text(), proc.stdout, proc.stderr,
                     journal_of(tmp_path).read_text(), json.dumps(receiver.bodies))


def test_a_failing_run_notifies_failure_with_its_journal_and_next_command(
        tmp_path: Path, sandbox_pair: Any, receiver: Receiver) -> None:
    runbook = notify_runbook(tmp_path, sandbox_pair,
                             db2="sh -c 'echo the service manager says no >&2; exit 7'")
    log = tmp_path / "run.jsonl"

    proc = resync(tmp_path, "run", "--yes", str(runbook), "--log-json", str(log))

    assert proc.returncode == 1, proc.stdout + proc.stderr
    journal = journal_of(tmp_path).resolve()
    failure = receiver.bodies[-1]
    assert failure["event"] == "failure"
    assert failure["journal"] == str(journal)
    assert failure["next_command"] == f"resync resume {journal}"
    assert failure["undo_command"] == f"resync rollback {journal}"
    assert "step 'stop-service:db2' failed" in failure["message"]
    assert "the service manager says no" in failure["message"]
    assert f"next: resync resume {journal}" in failure["text"]
    assert receiver.events() == ["start", "phase", "phase", "phase", "phase", "failure"]
    assert [(b["phase"], b["state"]) for b in receiver.bodies[1:5]] == [
        ("preflight", "begin"), ("preflight", "end"), ("copy", "begin"), ("copy", "end")]

    events = log_events(log)
    [finished] = [e for e in events if e["event"] == "step-finished" and e["state"] == "failed"]
    assert finished["step"] == "stop-service:db2" and "exited 7" in finished["message"]
    assert [e["event"] for e in events][-2:] == ["failure", "summary"]
    assert events[-1]["message"] == "failed"
    assert_no_secret(log.read_text(), proc.stdout, proc.stderr, json.dumps(receiver.bodies))
