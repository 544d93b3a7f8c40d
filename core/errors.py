"""The one error hierarchy of backbench.

Every error a user can cause carries a message (what went wrong) and a hint (what to do
about it). The CLI prints ``str(error)`` on one line and exits non-zero; tracebacks are
kept for bugs. Framework exceptions are mapped to these at the backend boundary.
"""

from __future__ import annotations


class BackbenchError(Exception):
    """Base of every expected error. ``hint`` says how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class UsageError(BackbenchError):
    """A bad argument or option value."""


class UnknownModelError(BackbenchError):
    def __init__(self, name: str, suggestions: list[str] | tuple[str, ...] = ()) -> None:
        hint = (
            f"Did you mean: {', '.join(suggestions)}?"
            if suggestions
            else "Run `backbench models` to list the available models."
        )
        super().__init__(f"Unknown model {name!r}.", hint)
        self.name = name
        self.suggestions = tuple(suggestions)


class UnknownSuiteError(BackbenchError):
    pass


class ModelFileError(BackbenchError):
    """A model or weights file that is missing, unreadable or corrupt."""


class BackendUnavailableError(BackbenchError):
    """The inference framework is not installed or cannot load here."""


class DeviceUnavailableError(BackbenchError):
    """The backend is present but the requested device is not."""


class PrecisionUnsupportedError(BackbenchError):
    pass


class StoreError(BackbenchError):
    """The results store cannot be opened, read or written."""


class StoreCorruptError(StoreError):
    pass


class StoreFullError(StoreError):
    pass


class SchemaTooNewError(StoreError):
    pass


class RunNotFoundError(StoreError):
    pass


class DataError(BackbenchError):
    """Analysis input (CSV or store) that lacks columns, values or variety."""


class CaseFailure(BackbenchError):
    """One case failed to measure; the sweep goes on. ``kind`` classifies it."""

    def __init__(self, kind: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.kind = kind


class ProtocolError(BackbenchError):
    """A frame that breaks the agent protocol."""

    def __init__(self, code: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class AgentUnavailableError(BackbenchError):
    """No agent answers on the socket."""


class ClusterError(BackbenchError):
    """A Ray cluster that cannot run a sweep: unreachable, no node with the resource a
    case needs, or nodes running another backbench version."""
