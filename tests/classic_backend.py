"""
A scripted handshake-era (2025-11-25) MCP backend for the version bridge's
tests: what it was told (sessions, their client info, capabilities and log
level, how many times each was initialized) is what its tools answer, so a
test sees what the backend saw. Run as a script; it prints the port.

 - POST /mcp: initialize (a session id), notifications (202), responses to
   its own requests (202), logging/setLevel, resources/subscribe,
   tools/list, tools/call of C{whoami} (JSON), C{log} (a log message, then
   the result, as SSE) and C{ask} (an elicitation request, then the
   client's answer as the result, as SSE), C{ask2} (two at once) and C{slow} (a progress
   notification, then nothing); an unknown session gets 404.
 - GET /mcp: the session's stream: C{resources/updated} for each URI it
   subscribed to, the tools and prompts list changes, then kept open.
 - DELETE /mcp: the session ends.
 - POST /expire: every session is forgotten (the next request gets 404).
 - GET /state: the sessions open, how many POSTs, initializes and deletes
   there were, and the request ids cancelled.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any, Dict

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SESSIONS: Dict[str, Dict[str, Any]] = {}
STATE: Dict[str, Any] = {"initializes": 0, "deleted": 0, "cancelled": [], "posts": 0}
ANSWERS: Dict[str, "asyncio.Future[Any]"] = {}
SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _event(message: Dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n"


def _result(id: Any, result: Dict[str, Any]) -> Dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "result": result}


async def mcp_post(request: Request) -> Response:
    STATE["posts"] += 1
    message = json.loads(await request.body())
    method = message.get("method")
    if method == "initialize":
        STATE["initializes"] += 1
        session = str(uuid.uuid4())
        params = message["params"]
        SESSIONS[session] = {"clientInfo": params.get("clientInfo"),
                             "capabilities": params.get("capabilities"), "level": None,
                             "subscribed": [], "initialized": False}
        return JSONResponse(_result(message["id"], {
            "protocolVersion": params["protocolVersion"],
            "capabilities": {"tools": {"listChanged": True},
                             "resources": {"subscribe": True, "listChanged": False},
                             "logging": {}},
            "serverInfo": {"name": "classic-test", "version": "1.0"},
            "instructions": "A scripted backend."}), headers={"Mcp-Session-Id": session})
    session_id = request.headers.get("mcp-session-id", "")
    session = SESSIONS.get(session_id)
    if session is None:
        return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"),
                             "error": {"code": -32001, "message": "Session not found"}},
                            status_code=404)
    if method is None:  # the client's answer to one of ours
        future = ANSWERS.pop(str(message.get("id")), None)
        if future is not None and not future.done():
            future.set_result(message)
        return Response(status_code=202)
    if "id" not in message:
        if method == "notifications/initialized":
            session["initialized"] = True
        if method == "notifications/cancelled":
            STATE["cancelled"].append((message.get("params") or {}).get("requestId"))
        return Response(status_code=202)
    id = message["id"]
    params = message.get("params") or {}
    if method == "logging/setLevel":
        session["level"] = params["level"]
        return JSONResponse(_result(id, {}))
    if method == "resources/subscribe":
        session["subscribed"].append(params["uri"])
        return JSONResponse(_result(id, {}))
    if method == "tools/list":
        return JSONResponse(_result(id, {"tools": [
            {"name": name, "inputSchema": {"type": "object"}} for name in ("whoami", "log", "ask")]}))
    if method == "resources/read":
        return JSONResponse({"jsonrpc": "2.0", "id": id,
                             "error": {"code": -32002, "message": "Resource not found"}})
    if method != "tools/call":
        return JSONResponse({"jsonrpc": "2.0", "id": id,
                             "error": {"code": -32601, "message": f"Method not found: {method}"}})
    name = params.get("name")
    if name == "whoami":
        seen = dict(session, session=session_id, meta=params.get("_meta"),
                    initializes=STATE["initializes"],
                    protocol=request.headers.get("mcp-protocol-version"))
        return JSONResponse(_result(id, {"content": [{"type": "text", "text": json.dumps(seen)}]}))
    if name == "log":
        async def logged() -> Any:
            yield _event({"jsonrpc": "2.0", "method": "notifications/message",
                          "params": {"level": "info", "data": "working"}})
            yield _event({"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": "p", "progress": 1}})
            yield _event(_result(id, {"content": [{"type": "text", "text": "logged"}]}))
        return StreamingResponse(logged(), headers=SSE)
    if name == "slow":  # answers when cancelled, never
        async def slow() -> Any:
            yield _event({"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": "p", "progress": 0}})
            await asyncio.sleep(60)
        return StreamingResponse(slow(), headers=SSE)
    if name == "ask2":  # two questions at once, one event each in one write
        asked = [f"ask-{uuid.uuid4()}" for _ in range(2)]
        futures = [asyncio.get_running_loop().create_future() for _ in asked]
        ANSWERS.update(zip(asked, futures))

        async def asking_twice() -> Any:
            yield b"".join(_event({"jsonrpc": "2.0", "id": key, "method": "elicitation/create",
                                   "params": {"message": f"Question {n}?", "requestedSchema": {
                                       "type": "object", "properties": {}}}})
                           for n, key in enumerate(asked))
            answers = [await asyncio.wait_for(f, 20) for f in futures]
            yield _event(_result(id, {"content": [{"type": "text", "text": json.dumps(answers)}]}))
        return StreamingResponse(asking_twice(), headers=SSE)
    if name == "ask":
        asked = f"ask-{uuid.uuid4()}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ANSWERS[asked] = future

        async def asking() -> Any:
            yield _event({"jsonrpc": "2.0", "id": asked, "method": "elicitation/create",
                          "params": {"message": "Your name?", "requestedSchema": {
                              "type": "object", "properties": {"name": {"type": "string"}}}}})
            answer = await asyncio.wait_for(future, 20)
            yield _event(_result(id, {"content": [{"type": "text", "text": json.dumps(answer)}]}))
        return StreamingResponse(asking(), headers=SSE)
    return JSONResponse({"jsonrpc": "2.0", "id": id,
                         "error": {"code": -32602, "message": f"Unknown tool: {name}"}})


async def mcp_get(request: Request) -> Response:
    session = SESSIONS.get(request.headers.get("mcp-session-id", ""))
    if session is None:
        return Response(status_code=404)

    async def stream() -> Any:
        for uri in session["subscribed"]:
            yield _event({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                          "params": {"uri": uri}})
        yield _event({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"})
        yield _event({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        while True:
            await asyncio.sleep(1)
            yield b": keep-alive\n\n"
    return StreamingResponse(stream(), headers=SSE)


async def mcp_delete(request: Request) -> Response:
    if SESSIONS.pop(request.headers.get("mcp-session-id", ""), None) is None:
        return Response(status_code=404)
    STATE["deleted"] += 1
    return Response(status_code=200)


async def expire(request: Request) -> Response:
    SESSIONS.clear()
    return Response(status_code=200)


async def state(request: Request) -> Response:
    return JSONResponse(dict(STATE, sessions=len(SESSIONS)))


app = Starlette(routes=[
    Route("/mcp", mcp_post, methods=["POST"]), Route("/mcp", mcp_get, methods=["GET"]),
    Route("/mcp", mcp_delete, methods=["DELETE"]), Route("/expire", expire, methods=["POST"]),
    Route("/state", state, methods=["GET"]),
])


async def main() -> None:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"classic backend listening on {port}", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
