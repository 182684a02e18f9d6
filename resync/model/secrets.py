"""Secrets are wrapped so that no rendering path can print them by accident."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MASK = "********"


@dataclass(frozen=True)
class Secret:
    """A secret value; str()/repr() mask it. Call reveal() only where it is handed to a driver."""

    _value: str = field(repr=False)
    source: str = ""

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({self.source or MASK})"


def secret_from_env(var: str) -> Secret | None:
    value = os.environ.get(var)
    return None if value is None else Secret(value, source=f"${var}")


def mask(text: str, secrets: list[Secret]) -> str:
    """Replace every known secret value in text (for output tails of failed commands)."""
    for s in secrets:
        if s.reveal():
            text = text.replace(s.reveal(), MASK)
    return text


@dataclass(frozen=True)
class EnvSecret:
    """A secret named by an environment variable, read only at the moment it is bound."""

    env: str

    def resolve(self) -> Secret:
        value = secret_from_env(self.env)
        if value is None:
            from resync.model.errors import BadInputError

            raise BadInputError(f"environment variable {self.env} is not set")
        return value

    def __str__(self) -> str:
        return MASK
