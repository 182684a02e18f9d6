"""The runbook's `notify:` section made into a notifier; its webhook URLs as secrets."""

from __future__ import annotations

import threading

from resync.model.errors import RunbookError
from resync.model.runbook import LoadedRunbook
from resync.model.secrets import Secret, mask
from resync.notify.command import NotifyCommand
from resync.notify.delivery import Notifier, Sink
from resync.notify.webhook import Webhook


def webhook_urls(loaded: LoadedRunbook) -> list[tuple[str, Secret]]:
    """(label, URL) of each webhook; a `url_env` must be set (exit 2 naming file and line)."""
    settings = loaded.model.notify
    out: list[tuple[str, Secret]] = []
    for i, hook in enumerate(settings.webhooks if settings else ()):
        if hook.url_env is not None:
            url = loaded.secret(hook.url_env, "notify", "webhooks", i, "url_env")
            if not url.reveal().startswith(("http://", "https://")):
                raise RunbookError(str(loaded.path), [
                    f"{loaded.where('notify', 'webhooks', i, 'url_env')}: environment variable "
                    f"{hook.url_env} does not hold an http:// or https:// URL"])
            out.append((f"webhook ${hook.url_env}", url))
        elif hook.url is not None:
            where = f"notify.webhooks[{i}].url"
            out.append((f"webhook {i + 1} ({where})", Secret(hook.url, source=where)))
    return out


def webhook_secrets(loaded: LoadedRunbook) -> list[Secret]:
    return [url for _, url in webhook_urls(loaded)]


def notifier_for(loaded: LoadedRunbook, secrets: list[Secret]) -> Notifier | None:
    """`secrets`: masked in what a failing command printed; the database passwords' variables
    are not passed on to the command."""
    settings = loaded.model.notify
    if settings is None:
        return None
    abandon = threading.Event()  # the run is over and the drain time up: no more retries
    sinks: list[Sink] = [Webhook(url, label, timeout=settings.timeout, retries=settings.retries,
                                 sleep=abandon.wait)
                         for label, url in webhook_urls(loaded)]
    if settings.command is not None:
        rb = loaded.model
        hidden = {rb.replication.password_env, *(h.mysql.password_env for h in rb.hosts.values()
                                                 if h.mysql.password_env)}
        sinks.append(NotifyCommand(settings.command, settings.timeout, hidden_env=hidden,
                                   mask=lambda text: mask(text, secrets)))
    return Notifier(sinks, settings.events, abandon=abandon)
