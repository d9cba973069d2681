"""
What the exchange log reads in an answer: its outcome, and payloads with
secrets redacted. Pure functions over decoded JSON (the messages themselves
are read by L{mcpgated.mcp}).
"""

from __future__ import annotations

from typing import Any, FrozenSet, Optional, Tuple

_RESULT = ("result", None, None)


def _text(value: Any, limit: int) -> Optional[str]:
    return value[:limit] if isinstance(value, str) else None


def outcome(result: Any, error: Any) -> Tuple[str, Optional[int], Optional[str]]:
    """
    C{(outcome, error code, error message)} of a response's C{result} and
    C{error} members: C{"result"}, C{"error"} (a JSON-RPC error) or
    C{"tool_error"} (a tool result with C{isError: true}).
    """
    if error is not None:
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        return ("error", code if isinstance(code, int) else None,
                _text(error.get("message"), 500))
    if isinstance(result, dict) and result.get("isError") is True:
        content = result.get("content")
        text = None
        if isinstance(content, list) and content and isinstance(content[0], dict):
            text = _text(content[0].get("text"), 500)
        return "tool_error", None, text
    return _RESULT


def redact(value: Any, fields: FrozenSet[str]) -> Any:
    """
    A copy of decoded JSON with the values of the named keys replaced.
    """
    if isinstance(value, dict):
        return {k: ("[REDACTED]" if k.lower() in fields else redact(v, fields))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, fields) for v in value]
    return value
