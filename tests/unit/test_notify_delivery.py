"""Notifications: webhook retries with backoff (injected sleep, then a real loopback receiver
answering 500 twice), a queue that never blocks a step, the notify command (stdin, timeout,
failure as a warning, no database password inherited)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from resync.model.secrets import Secret
from resync.notify.command import NotifyCommand
from resync.notify.delivery import Notifier
from resync.notify.webhook import Webhook, http_post
from resync.run.events import EventName, RunEvent

URL = "http://127.0.0.1:9/hooks/T000/B000/secret-token"


def event(name: EventName = EventName.SUCCESS, **values: Any) -> RunEvent:
    return RunEvent(name, "rb", 1700000000.0, run_id="r-1", **values)


class Posts:
    """A scripted receiver: each post answers the next status (or raises it)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers: list[int | Exception] = list(answers)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, url: str, body: bytes, timeout: float) -> int:
        assert url == URL and timeout == 2.0
        self.bodies.append(json.loads(body))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def hook(posts: Posts, sleeps: list[float], retries: int = 3) -> Webhook:
    return Webhook(Secret(URL), "webhook $CHAT_URL", timeout=2.0, retries=retries,
                   sleep=sleeps.append, post=posts)


def test_retries_with_exponential_backoff_until_delivered() -> None:
    posts, sleeps = Posts(500, urllib.error.URLError("refused"), 503, 200), list[float]()
    hook(posts, sleeps).deliver(event(message="done"))
    assert len(posts.bodies) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    body = posts.bodies[-1]
    assert body["event"] == "success" and body["run_id"] == "r-1" and body["runbook"] == "rb"
    assert body["text"] == "resync rb (r-1): done"


def test_gives_up_after_the_retries_without_naming_the_url(caplog: pytest.LogCaptureFixture) -> None:
    posts, sleeps = Posts(*([urllib.error.URLError(f"cannot reach {URL}")] * 3)), list[float]()
    hook(posts, sleeps, retries=2).deliver(event())
    assert len(posts.bodies) == 3 and sleeps == [0.5, 1.0]
    assert "webhook $CHAT_URL: event success not delivered after 3 attempt(s)" in caplog.text
    assert "secret-token" not in caplog.text


def test_a_client_error_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    posts, sleeps = Posts(404), list[float]()
    hook(posts, sleeps).deliver(event())
    assert len(posts.bodies) == 1 and sleeps == []
    assert "HTTP 404" in caplog.text


def test_too_many_requests_is_retried() -> None:
    posts, sleeps = Posts(429, 200), list[float]()
    hook(posts, sleeps).deliver(event())
    assert len(posts.bodies) == 2


def test_the_end_of_the_run_stops_the_retries() -> None:
    posts = Posts(500, 500, 500, 500)
    Webhook(Secret(URL), "w", timeout=2.0, retries=3, sleep=lambda s: True,
            post=posts).deliver(event())
    assert len(posts.bodies) == 1


class Blocking:
    label = "blocking sink"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.got: list[RunEvent] = []

    def deliver(self, event: RunEvent) -> None:
        self.got.append(event)
        self.release.wait(30)


def test_a_slow_receiver_never_blocks_the_run(caplog: pytest.LogCaptureFixture) -> None:
    sink = Blocking()
    notifier = Notifier([sink], ["phase"], queue_size=8, drain_seconds=0.3)
    started = time.monotonic()
    for i in range(500):
        notifier.handle(event(EventName.PHASE, seconds=float(i)))
    assert time.monotonic() - started < 0.5, "handle() must only queue"
    assert notifier.dropped >= 500 - 8 - 1
    assert "notifications are behind" in caplog.text

    started = time.monotonic()
    notifier.close()
    assert time.monotonic() - started < 1.0, "the drain at the end is bounded"
    assert notifier.abandon.is_set()
    assert "gave up after 0.3 s" in caplog.text
    sink.release.set()


class Collect:
    label = "collect"

    def __init__(self) -> None:
        self.got: list[str] = []

    def deliver(self, event: RunEvent) -> None:
        self.got.append(event.name.value)


def test_only_the_chosen_events_are_sent_and_all_of_them_before_close() -> None:
    sink = Collect()
    notifier = Notifier([sink], ["start", "failure"])
    for name in (EventName.START, EventName.STEP_STARTED, EventName.ACTION, EventName.PHASE,
                 EventName.FAILURE, EventName.SUMMARY):
        notifier.handle(event(name))
    notifier.close()
    assert sink.got == ["start", "failure"]


# -- a real receiver on loopback --------------------------------------------------------------------
class Receiver:
    """http.server on 127.0.0.1 answering the statuses in `script` first, then 200."""

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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/token-123"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 500])
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_a_real_receiver_answering_500_twice_gets_the_event(receiver: Receiver) -> None:
    sleeps: list[float] = []
    Webhook(Secret(receiver.url), "w", timeout=2.0, retries=3, sleep=sleeps.append).deliver(
        event(EventName.FAILURE, message="step x failed", journal="/j.json",
              next_command="resync resume /j.json"))
    assert receiver.statuses == [500, 500, 200] and sleeps == [0.5, 1.0]
    body = receiver.bodies[0]
    assert body["event"] == "failure" and body["next_command"] == "resync resume /j.json"
    assert "FAILED: step x failed" in body["text"]


def test_http_post_returns_the_status_of_an_error(receiver: Receiver) -> None:
    assert http_post(receiver.url, b"{}", 2.0) == 500


# -- the notify command -----------------------------------------------------------------------------
def test_the_command_gets_the_event_json_on_stdin_without_database_passwords(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB1_PASSWORD", "db-secret")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    out = tmp_path / "got.json"
    NotifyCommand(f"cat > {out}; echo \"$DB1_PASSWORD|$SOMETHING_ELSE\" > {out}.env", 5.0,
                  hidden_env={"DB1_PASSWORD"}).deliver(event(message="done"))
    got = json.loads(out.read_text())
    assert got["event"] == "success" and got["text"] == "resync rb (r-1): done"
    assert Path(f"{out}.env").read_text() == "|kept\n"


def test_a_failing_command_is_a_masked_warning(caplog: pytest.LogCaptureFixture) -> None:
    NotifyCommand("echo 'no route for tok-9' >&2; exit 4", 5.0,
                  mask=lambda text: text.replace("tok-9", "********")).deliver(event())
    assert "notify command (event success) exited 4: no route for ********" in caplog.text


def test_a_hanging_command_and_its_children_are_killed(caplog: pytest.LogCaptureFixture,
                                                       tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    NotifyCommand(f"sleep 30 & echo $! > {pidfile}; wait", 0.5).deliver(event())
    assert time.monotonic() - started < 5
    assert "killed after 0.5 s" in caplog.text
    stat = Path(f"/proc/{int(pidfile.read_text())}/stat")
    for _ in range(50):  # gone, or dead and not yet reaped
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the command's child still runs: {stat.read_text()}")
