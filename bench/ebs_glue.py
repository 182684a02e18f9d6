"""The EBS world of the integration tests (tests/integration/ebs_peer.py) for a bench run.

moto's EC2 runs in this process (ThreadedMotoServer on 127.0.0.1: the world's hooks patch its
EBSBackend), reached by the `python -m resync` subprocess through AWS_ENDPOINT_URL and dummy
credentials; no AWS profile, config or IMDS of the machine is read. Per run, `EbsRun` builds the
world for the run's pair (an instance and a data volume per server in moto, snapshots and
volumes with a block-level effect on loop devices) and releases it afterwards. Note that the
simulated `create_snapshot` copies the donor's image file (under fsfreeze) inside the API call,
and `create_volume` copies that copy: a real EBS snapshot starts at once and a volume made from
it loads lazily. The time of these image copies is measured (`image_copies`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import ROOT

from resync.testing.sandbox import Sandbox
from resync.testing.web import free_port

HARNESS = ROOT / "tests" / "integration"


def integration() -> Any:
    """The integration harness's modules (the simulated EBS lives there), as a namespace."""
    if str(HARNESS) not in sys.path:
        sys.path.insert(0, str(HARNESS))
    import aws  # type: ignore[import-not-found]
    import ebs_peer  # type: ignore[import-not-found]
    import helpers  # type: ignore[import-not-found]

    return types.SimpleNamespace(aws=aws, ebs_peer=ebs_peer, helpers=helpers)


def lacking() -> list[str]:
    """What the EBS world needs and this machine lacks (empty when all is there)."""
    try:
        import moto.server  # noqa: F401
        import pytest  # noqa: F401
    except ImportError as exc:
        return [f"python package {exc.name} (pip install -e '.[dev]')"]
    missing: list[str] = integration().ebs_peer.missing()
    return missing


@contextlib.contextmanager
def moto_server(work: Path) -> Iterator[Any]:
    """moto's server in this process, on 127.0.0.1, and the environment that points boto3 (in
    the resync subprocesses) at it; both undone on exit."""
    import pytest
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    mp = pytest.MonkeyPatch()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                     "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
            mp.delenv(name, raising=False)
        for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "testing"),
                            ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1"),
                            ("AWS_EC2_METADATA_DISABLED", "true"),
                            ("AWS_CONFIG_FILE", str(work / "no-aws-config")),
                            ("AWS_SHARED_CREDENTIALS_FILE", str(work / "no-aws-credentials")),
                            # an IMDS that answers nothing: instances come from the runbook
                            ("RESYNC_IMDS_ENDPOINT", f"http://127.0.0.1:{free_port()}")):
            mp.setenv(name, value)
        yield integration().aws.Aws(endpoint)
    finally:
        mp.undo()
        server.stop()


class EbsRun:
    """The world for one run's pair: `with EbsRun(aws, pair) as world: world.section(...)`."""

    def __init__(self, aws: Any, pair: Sandbox) -> None:
        self.aws, self.pair = aws, pair
        self.world: Any = None
        self.image_copies: float | None = None  # seconds of the world's `cp` of image files

    def __enter__(self) -> EbsRun:
        import pytest

        request = urllib.request.Request(f"{self.aws.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        self.hooks = pytest.MonkeyPatch()
        peer = integration().ebs_peer
        self.world = peer.build_world(self.aws, self.pair, self.hooks)
        run = peer.sh

        def timed(*argv: str, **options: Any) -> Any:
            if argv[:1] != ("cp",):
                return run(*argv, **options)
            start = time.monotonic()
            try:
                return run(*argv, **options)
            finally:
                self.image_copies = (self.image_copies or 0) + time.monotonic() - start

        self.hooks.setattr(peer, "sh", timed)
        return self

    def section(self, donor: str, recipient: str) -> dict[str, Any]:
        return {"method": "ebs", "stall_timeout": 60,
                "ebs": self.world.ebs_section(donor, recipient, timeout=600)}

    def errors(self) -> list[str]:
        return list(self.world.errors) if self.world is not None else []

    def __exit__(self, *exc: object) -> None:
        try:
            if self.world is not None:
                self.world.release()
        finally:
            self.hooks.undo()
