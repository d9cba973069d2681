"""
The exchange log (C{/logs}, C{/apis/{id}/logs}) one line per record, oldest
first; L{follow} polls for records newer than the last one shown (the log
is ordered by id: a record written late, for a long stream, is not missed
as it would be by time).
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any, Callable, Dict, List, Optional

from mcpgated.ctl.client import AdminClient, quoted

PAGE = 500  # the admin API's largest page


def _path(api_id: Optional[str]) -> str:
    return f"/apis/{quoted(api_id)}/logs" if api_id else "/logs"


def recent(client: AdminClient, api_id: Optional[str], limit: int) -> List[Dict[str, Any]]:
    """
    The newest C{limit} records, oldest first.
    """
    page = client.get(f"{_path(api_id)}?limit={limit}")
    return list(reversed(page["data"]))


def newer(client: AdminClient, api_id: Optional[str], last_id: int) -> List[Dict[str, Any]]:
    """
    Every record whose id is above C{last_id}, oldest first (page by page,
    newest first, until one reaches C{last_id}).
    """
    found: List[Dict[str, Any]] = []
    cursor: Optional[str] = None
    while True:
        query = f"?limit={PAGE}" + (f"&cursor={quoted(cursor)}" if cursor else "")
        page = client.get(_path(api_id) + query)
        fresh = [entry for entry in page["data"] if int(entry["id"]) > last_id]
        found.extend(fresh)
        cursor = page.get("nextCursor")
        if len(fresh) < len(page["data"]) or not cursor:
            return list(reversed(found))


def line(entry: Dict[str, Any]) -> str:
    """
    C{2026-12-03T14:30:01Z Everything tools/call echo ok 200 12ms 127.0.0.1 mcp}.
    """
    moment = entry.get("time")
    when = (datetime.datetime.fromtimestamp(float(moment), datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(moment, (int, float)) else str(moment))
    latency = entry.get("latencyMs")
    parts = [when, str(entry.get("apiName") or entry.get("apiId")), str(entry.get("method")),
             entry.get("target") or "-", str(entry.get("outcome") or "-"),
             str(entry.get("httpStatus") or "-"),
             f"{latency:.0f}ms" if isinstance(latency, (int, float)) else "-",
             str(entry.get("client") or "-")]
    if entry.get("clientName"):
        parts.append(str(entry["clientName"]))
    return " ".join(parts)


def show(entry: Dict[str, Any], as_json: bool) -> str:
    return json.dumps(entry, ensure_ascii=False) if as_json else line(entry)


def follow(client: AdminClient, api_id: Optional[str], last_id: int, interval: float,
           write: Callable[[Dict[str, Any]], None]) -> None:
    """
    Poll every C{interval} seconds, writing each new record, until
    interrupted.
    """
    while True:
        time.sleep(interval)
        for entry in newer(client, api_id, last_id):
            write(entry)
            last_id = max(last_id, int(entry["id"]))
