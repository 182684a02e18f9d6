"""HTTP checks as one journaled leaf: GETs from the controller, or from a host with its python3.

`HttpCheck` looks at a few URLs until every expectation holds (or its time runs out), like a
Poll: one journal record with the number of looks and the last answers. With `look_only` it
looks once, never fails, and captures whether the expectations held (for `status`).
"""

from __future__ import annotations

from dataclasses import dataclass

from resync.actions.external import External, ExternalContext, HttpAnswer, Outcome
from resync.actions.quoting import q
from resync.actions.types import Template
from resync.model.errors import ResyncError
from resync.model.keys import Key

BODY_CHARS = 65536
# one GET on a host, with the host's python3: prints the status (0: no answer) then the body
FETCH = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
    "    s, b = r.status, r.read(65536)\n"
    "except urllib.error.HTTPError as e:\n"
    "    s, b = e.code, e.read(65536)\n"
    "except Exception as e:\n"
    "    s, b = 0, str(getattr(e, \"reason\", e)).encode()\n"
    "sys.stdout.write(str(s) + \"\\n\" + b.decode(errors=\"replace\"))\n"
)


def fetch_command(url: str, timeout: float) -> str:
    """The command that GETs `url` on a host (python3 -c; no curl needed)."""
    return f"python3 -c {q(FETCH)} {q(url)} {timeout:g}"


def parse_fetch(exit_code: int, output: str) -> HttpAnswer:
    first, _, body = output.partition("\n")
    if exit_code != 0 or not first.strip().isdigit():
        return HttpAnswer(None, "", f"the GET did not run (exit {exit_code}): {output[-300:]}")
    status = int(first)
    return HttpAnswer(status, body) if status else HttpAnswer(None, "", body.strip())


@dataclass(frozen=True)
class Expect:
    """What one URL must answer. status None: any 2xx/3xx. `unlike`: (status, text) of a page
    the answer must not be (the maintenance page, when it is served with a 2xx status)."""

    url: str
    status: int | None = None
    text: str | None = None
    unlike: tuple[int, str | None] | None = None

    def describe(self) -> str:
        out = f"GET {self.url} answers {self.status if self.status is not None else '2xx/3xx'}"
        if self.text is not None:
            out += f" containing {self.text!r}"
        if self.unlike is not None and self.unlike[0] < 400:
            status, text = self.unlike
            out += f", not the page ({status}" + (f" containing {text!r})" if text else ")")
        return out

    def met(self, answer: HttpAnswer) -> bool:
        if answer.status is None:
            return False
        if self.status is not None and answer.status != self.status:
            return False
        if self.status is None and not 200 <= answer.status < 400:
            return False
        if self.text is not None and self.text not in answer.body:
            return False
        if self.unlike is not None:
            status, text = self.unlike
            if answer.status == status and (text is None or text in answer.body):
                return False
        return True

    def seen(self, answer: HttpAnswer) -> str:
        if answer.status is None:
            return f"{self.url}: no answer ({answer.error or 'nothing'})"
        marks = [text for text in (self.text, self.unlike[1] if self.unlike else None) if text]
        found = "".join(f", {'with' if t in answer.body else 'without'} {t!r}" for t in marks)
        return f"{self.url}: {answer.status}{found}"


@dataclass(frozen=True)
class HttpCheck(External):
    """GET every URL until all expectations hold; `remote`: from `host` (python3 there), else
    from this machine."""

    host: str
    checks: tuple[Expect, ...]
    timeout: float = 5.0
    interval: float = 0.5
    remote: bool = False
    request_timeout: float = 3.0
    failure: str = ""  # the error when time runs out (the last answers follow)
    look_only: bool = False  # look once, never fail
    into: Key | None = None  # captures 1 when every expectation held, else 0
    kind = "http"

    def template(self) -> Template:
        what = " and ".join(c.describe() for c in self.checks)
        where = f"from {self.host} (python3 urllib)" if self.remote else "from this machine"
        if self.look_only:
            return (f"look once {where}: {what}?",)
        return (f"poll {where}: {what} (every {self.interval:g}s, at most {self.timeout:g}s)",)

    def outputs(self) -> tuple[Key, ...]:
        return (self.into,) if self.into else ()

    def get(self, ctx: ExternalContext, url: str) -> HttpAnswer:
        if not self.remote:
            return ctx.http_get(url, self.request_timeout)
        try:
            result = ctx.shell(self.host, fetch_command(url, self.request_timeout),
                               timeout=self.request_timeout + 10)
        except ResyncError as exc:
            return HttpAnswer(None, "", str(exc))
        return parse_fetch(result.exit_code, result.stdout + result.stderr
                           if result.exit_code else result.stdout)

    def perform(self, ctx: ExternalContext) -> Outcome:
        deadline = ctx.clock.now() + self.timeout
        looks = 0
        while True:
            answers = [self.get(ctx, c.url) for c in self.checks]
            looks += 1
            held = all(c.met(a) for c, a in zip(self.checks, answers, strict=True))
            seen = "; ".join(c.seen(a) for c, a in zip(self.checks, answers, strict=True))
            values = {self.into: int(held)} if self.into else {}
            if self.look_only:
                return Outcome(detail=seen, values=values)
            detail = f"{looks} look(s); last: {seen}"
            if held:
                return Outcome(detail=detail, values=values)
            if ctx.clock.now() >= deadline:
                why = self.failure or f"timed out after {self.timeout:g}s"
                return Outcome(ok=False, detail=detail, values=values,
                               error=f"[{self.host}] {why}: {seen}")
            ctx.clock.sleep(self.interval)
