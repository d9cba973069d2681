"""
An MCP server for the conformance suite's server scenarios, written with
the official Python SDK (L{mcp.server.mcpserver.MCPServer}): the tools,
prompts and resources the scenarios call by name (test_simple_text,
test://static-text, test_prompt_with_arguments, ...), as the scenarios'
own descriptions ask. What the SDK cannot do is left out.

    python tests/conformance_server.py --era dual|handshake|modern

serves streamable HTTP at /mcp on an ephemeral loopback port (uvicorn prints
"Uvicorn running on ..."). The era says which protocol versions it speaks:

 - C{dual}: the SDK's default, stateful sessions for the handshake
   revisions (up to 2025-11-25) and 2026-07-28 requests beside them;
 - C{handshake}: the same server, but a request naming 2026-07-28 (its
   C{MCP-Protocol-Version} header) is refused as a 2025-11-25 server
   refuses an unknown version: HTTP 400;
 - C{modern}: stateless, 2026-07-28 only: a request without the header or
   naming a handshake revision (C{initialize} included) is refused with
   HTTP 400 and UnsupportedProtocolVersion (-32022), a GET or DELETE with
   405 (other versions reach the SDK, which answers them as the spec says).

So a bridge in front of a C{handshake} or C{modern} server must translate
every request: one that leaks through untranslated is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import warnings
from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

# logging, sampling and server-to-client elicitation are what the handshake
# scenarios call; the SDK marks them deprecated as of 2026-07-28
warnings.simplefilter("ignore", MCPDeprecationWarning)

ERAS = ("dual", "handshake", "modern")
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
# the scenario's JSON Schema 2020-12 keywords, which tools/list must keep
SCHEMA_2020_12: Dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                   "phone": {"type": "string"}, "email": {"type": "string"}},
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


def _ask(message: str, field: str, kind: str = "string") -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema={
        "type": "object", "properties": {field: {"type": kind}}, "required": [field]}))


def _sample(text: str, max_tokens: int = 100) -> CreateMessageRequest:
    return CreateMessageRequest(params=CreateMessageRequestParams(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
        max_tokens=max_tokens))


_RESULT_OF = {ElicitRequest: ElicitResult, CreateMessageRequest: CreateMessageResult,
              ListRootsRequest: ListRootsResult}


def is_handshake(ctx: Context) -> bool:
    return ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS


async def inputs(ctx: Context, asked: Dict[str, InputRequest], state: Optional[str] = None
                 ) -> Union[Dict[str, Any], InputRequiredResult]:
    """
    The client's answers to C{asked}, by key. A handshake-era session asks
    now, all at once, with requests on the call's stream; a 2026-07-28
    request has them in its C{inputResponses} (with C{state} echoed), or
    gets the L{InputRequiredResult} that asks for them.
    """
    if is_handshake(ctx):
        answers = await asyncio.gather(*(ctx.session.send_request(
            request, _RESULT_OF[type(request)], metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
            for request in asked.values()))
        return dict(zip(asked, answers, strict=True))
    responses = ctx.input_responses or {}
    if set(asked) <= set(responses) and (state is None or ctx.request_state == state):
        return dict(responses)
    return InputRequiredResult(input_requests=asked, request_state=state)


def _answer(responses: Any, key: str, field: str) -> Optional[Any]:
    """
    The C{field} of an accepted elicitation answer under C{key}, if any.
    """
    answer = (responses or {}).get(key)
    return answer.content.get(field) if isinstance(answer, ElicitResult) and answer.content else None


class Reply(BaseModel):
    response: str = Field(description="User's response")


class Defaults(BaseModel):
    """SEP-1034: a default for each primitive type."""

    name: str = Field(default="John Doe")
    age: int = Field(default=30)
    score: float = Field(default=95.5)
    status: str = Field(default="active", json_schema_extra={"enum": ["active", "inactive", "pending"]})
    verified: bool = Field(default=True)


class Enums(BaseModel):
    """SEP-1330: the enum schema variants."""

    untitledSingle: str = Field(json_schema_extra={"enum": ["active", "inactive", "pending"]})
    titledSingle: str = Field(json_schema_extra={"oneOf": [
        {"const": "low", "title": "Low Priority"}, {"const": "medium", "title": "Medium Priority"},
        {"const": "high", "title": "High Priority"}]})
    untitledMulti: List[str] = Field(json_schema_extra={
        "items": {"type": "string", "enum": ["read", "write", "execute"]}})
    titledMulti: List[str] = Field(json_schema_extra={"items": {"anyOf": [
        {"const": "feature", "title": "New Feature"}, {"const": "bug", "title": "Bug Fix"},
        {"const": "docs", "title": "Documentation"}]}})
    legacyEnum: str = Field(json_schema_extra={"enum": ["small", "medium", "large"],
                                               "enumNames": ["Small Size", "Medium Size", "Large Size"]})


def build() -> MCPServer:
    """
    The server, the same whatever the era.
    """
    server: MCPServer = MCPServer(
        name="mcpgated-conformance-server", version="1.0",
        # fixed keys: request state sealed by one start opens in the next
        request_state_security=RequestStateSecurity(keys=[b"mcpgated-conformance-fixture-request-state"]))

    # --- tools/call content --------------------------------------------------------------

    @server.tool()
    def test_simple_text() -> str:
        """Return simple text."""
        return "This is a simple text response for testing."

    @server.tool()
    def test_image_content() -> List[ImageContent]:
        """Return an image."""
        return [ImageContent(type="image", data=PIXEL, mime_type="image/png")]

    @server.tool()
    def test_audio_content() -> List[AudioContent]:
        """Return audio."""
        return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]

    @server.tool()
    def test_embedded_resource() -> List[EmbeddedResource]:
        """Return an embedded resource."""
        return [EmbeddedResource(type="resource", resource=TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain",
            text="This is an embedded resource content."))]

    @server.tool()
    def test_multiple_content_types() -> List[Union[TextContent, ImageContent, EmbeddedResource]]:
        """Return text, an image and a resource."""
        return [TextContent(type="text", text="Multiple content types test:"),
                ImageContent(type="image", data=PIXEL, mime_type="image/png"),
                EmbeddedResource(type="resource", resource=TextResourceContents(
                    uri="test://mixed-content-resource", mime_type="application/json",
                    text='{"test": "data", "value": 123}'))]

    @server.tool()
    def test_error_handling() -> str:
        """Always fail."""
        raise RuntimeError("This tool intentionally returns an error for testing")

    @server.tool(name="json_schema_2020_12_tool")
    def schema_tool() -> str:
        """Carry JSON Schema 2020-12 keywords in its input schema."""
        return "ok"

    # the SDK derives input schemas from signatures; this one is given whole
    server._tool_manager._tools["json_schema_2020_12_tool"].parameters = SCHEMA_2020_12

    # --- notifications during a call -----------------------------------------------------

    @server.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Log three messages, ~50 ms apart, as the scenario describes."""
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @server.tool()
    async def test_logging_tool(ctx: Context) -> str:
        """Log one message (2026-07-28: only when the request set a log level)."""
        await ctx.info("logging tool ran")
        return "logged"

    @server.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Report progress 0, 50 and 100 of 100, ~50 ms apart, as the scenario describes."""
        for step in (0, 50, 100):
            if step:
                await asyncio.sleep(0.05)
            await ctx.report_progress(progress=step, total=100)
        return "Progress reported"

    # --- server-to-client requests (handshake era) ---------------------------------------

    @server.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Ask the client's LLM."""
        result = await ctx.session.create_message(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100, related_request_id=ctx.request_id)
        return f"LLM response: {getattr(result.content, 'text', '')}"

    @server.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Ask the user."""
        result = await ctx.elicit(message=message, schema=Reply)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"User response: action={result.action}, content={content}"

    @server.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """Ask with defaults for each primitive type."""
        result = await ctx.elicit(message="Please provide user information", schema=Defaults)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation result: action={result.action}, content={content}"

    @server.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """Ask with each enum schema variant."""
        result = await ctx.elicit(message="Please select values", schema=Enums)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation completed: action={result.action}, content={content}"

    # --- 2026-07-28: capabilities, list changes, input-required results ------------------

    @server.tool()
    async def test_missing_capability(ctx: Context) -> str:
        """Need the client's sampling capability."""
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.sampling is None:
            raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY, message="The client must support sampling",
                           data={"requiredCapabilities": {"sampling": {}}})
        return "sampling declared"

    def _transient() -> str:
        """Added and removed at once."""
        return "transient"

    @server.tool()
    async def test_trigger_tool_change(ctx: Context) -> str:
        """Change the tool list."""
        server.add_tool(_transient, name="test_transient_tool")
        server.remove_tool("test_transient_tool")
        await ctx.notify_tools_changed()
        return "tools changed"

    @server.tool()
    async def test_trigger_prompt_change(ctx: Context) -> str:
        """Change the prompt list."""
        server.add_prompt(Prompt.from_function(_transient, name="test_transient_prompt", description="transient"))
        server.remove_prompt("test_transient_prompt")
        await ctx.notify_prompts_changed()
        return "prompts changed"

    @server.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask for a name, then greet."""
        got = await inputs(ctx, {"user_name": _ask("What is your name?", "name")})
        if isinstance(got, InputRequiredResult):
            return got
        return f"Hello, {_answer(got, 'user_name', 'name')}!"

    @server.tool()
    async def test_input_required_result_sampling(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask the client's LLM, then answer."""
        got = await inputs(ctx, {"capital_question": _sample("What is the capital of France?")})
        if isinstance(got, InputRequiredResult):
            return got
        return f"Model said: {getattr(getattr(got['capital_question'], 'content', None), 'text', '?')}"

    @server.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask for the client's roots, then count them."""
        got = await inputs(ctx, {"client_roots": ListRootsRequest()})
        if isinstance(got, InputRequiredResult):
            return got
        return f"Client exposed {len(getattr(got['client_roots'], 'roots', []))} root(s)."

    @server.tool()
    async def test_input_required_result_request_state(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask for a confirmation, with request state to echo."""
        got = await inputs(ctx, {"confirm": _ask("Please confirm", "ok", "boolean")}, "confirm-state")
        return got if isinstance(got, InputRequiredResult) else "state-ok: confirmation received"

    @server.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask for a name, a completion and the roots at once."""
        got = await inputs(ctx, {"user_name": _ask("What is your name?", "name"),
                                 "greeting": _sample("Generate a greeting", 50),
                                 "client_roots": ListRootsRequest()}, "multiple-inputs")
        return got if isinstance(got, InputRequiredResult) else "All inputs received."

    @server.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask for a name, then a colour, then answer (2026-07-28: the round in the request state)."""
        first = _ask("Step 1: What is your name?", "name")
        second = _ask("Step 2: What is your favorite color?", "color")
        if is_handshake(ctx):
            name = _answer(await inputs(ctx, {"step1": first}), "step1", "name")
            return f"{name} likes {_answer(await inputs(ctx, {'step2': second}), 'step2', 'color')}."
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        responses = ctx.input_responses or {}
        if state["round"] == 1 and "step1" in responses:
            return InputRequiredResult(input_requests={"step2": second}, request_state=json.dumps(
                {"round": 2, "name": _answer(responses, "step1", "name")}))
        if state["round"] == 2 and "step2" in responses:
            return f"{state.get('name')} likes {_answer(responses, 'step2', 'color')}."
        return InputRequiredResult(input_requests={"step1": first}, request_state=json.dumps({"round": 1}))

    @server.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask for a confirmation; the SDK refuses a request state it did not seal."""
        got = await inputs(ctx, {"confirm": _ask("Please confirm", "ok", "boolean")}, "round-1")
        return got if isinstance(got, InputRequiredResult) else "state-ok: round-1"

    @server.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> Union[str, InputRequiredResult]:
        """Ask only for what the client declared it supports."""
        capabilities = ctx.client_capabilities
        asked: Dict[str, InputRequest] = {}
        if capabilities is None or capabilities.sampling is not None:
            asked["sample"] = _sample("Say hello", 50)
        if capabilities is None or capabilities.elicitation is not None:
            asked["ask"] = _ask("What is your name?", "name")
        if not is_handshake(ctx):  # the scenario looks at the first round only
            return InputRequiredResult(input_requests=asked, request_state="capability-gated")
        got = await inputs(ctx, asked)
        return f"asked for {sorted(got)}"

    # --- resources -----------------------------------------------------------------------

    @server.resource("test://static-text")
    def static_text() -> str:
        """Static text."""
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        """A static image."""
        return base64.b64decode(PIXEL)

    @server.resource("test://template/{id}/data", mime_type="application/json")
    def template(id: str) -> str:
        """Data by id."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource("test://watched-resource")
    def watched() -> str:
        """A resource to subscribe to."""
        return "Watched resource content"

    # --- prompts -------------------------------------------------------------------------

    @server.prompt()
    def test_simple_prompt() -> List[UserMessage]:
        """A prompt without arguments."""
        return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @server.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> List[UserMessage]:
        """A prompt with two arguments."""
        return [UserMessage(role="user", content=TextContent(
            type="text", text=f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]

    @server.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> List[UserMessage]:
        """A prompt embedding a resource."""
        return [UserMessage(role="user", content=EmbeddedResource(type="resource", resource=TextResourceContents(
                    uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."))),
                UserMessage(role="user", content=TextContent(
                    type="text", text="Please process the embedded resource above."))]

    @server.prompt()
    def test_prompt_with_image() -> List[UserMessage]:
        """A prompt with an image."""
        return [UserMessage(role="user", content=ImageContent(type="image", data=PIXEL, mime_type="image/png")),
                UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above."))]

    @server.prompt()
    async def test_input_required_result_prompt(ctx: Context) -> Union[List[UserMessage], InputRequiredResult]:
        """A prompt that asks for context first."""
        got = await inputs(ctx, {"user_context": _ask("What context should the prompt use?", "context")})
        if isinstance(got, InputRequiredResult):
            return got
        return [UserMessage(role="user", content=TextContent(
            type="text", text=f"Use the following context: {_answer(got, 'user_context', 'context')}"))]

    @server.completion()
    async def complete(ref: Union[PromptReference, ResourceTemplateReference], argument: CompletionArgument,
                       context: Optional[CompletionContext]) -> Completion:
        return Completion(values=[], total=0, has_more=False)

    # --- what MCPServer has no decorator for (the handshake era's) -----------------------

    async def empty(ctx: ServerRequestContext, params: Any) -> EmptyResult:
        return EmptyResult()

    low = server._lowlevel_server
    low.add_request_handler("logging/setLevel", SetLevelRequestParams, empty)
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, empty)
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, empty)
    return server


ASGIApp = Callable[[Dict[str, Any], Callable[[], Awaitable[Dict[str, Any]]],
                    Callable[[Dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def era_gate(app: ASGIApp, era: str) -> ASGIApp:
    """
    C{app}, refusing the requests of the other era (see the module's
    docstring).
    """

    async def gated(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or era == "dual":
            return await app(scope, receive, send)
        header = next((v.decode("latin-1").strip() for k, v in scope["headers"]
                       if k == b"mcp-protocol-version"), None)
        refusal: Optional[tuple] = None
        if era == "handshake" and header is not None and header not in HANDSHAKE_PROTOCOL_VERSIONS:
            refusal = (400, -32600, f"Bad Request: Unsupported protocol version: {header}",
                       {"supported": list(HANDSHAKE_PROTOCOL_VERSIONS), "requested": header})
        elif era == "modern" and scope["method"] in ("GET", "DELETE"):
            refusal = (405, -32601, "Method not allowed: this server speaks 2026-07-28 only", None)
        elif era == "modern" and (header is None or header in HANDSHAKE_PROTOCOL_VERSIONS):
            refusal = (400, -32022, "Unsupported protocol version",
                       {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": header})
        if refusal is None:
            return await app(scope, receive, send)
        status, code, message, data = refusal
        error: Dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return None

    return gated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--era", choices=ERAS, default="dual")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = build().streamable_http_app(stateless_http=args.era == "modern")
    uvicorn.run(era_gate(app, args.era), host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
