"""One error type for every user-facing mistake: it names the config key and the fix."""

from __future__ import annotations


class PrunelabError(Exception):
    """A user-facing error. ``key`` is the config key at fault, ``fix`` says what to do."""

    def __init__(self, key: str, message: str, fix: str | None = None):
        self.key, self.message, self.fix = key, message, fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.key}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text


def describe(exc: BaseException) -> str:
    """One line for any error: a PrunelabError's own line, otherwise its type and message."""
    return exc.one_line() if isinstance(exc, PrunelabError) else f"{type(exc).__name__}: {exc}"
