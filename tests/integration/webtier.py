"""The web tier of the maintenance-page tests is resync/testing/web.py (the demo starts it too);
here a missing program skips the test instead of failing it."""

from __future__ import annotations

import pytest

from resync.testing.web import (
    APP_TEXT,
    MARKER,
    App,
    HAProxy,
    Nginx,
    get,
    install_hint,
    missing_tools,
    running_app,
    running_haproxy,
    running_nginx,
    web_root,
)

__all__ = ["APP_TEXT", "MARKER", "App", "HAProxy", "Nginx", "get", "require", "running_app",
           "running_haproxy", "running_nginx", "web_root"]


def require(*tools: str) -> None:
    """Skip the test when one of `tools` is not installed (naming the package to install)."""
    if missing := missing_tools(*tools):
        pytest.skip(install_hint(missing))
