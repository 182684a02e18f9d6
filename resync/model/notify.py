"""The runbook's `notify:` section: who is told how an unattended run goes (ROADMAP "Window and
notifications"). A webhook URL is a secret (whoever has it can post to the channel): it is
named by an environment variable (`url_env`, preferred) or written out (`url`), and masked
wherever it could be printed either way."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from resync.model.base import Strict as _Strict

NotifyEvent = Literal["start", "refused", "phase", "success", "failure", "overrun"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("start", "refused", "phase", "success", "failure",
                                          "overrun")
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
WebhookUrl = Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)]


class WebhookSettings(_Strict):
    """One receiver of a JSON POST: `{url_env: NAME}` or `{url: https://...}`."""

    url_env: EnvName | None = None
    url: WebhookUrl | None = None

    @model_validator(mode="after")
    def _one_source(self) -> WebhookSettings:
        if (self.url_env is None) == (self.url is None):
            raise ValueError("a webhook needs exactly one of url_env (an environment variable "
                             "holding the URL, preferred: the URL is a secret) or url")
        return self


class NotifySettings(_Strict):
    webhooks: tuple[WebhookSettings, ...] = ()
    command: str | None = Field(default=None, min_length=1)  # the event's JSON on its stdin
    events: tuple[NotifyEvent, ...] = Field(default=NOTIFY_EVENTS, min_length=1)
    timeout: float = Field(default=5.0, gt=0, le=60)  # seconds per attempt (and per command)
    retries: int = Field(default=3, ge=0, le=10)  # webhook attempts after the first

    @model_validator(mode="after")
    def _somebody(self) -> NotifySettings:
        if not self.webhooks and self.command is None:
            raise ValueError("notify needs webhooks or a command (or remove the section)")
        return self
