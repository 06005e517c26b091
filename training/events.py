"""Machine-readable progress on stdout (one JSON object per line); human messages on stderr."""

from __future__ import annotations

import json
import sys
from typing import IO, Any, Callable


def _line(event: str, fields: dict[str, Any]) -> str:
    return json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n"


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(_line(event, fields))
    sys.stdout.flush()


def bound_emit(stream: IO[str] | None = None) -> Callable[..., None]:
    """An ``emit`` that keeps writing to this stream (default: the current stdout) after sys.stdout
    is redirected, e.g. to keep third-party prints off the JSON stream."""
    out = stream or sys.stdout

    def emit_to(event: str, **fields: Any) -> None:
        out.write(_line(event, fields))
        out.flush()

    return emit_to


def log(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
