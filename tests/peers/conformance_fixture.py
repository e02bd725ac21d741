"""MCP conformance fixture: the upstream server the official conformance suite talks to.

The server scenarios of `@modelcontextprotocol/conformance` call fixed tool, resource
and prompt names (`test_simple_text`, `test://static-text`, `test_simple_prompt`, ...).
The suite's own reference fixture is not published, so this module implements those
names on top of the official Python SDK (`mcp` 2.x, `MCPServer`).

One process serves both protocol revisions from one Streamable HTTP endpoint:

* 2025-11-25 (handshake era): `initialize`, `Mcp-Session-Id` sessions, server-to-client
  requests (sampling, elicitation) on the POST's SSE stream, `logging/setLevel`,
  `resources/subscribe`, resumable SSE with priming events.
* 2026-07-28 (stateless era): per-request `_meta` envelope, `server/discover`,
  routing-header validation, caching hints, multi-round-trip `InputRequiredResult`
  with sealed `requestState`, `subscriptions/listen`, and the optional tasks
  extension (`io.modelcontextprotocol/tasks`, built here on the SDK's Extension API
  because the SDK ships none).

The SDK routes each request by its `MCP-Protocol-Version` header, so the fixture only
registers behaviour; which revision a request speaks is decided by the SDK. Tools and
prompts that only make sense on one revision are hidden from the other revision's
list results (see `RevisionListFilter`), but stay callable.

Usage:
    python conformance_fixture.py --transport http --port 8931   # http://127.0.0.1:8931/mcp
    python conformance_fixture.py --transport stdio

This is test infrastructure for mcp-bastion: it runs directly against the suite to
establish a baseline, and behind the gateway to show the gateway preserves it.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import logging
import sys
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

import anyio
import anyio.abc
import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import (
    Context,
    Extension,
    MCPServer,
    MethodBinding,
    ToolBinding,
    require_client_extension,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.inbound import decode_header_value
from mcp_types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CallToolRequestParams,
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
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCResponse,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    RequestParams,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

# The fixture deliberately exercises features that 2026-07-28 deprecates (logging,
# sampling, roots) because the 2025-11-25 scenarios require them; the warnings would
# only add noise to the server log.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

log = logging.getLogger("conformance_fixture")

SERVER_NAME = "mcp-conformance-fixture"
SERVER_VERSION = "1.0.0"

# 1x1 PNG and a minimal WAV, the same payloads the suite's scenario descriptions use.
TEST_IMAGE_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# Raw JSON Schema 2020-12 for `json_schema_2020_12_tool` (SEP-1613, SEP-2106). The suite
# checks that `$schema`, `$defs`, `$anchor`, `additionalProperties`, composition and
# conditional keywords survive tools/list, so this dict is advertised verbatim instead of
# the schema pydantic would derive from the function signature.
JSON_SCHEMA_2020_12_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def is_modern(protocol_version: str | None) -> bool:
    """True for the stateless 2026-07-28 era, False for the handshake era."""
    return protocol_version in MODERN_PROTOCOL_VERSIONS


# ---------------------------------------------------------------------------
# Resumability (SEP-1699)
# ---------------------------------------------------------------------------


class InMemoryEventStore(EventStore):
    """Event store so POST SSE streams carry priming events and can be resumed.

    The SDK ships only the `EventStore` interface. It shares one store across all
    sessions and keys streams by the JSON-RPC request id, so two sessions that both
    use request id 1 write to the same stream id. Every POST stream starts with a
    priming event (message None); replay therefore stops at the next priming event
    of the same stream id, which keeps a resumed stream from picking up a later
    stream that reused the id. Concurrent streams with the same id can still
    interleave; the conformance suite does not create that situation.
    """

    def __init__(self, max_events: int = 10_000) -> None:
        self._events: OrderedDict[EventId, tuple[StreamId, JSONRPCMessage | None]] = OrderedDict()
        self._ids = itertools.count(1)
        self._max_events = max_events

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = str(next(self._ids))
        self._events[event_id] = (stream_id, message)
        while len(self._events) > self._max_events:
            self._events.popitem(last=False)
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if last_event_id not in self._events:
            return None
        stream_id = self._events[last_event_id][0]
        replaying = False
        for event_id, (sid, message) in list(self._events.items()):
            if event_id == last_event_id:
                replaying = True
                continue
            if not replaying or sid != stream_id:
                continue
            if message is None:
                break  # priming event of a newer stream that reused this id
            await send_callback(EventMessage(message, event_id))
            if isinstance(message, JSONRPCResponse | JSONRPCError):
                break  # the stream ends with its response
        return stream_id


# ---------------------------------------------------------------------------
# Handshake-era logging level (logging/setLevel)
# ---------------------------------------------------------------------------

# logging/setLevel is connection-scoped in 2025-11-25. The SDK leaves filtering to the
# application, so the fixture remembers the level per Mcp-Session-Id (None on stdio).
_session_log_levels: dict[str | None, str] = {}


def _session_key(headers: Mapping[str, str] | None) -> str | None:
    return headers.get("mcp-session-id") if headers is not None else None


async def emit_log(ctx: Context, level: str, message: str) -> None:
    """Send a notifications/message honouring the revision's opt-in rules.

    Handshake era: filtered by the level from logging/setLevel. Stateless era: the
    SDK itself drops the entry unless the request's `_meta` carried a log level.
    """
    if not is_modern(ctx.protocol_version):
        threshold = _session_log_levels.get(_session_key(ctx.headers))
        if threshold is not None and LOG_LEVELS.index(level) < LOG_LEVELS.index(threshold):
            return
    await ctx.log(level, message, logger_name=SERVER_NAME)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Tools: content types
# ---------------------------------------------------------------------------


async def test_simple_text() -> list[TextContent]:
    return [TextContent(type="text", text="This is a simple text response for testing.")]


async def test_image_content() -> list[ImageContent]:
    return [ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png")]


async def test_audio_content() -> list[AudioContent]:
    return [AudioContent(type="audio", data=TEST_AUDIO_BASE64, mime_type="audio/wav")]


async def test_embedded_resource() -> list[EmbeddedResource]:
    return [
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://embedded-resource",
                mime_type="text/plain",
                text="This is an embedded resource content.",
            ),
        )
    ]


async def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png"),
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://mixed-content-resource",
                mime_type="application/json",
                text=json.dumps({"test": "data", "value": 123}),
            ),
        ),
    ]


async def test_error_handling() -> str:
    # ToolError keeps its message in the isError result; any other exception would be
    # replaced by a generic "Error executing tool ..." text.
    raise ToolError("This tool intentionally returns an error for testing")


async def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,  # noqa: N803 - wire name from the suite's schema
    phone: str | None = None,
    email: str | None = None,
) -> str:
    args = {
        k: v
        for k, v in {
            "name": name,
            "address": address,
            "contactMethod": contactMethod,
            "phone": phone,
            "email": email,
        }.items()
        if v is not None
    }
    return f"JSON Schema 2020-12 tool called with: {json.dumps(args)}"


def _header_param(description: str, header: str) -> Any:
    # `x-mcp-header` in the property schema asks 2026-07-28 clients to mirror the
    # argument into an `Mcp-Param-<header>` request header (SEP-2243).
    return Field(description=description, json_schema_extra={"x-mcp-header": header})


async def test_custom_headers(
    region: Annotated[str, _header_param("Region, mirrored as Mcp-Param-Region", "Region")],
    priority: Annotated[int, _header_param("Priority, mirrored as Mcp-Param-Priority", "Priority")],
    query: Annotated[str, Field(description="Free text, not mirrored into a header")],
) -> str:
    # On 2026-07-28 the SDK validates the Mcp-Param-* headers against these
    # arguments before the tool runs (SEP-2243); the body only echoes them.
    return f"region={region} priority={priority} query={query}"


# ---------------------------------------------------------------------------
# Tools: notifications during a call
# ---------------------------------------------------------------------------


async def test_tool_with_logging(ctx: Context) -> str:
    await emit_log(ctx, "info", "Tool execution started")
    await anyio.sleep(0.05)
    await emit_log(ctx, "info", "Tool processing data")
    await anyio.sleep(0.05)
    await emit_log(ctx, "info", "Tool execution completed")
    return "Tool with logging executed successfully"


async def test_tool_with_progress(ctx: Context) -> str:
    # report_progress is a no-op when the request carried no progressToken.
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        if step < 100:
            await anyio.sleep(0.05)
    # RequestParamsMeta is a TypedDict keyed by the Python field name.
    token = (ctx.request_context.meta or {}).get("progress_token")
    return f"Progress test completed (progressToken={token})"


async def test_logging_tool(ctx: Context) -> str:
    # Stateless diagnostic: the SDK must drop this entry unless the request's _meta
    # set io.modelcontextprotocol/logLevel (2026-07-28 per-request log opt-in).
    await emit_log(ctx, "info", "Diagnostic trace logging activated")
    return "Logging evaluated"


async def test_streaming_elicitation(ctx: Context) -> str:
    # Stateless diagnostic: the response stream may carry notifications but never a
    # server-to-client request.
    await ctx.report_progress(50, 100, "Halfway")
    return "Streaming complete"


async def test_reconnection(ctx: Context) -> str:
    # SEP-1699 polling: close the POST SSE stream mid-call; the result is stored in the
    # event store and delivered when the client resumes with Last-Event-ID.
    await ctx.close_sse_stream()
    await anyio.sleep(0.1)
    return (
        "Reconnection test completed successfully. If you received this, "
        "the client properly reconnected after stream closure."
    )


# ---------------------------------------------------------------------------
# Tools: server-to-client requests (handshake era only)
# ---------------------------------------------------------------------------


async def test_sampling(
    prompt: Annotated[str, Field(description="The prompt to send to the LLM")], ctx: Context
) -> str:
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        raise ToolError("The client did not declare the sampling capability")
    try:
        # related_request_id puts the request on this call's POST SSE stream rather
        # than the session's standalone GET stream.
        result = await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
    except MCPError as exc:
        raise ToolError(f"Sampling failed: {exc}") from exc
    text = result.content.text if isinstance(result.content, TextContent) else "No response"
    return f"LLM response: {text}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any], prefix: str) -> str:
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        raise ToolError("The client did not declare the elicitation capability")
    try:
        # Same stream choice as test_sampling: the request rides the tool call's stream.
        result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    except MCPError as exc:
        raise ToolError(f"Elicitation failed: {exc}") from exc
    return f"{prefix}: action={result.action}, content={json.dumps(result.content or {})}"


async def test_elicitation(
    message: Annotated[str, Field(description="The message to show the user")], ctx: Context
) -> str:
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    return await _elicit(ctx, message, schema, "User response")


async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    return await _elicit(
        ctx, "Please review and update the form fields with defaults", schema, "Elicitation completed"
    )


async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
        "required": [],
    }
    return await _elicit(ctx, "Please select options from the enum fields", schema, "Elicitation completed")


# ---------------------------------------------------------------------------
# Tools: capabilities and subscriptions
# ---------------------------------------------------------------------------


async def test_missing_capability(ctx: Context) -> str:
    # A server MUST NOT rely on a capability the client did not declare; it answers
    # -32021 with requiredCapabilities as a ClientCapabilities object (HTTP 400).
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="Missing required client capability: sampling",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "Success"


async def test_trigger_tool_change(ctx: Context) -> str:
    # Fans notifications/tools/list_changed out to open subscriptions/listen streams.
    await ctx.notify_tools_changed()
    return "Mutation triggered"


async def test_trigger_prompt_change(ctx: Context) -> str:
    await ctx.notify_prompts_changed()
    return "Mutation triggered"


# ---------------------------------------------------------------------------
# Tools: multi-round-trip requests (SEP-2322, stateless era)
#
# The SDK seals every outgoing requestState (AES-GCM, bound to method, tool name,
# arguments and server name) and unseals the echo before the tool runs, so the tools
# below read and write plaintext JSON and tampered state never reaches them.
# ---------------------------------------------------------------------------


def _elicit_request(message: str, properties: dict[str, Any], required: list[str]) -> ElicitRequest:
    return ElicitRequest(
        params=ElicitRequestFormParams(
            message=message,
            requested_schema={"type": "object", "properties": properties, "required": required},
        )
    )


def _sampling_request(text: str, max_tokens: int) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
            max_tokens=max_tokens,
        )
    )


def _accepted(answer: Any) -> dict[str, Any] | None:
    """Content of an accepted elicitation answer, else None.

    tasks/update answers arrive as raw dicts; tools/call inputResponses are parsed
    by the SDK into ElicitResult models.
    """
    if isinstance(answer, ElicitResult):
        return dict(answer.content) if answer.action == "accept" and answer.content else None
    if isinstance(answer, Mapping) and answer.get("action") == "accept" and isinstance(answer.get("content"), Mapping):
        return dict(answer["content"])
    return None


def _accepted_field(ctx: Context, key: str, field: str) -> Any | None:
    """Value of `field` from an accepted elicitation answer under `key`, else None."""
    return (_accepted((ctx.input_responses or {}).get(key)) or {}).get(field)


def _state(ctx: Context) -> dict[str, Any]:
    if ctx.request_state is None:
        return {}
    try:
        state = json.loads(ctx.request_state)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _input_required(requests: dict[str, InputRequest], state: dict[str, Any] | None = None) -> InputRequiredResult:
    return InputRequiredResult(
        input_requests=requests,
        request_state=json.dumps(state) if state is not None else None,
    )


async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    name = _accepted_field(ctx, "user_name", "name")
    if isinstance(name, str):
        return f"Hello, {name}!"
    # Missing or wrong keys: ask again rather than failing (SEP-2322 SHOULD).
    return _input_required(
        {"user_name": _elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"])}
    )


async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    answer = (ctx.input_responses or {}).get("sample_request")
    if isinstance(answer, CreateMessageResult):
        text = answer.content.text if isinstance(answer.content, TextContent) else "no response"
        return f"Sampling result: {text}"
    return _input_required({"sample_request": _sampling_request("What is the capital of France?", 100)})


async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    answer = (ctx.input_responses or {}).get("roots_request")
    if isinstance(answer, ListRootsResult):
        return f"Found {len(answer.roots)} root(s)"
    return _input_required({"roots_request": ListRootsRequest()})


async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    if _state(ctx).get("kind") == "request-state" and _accepted_field(ctx, "confirm", "ok") is True:
        return "state-ok: requestState validated"
    return _input_required(
        {"confirm": _elicit_request("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])},
        {"kind": "request-state"},
    )


async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    responses = ctx.input_responses or {}
    greeting = responses.get("greeting")
    roots = responses.get("client_roots")
    name = _accepted_field(ctx, "user_name", "name")
    if (
        _state(ctx).get("kind") == "multiple-inputs"
        and isinstance(name, str)
        and isinstance(greeting, CreateMessageResult)
        and isinstance(roots, ListRootsResult)
    ):
        greeting_text = greeting.content.text if isinstance(greeting.content, TextContent) else "Hello there!"
        return f"Name: {name}; Greeting: {greeting_text}; Roots: {len(roots.roots)}"
    return _input_required(
        {
            "user_name": _elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"]),
            "greeting": _sampling_request("Generate a greeting", 50),
            "client_roots": ListRootsRequest(),
        },
        {"kind": "multiple-inputs"},
    )


async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    state = _state(ctx)
    if state.get("round") == 1:
        name = _accepted_field(ctx, "step1", "name")
        if isinstance(name, str):
            return _input_required(
                {
                    "step2": _elicit_request(
                        "Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"]
                    )
                },
                {"round": 2, "name": name},
            )
    if state.get("round") == 2:
        color = _accepted_field(ctx, "step2", "color")
        if isinstance(color, str):
            return f"Multi-round complete for {state.get('name', 'friend')} who likes {color}"
    # First round, or an answer that does not fit the current round: start over.
    return _input_required(
        {"step1": _elicit_request("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])},
        {"round": 1},
    )


async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    # Integrity is the SDK's job: a modified requestState is rejected with -32602
    # before this function runs, so reaching the first branch means the state is ours.
    if _state(ctx).get("kind") == "tamper-test" and _accepted_field(ctx, "confirm", "ok") is not None:
        return "integrity-ok: state verified"
    return _input_required(
        {"confirm": _elicit_request("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])},
        {"kind": "tamper-test"},
    )


async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    # Only ask for what the client declared in this request's clientCapabilities.
    if ctx.input_responses:
        return f"capabilities-ok: received {','.join(ctx.input_responses)}"
    caps = ctx.client_capabilities
    requests: dict[str, InputRequest] = {}
    if caps is not None and caps.elicitation is not None:
        requests["elicit_input"] = _elicit_request("Elicitation input", {"value": {"type": "string"}}, ["value"])
    if caps is not None and caps.sampling is not None:
        requests["sample_input"] = _sampling_request("Sample request", 50)
    if not requests:
        return "No supported capabilities declared"
    return _input_required(requests, {"kind": "capabilities-test"})


# ---------------------------------------------------------------------------
# Tasks extension (io.modelcontextprotocol/tasks, SEP-2663, stateless era)
#
# mcp 2.3.0 ships no tasks implementation, only the generic Extension API
# (extra methods, a tools/call interceptor, capability advertisement). The
# fixture builds the extension on that API so the suite's tasks scenarios, and a
# gateway's handling of extension methods and `resultType: "task"`, can be
# exercised. Tasks live in process memory; there is no authorization, so any
# caller that declares the extension can read or cancel any task.
# ---------------------------------------------------------------------------

TASKS_EXTENSION_ID = "io.modelcontextprotocol/tasks"
TASK_TTL_MS = 300_000
TASK_POLL_INTERVAL_MS = 200
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_result(text: str, *, is_error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if is_error:
        result["isError"] = True
    return result


def _wire_request(request: InputRequest) -> dict[str, Any]:
    return request.model_dump(by_alias=True, mode="json", exclude_none=True)


class FixtureTask:
    """One task: its wire-visible state plus the cancel scope of the running body."""

    def __init__(self) -> None:
        self.task_id = uuid.uuid4().hex
        self.created_at = self.updated_at = _now_iso()
        self.expires_at = time.monotonic() + TASK_TTL_MS / 1000
        self.status = "working"
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.pending: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, Any] = {}
        self.answered = anyio.Event()
        self.scope = anyio.CancelScope()

    def _set(self, status: str) -> None:
        self.status = status
        self.updated_at = _now_iso()

    def finish(self, status: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        if self.status in TERMINAL_STATUSES:
            return  # first terminal state wins (e.g. a cancel racing completion)
        self.pending = {}
        self.result, self.error = result, error
        self._set(status)

    async def ask(self, requests: dict[str, InputRequest]) -> dict[str, Any]:
        """Park the task in input_required until every request has an answer."""
        self.pending = {key: _wire_request(request) for key, request in requests.items()}
        self.answers = {}
        self.answered = anyio.Event()
        self._set("input_required")
        await self.answered.wait()
        self._set("working")
        return self.answers

    def deliver(self, responses: Mapping[str, Any]) -> None:
        # Answers may arrive one key at a time; unknown keys are ignored.
        for key, response in responses.items():
            if key in self.pending:
                del self.pending[key]
                self.answers[key] = response
        if self.status == "input_required" and not self.pending:
            self.answered.set()

    def cancel(self) -> None:
        if self.status not in TERMINAL_STATUSES:
            self.finish("cancelled")
            self.scope.cancel()

    def envelope(self) -> dict[str, Any]:
        """The Task fields shared by CreateTaskResult and tasks/get."""
        return {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.updated_at,
            "ttlMs": TASK_TTL_MS,
            "pollIntervalMs": TASK_POLL_INTERVAL_MS,
        }

    def detailed(self) -> dict[str, Any]:
        """DetailedTask for tasks/get: the outcome is inlined, there is no tasks/result."""
        task = self.envelope()
        if self.status == "completed":
            task["result"] = self.result
        elif self.status == "failed":
            task["error"] = self.error
        elif self.status == "input_required":
            task["inputRequests"] = dict(self.pending)
        return task


TaskBody = Callable[[FixtureTask, dict[str, Any]], Awaitable[dict[str, Any]]]


async def _slow_compute_body(task: FixtureTask, args: dict[str, Any]) -> dict[str, Any]:
    seconds = float(args.get("seconds") or 0)
    await anyio.sleep(seconds)
    return _text_result(f"slow_compute {args.get('label', '')!s} finished after {seconds:g}s")


async def _failing_job_body(task: FixtureTask, args: dict[str, Any]) -> dict[str, Any]:
    await anyio.sleep(1)
    # The tool ran and reported an error: the task completes with isError, it does not fail.
    return _text_result("failing_job: the job reported an error", is_error=True)


async def _protocol_error_job_body(task: FixtureTask, args: dict[str, Any]) -> dict[str, Any]:
    await anyio.sleep(0.1)
    # A protocol-level failure: the task ends as failed with an inlined JSON-RPC error.
    raise MCPError(code=INTERNAL_ERROR, message="protocol_error_job: simulated internal failure")


async def _confirm_delete_body(task: FixtureTask, args: dict[str, Any]) -> dict[str, Any]:
    filename = str(args.get("filename") or "file")
    answers = await task.ask(
        {"confirm": _elicit_request(f"Delete {filename}?", {"confirm": {"type": "boolean"}}, ["confirm"])}
    )
    content = _accepted(answers.get("confirm"))
    confirmed = content is not None and content.get("confirm") is True
    return _text_result(f"Deleted {filename}" if confirmed else f"Kept {filename}")


async def _multi_input_body(task: FixtureTask, args: dict[str, Any]) -> dict[str, Any]:
    # Two questions outstanding at once, so a client can answer them separately.
    answers = await task.ask(
        {
            "name": _elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"]),
            "confirm": _elicit_request("Proceed?", {"confirm": {"type": "boolean"}}, ["confirm"]),
        }
    )
    name = (_accepted(answers.get("name")) or {}).get("name", "unknown")
    confirmed = (_accepted(answers.get("confirm")) or {}).get("confirm") is True
    return _text_result(f"multi_input: name={name} confirm={confirmed}")


def _task_with_name_body(name: str) -> TaskBody:
    async def body(task: FixtureTask, args: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.2)
        return _text_result(f"Hello, {name}! (finished as a task)")

    return body


# Tool functions registered for tools/list and for the synchronous path. A call
# that becomes a task never reaches them: the interceptor below runs the body.


async def greet(name: Annotated[str, Field(description="Who to greet")]) -> str:
    return f"Hello, {name}!"


async def slow_compute(
    seconds: Annotated[float, Field(description="How long to work")] = 0,
    label: Annotated[str, Field(description="Free-form label echoed in the result")] = "",
) -> str:
    # Synchronous fallback for clients that did not declare the extension.
    await anyio.sleep(seconds)
    return f"slow_compute {label} finished after {seconds:g}s"


async def _task_required() -> str:
    raise ToolError(f"this tool runs only as a task ({TASKS_EXTENSION_ID})")


async def failing_job() -> str:
    return await _task_required()


async def protocol_error_job() -> str:
    return await _task_required()


async def confirm_delete(filename: Annotated[str, Field(description="File to delete after confirmation")]) -> str:
    return await _task_required()


async def multi_input() -> str:
    return await _task_required()


async def test_tool_with_task(ctx: Context) -> str | InputRequiredResult:
    # Round 1 is a plain MRTR round; once the name is known the interceptor turns the
    # call into a task, so this body only ever asks the question.
    return _input_required(
        {"user_name": _elicit_request("What is your name?", {"name": {"type": "string"}}, ["name"])}
    )


class TaskIdParams(RequestParams):
    task_id: str


class TaskUpdateParams(TaskIdParams):
    # Answers are checked against the pending requests, not validated as spec
    # results: an unknown key with any payload is acknowledged and ignored.
    input_responses: dict[str, Any] = Field(default_factory=dict)


class TasksExtension(Extension):
    """Server side of io.modelcontextprotocol/tasks on the 2026-07-28 wire."""

    identifier = TASKS_EXTENSION_ID

    # name -> (task support, body). "required" tools answer -32021 to clients that
    # did not declare the extension; "optional" ones run synchronously for them.
    TASK_TOOLS: dict[str, tuple[str, TaskBody | None]] = {
        "slow_compute": ("optional", _slow_compute_body),
        "failing_job": ("required", _failing_job_body),
        "protocol_error_job": ("required", _protocol_error_job_body),
        "confirm_delete": ("required", _confirm_delete_body),
        "multi_input": ("required", _multi_input_body),
        "test_tool_with_task": ("required", None),  # body depends on the MRTR answer
    }

    def __init__(self) -> None:
        self._tasks: dict[str, FixtureTask] = {}
        self._task_group: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Own the task group task bodies run in; entered from the server lifespan."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                yield
            finally:
                self._task_group = None
                task_group.cancel_scope.cancel()

    def tools(self) -> list[ToolBinding]:
        description = {
            "greet": "Synchronous tool, never becomes a task",
            "slow_compute": "Sleeps for `seconds`; runs as a task for clients that declare the tasks extension",
            "failing_job": "Task-only; completes with a tool error (isError) after about a second",
            "protocol_error_job": "Task-only; fails with a protocol-level error",
            "confirm_delete": "Task-only; parks in input_required until the client confirms via tasks/update",
            "multi_input": "Task-only; asks two questions at once (partial tasks/update answers allowed)",
            "test_tool_with_task": "MRTR round for the name, then continues as a task",
        }
        functions = [
            greet,
            slow_compute,
            failing_job,
            protocol_error_job,
            confirm_delete,
            multi_input,
            test_tool_with_task,
        ]
        return [
            ToolBinding(fn, kwargs={"description": description[fn.__name__], "structured_output": False})
            for fn in functions
        ]

    def methods(self) -> list[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", TaskIdParams, self._get, protocol_versions=modern),
            MethodBinding("tasks/update", TaskUpdateParams, self._update, protocol_versions=modern),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel, protocol_versions=modern),
        ]

    @staticmethod
    def _declared(ctx: ServerRequestContext[Any, Any]) -> bool:
        # 2026-07-28 capabilities are per request, so a client can opt in for one call.
        caps = ctx.session.client_capabilities
        return caps is not None and TASKS_EXTENSION_ID in (caps.extensions or {})

    def _lookup(self, task_id: str) -> FixtureTask:
        now = time.monotonic()
        for stale in [tid for tid, task in self._tasks.items() if task.expires_at <= now]:
            self._tasks.pop(stale).cancel()
        task = self._tasks.get(task_id)
        if task is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown taskId: {task_id}", data={"taskId": task_id})
        return task

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION_ID)
        return self._lookup(params.task_id).detailed()

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION_ID)
        self._lookup(params.task_id).deliver(params.input_responses)
        return {}  # bare ack; the new state is observed via tasks/get

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        require_client_extension(ctx, TASKS_EXTENSION_ID)
        self._lookup(params.task_id).cancel()  # idempotent on terminal tasks
        return {}

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        spec = self.TASK_TOOLS.get(params.name)
        if spec is None or not is_modern(ctx.protocol_version):
            return await call_next(ctx)
        support, body = spec
        if not self._declared(ctx):
            if support == "required":
                require_client_extension(ctx, TASKS_EXTENSION_ID)  # raises -32021
            return await call_next(ctx)
        if params.name == "test_tool_with_task":
            answer = _accepted((params.input_responses or {}).get("user_name"))
            name = (answer or {}).get("name")
            if not isinstance(name, str):
                return await call_next(ctx)  # MRTR round: ask for the name first
            body = _task_with_name_body(name)
        assert body is not None
        return self._start(body, dict(params.arguments or {}))

    def _start(self, body: TaskBody, args: dict[str, Any]) -> dict[str, Any]:
        if self._task_group is None:
            raise MCPError(code=INTERNAL_ERROR, message="task runner is not running")
        task = FixtureTask()
        # Registered before the CreateTaskResult goes out, so an immediate tasks/get resolves.
        self._tasks[task.task_id] = task
        self._task_group.start_soon(self._run, task, body, args)
        return {"resultType": "task", **task.envelope()}

    @staticmethod
    async def _run(task: FixtureTask, body: TaskBody, args: dict[str, Any]) -> None:
        with task.scope:
            try:
                result = await body(task, args)
            except MCPError as exc:
                task.finish("failed", error=exc.error.model_dump(mode="json", exclude_none=True))
            except Exception:
                log.exception("task body raised")
                task.finish("failed", error={"code": INTERNAL_ERROR, "message": "Internal error"})
            else:
                task.finish("completed", result=result)


class TaskRoutingHeaderCheck:
    """SEP-2663 extends SEP-2243 routing headers to tasks/*: Mcp-Name must equal taskId.

    The SDK validates Mcp-Name only for the core name-bearing methods (tools/call,
    prompts/get, resources/read), so the extension checks its own methods. A
    mismatch or missing header is -32020 HeaderMismatch, which the SDK sends as 400.
    """

    METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        headers = getattr(ctx.request, "headers", None)  # None on stdio: no routing headers there
        if ctx.method in self.METHODS and headers is not None and is_modern(ctx.protocol_version):
            task_id = (ctx.params or {}).get("taskId")
            if isinstance(task_id, str) and decode_header_value(headers.get("mcp-name")) != task_id:
                raise MCPError(code=HEADER_MISMATCH, message="Mcp-Name header does not match params.taskId")
        return await call_next(ctx)


# ---------------------------------------------------------------------------
# Tool table
# ---------------------------------------------------------------------------

# (function, description). Order matters only in that the suite's header-validation
# scenario calls the first listed tool with empty arguments, so that one must need none.
_TOOLS: list[tuple[Any, str]] = [
    (test_simple_text, "Tests simple text content response"),
    (test_image_content, "Tests image content response"),
    (test_audio_content, "Tests audio content response"),
    (test_embedded_resource, "Tests embedded resource content response"),
    (test_multiple_content_types, "Tests response with multiple content types (text, image, resource)"),
    (test_tool_with_logging, "Tests tool that emits log messages during execution"),
    (test_tool_with_progress, "Tests tool that reports progress notifications"),
    (test_error_handling, "Tests error response handling"),
    (test_reconnection, "Closes the SSE stream mid-call to test client reconnection (SEP-1699)"),
    (test_sampling, "Tests server-initiated sampling (LLM completion request)"),
    (test_elicitation, "Tests server-initiated elicitation (user input request)"),
    (test_elicitation_sep1034_defaults, "Tests elicitation with default values per SEP-1034"),
    (test_elicitation_sep1330_enums, "Tests elicitation with enum schema improvements per SEP-1330"),
    (json_schema_2020_12_tool, "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)"),
    (test_custom_headers, "Tool whose arguments are mirrored into Mcp-Param-* headers (SEP-2243)"),
    (test_missing_capability, "Requires the sampling client capability (-32021 when undeclared)"),
    (test_logging_tool, "Emits a log entry only when the request opted in via _meta logLevel"),
    (test_streaming_elicitation, "Response stream carries notifications but no server requests"),
    (test_trigger_tool_change, "Publishes notifications/tools/list_changed to listen streams"),
    (test_trigger_prompt_change, "Publishes notifications/prompts/list_changed to listen streams"),
    (test_input_required_result_elicitation, "MRTR: InputRequiredResult with an elicitation request"),
    (test_input_required_result_sampling, "MRTR: InputRequiredResult with a sampling request"),
    (test_input_required_result_list_roots, "MRTR: InputRequiredResult with a roots/list request"),
    (test_input_required_result_request_state, "MRTR: InputRequiredResult with requestState"),
    (test_input_required_result_multiple_inputs, "MRTR: InputRequiredResult with several input requests"),
    (test_input_required_result_multi_round, "MRTR: three-round workflow with evolving requestState"),
    (test_input_required_result_tampered_state, "MRTR: integrity-protected requestState"),
    (test_input_required_result_capabilities, "MRTR: only asks for declared client capabilities"),
]

# Revision-specific names, hidden from the other revision's list results.
HANDSHAKE_ONLY = {
    # They send server-to-client requests or rely on logging/setLevel or SSE
    # resumption, none of which exist on the 2026-07-28 wire.
    "test_tool_with_logging",
    "test_reconnection",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
}
MODERN_ONLY = {
    # InputRequiredResult and subscriptions/listen exist only on 2026-07-28.
    "test_trigger_tool_change",
    "test_trigger_prompt_change",
    "test_input_required_result_elicitation",
    "test_input_required_result_sampling",
    "test_input_required_result_list_roots",
    "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state",
    "test_input_required_result_capabilities",
    "test_input_required_result_prompt",
    # The tasks extension is served on 2026-07-28 only.
    "greet",
    "slow_compute",
    "failing_job",
    "protocol_error_job",
    "confirm_delete",
    "multi_input",
    "test_tool_with_task",
}


def build_tools() -> list[Tool]:
    tools = []
    for fn, description in _TOOLS:
        tool = Tool.from_function(fn, description=description, structured_output=False)
        if fn is json_schema_2020_12_tool:
            # Advertise the hand-written 2020-12 schema; arguments are still validated
            # against the function signature, which accepts every property it names.
            tool = tool.model_copy(update={"parameters": JSON_SCHEMA_2020_12_INPUT_SCHEMA})
        tools.append(tool)
    return tools


class RevisionListFilter:
    """Server middleware hiding revision-specific tools and prompts from list results.

    Runs inside the SDK's serializer, so the result it sees is the wire dict.
    """

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        key = {"tools/list": "tools", "prompts/list": "prompts"}.get(ctx.method)
        if key is None or not isinstance(result, dict) or not isinstance(result.get(key), list):
            return result
        hidden = HANDSHAKE_ONLY if is_modern(ctx.protocol_version) else MODERN_ONLY
        return {**result, key: [item for item in result[key] if item.get("name") not in hidden]}


# ---------------------------------------------------------------------------
# Server assembly
# ---------------------------------------------------------------------------


def build_server() -> MCPServer:
    # SEP-2549: cacheable results carry ttlMs/cacheScope on 2026-07-28. The SDK drops
    # the fields again on handshake-era results, where they are not part of the schema.
    listing = CacheHint(ttl_ms=300_000, scope="public")
    tasks = TasksExtension()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        # Entered once per process (HTTP) or connection (stdio); task bodies outlive
        # the tools/call request that started them, so they run in this scope.
        async with tasks.running():
            yield {}

    server = MCPServer(
        SERVER_NAME,
        version=SERVER_VERSION,
        instructions="Conformance fixture for the MCP conformance suite.",
        tools=build_tools(),
        extensions=[tasks],
        lifespan=lifespan,
        cache_hints={
            "server/discover": CacheHint(ttl_ms=0, scope="public"),
            "tools/list": listing,
            "prompts/list": listing,
            "resources/list": listing,
            "resources/templates/list": listing,
            "resources/read": CacheHint(ttl_ms=300_000, scope="private"),
        },
        middleware=[RevisionListFilter(), TaskRoutingHeaderCheck()],
    )

    # ----- resources -----

    @server.resource(
        "test://static-text",
        name="static-text",
        title="Static Text Resource",
        description="A static text resource for testing",
        mime_type="text/plain",
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource(
        "test://static-binary",
        name="static-binary",
        title="Static Binary Resource",
        description="A static binary resource (image) for testing",
        mime_type="image/png",
    )
    def static_binary() -> bytes:
        # bytes are sent as a base64 `blob`
        return base64.b64decode(TEST_IMAGE_BASE64)

    @server.resource(
        "test://watched-resource",
        name="watched-resource",
        title="Watched Resource",
        description="A resource clients can subscribe to",
        mime_type="text/plain",
    )
    def watched_resource() -> str:
        return "Watched resource content"

    @server.resource(
        "test://template/{id}/data",
        name="template",
        title="Resource Template",
        description="A resource template with parameter substitution",
        mime_type="application/json",
    )
    def template(id: str) -> str:  # noqa: A002 - the URI template variable is called id
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    # ----- prompts -----

    @server.prompt(title="Simple Test Prompt", description="A simple prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @server.prompt(title="Prompt With Arguments", description="A prompt with required arguments")
    def test_prompt_with_arguments(
        arg1: Annotated[str, Field(description="First test argument")],
        arg2: Annotated[str, Field(description="Second test argument")],
    ) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @server.prompt(title="Prompt With Embedded Resource", description="A prompt that includes an embedded resource")
    def test_prompt_with_embedded_resource(
        resourceUri: Annotated[str, Field(description="URI of the resource to embed")],  # noqa: N803
    ) -> list[Any]:
        return [
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
                ),
            ),
            "Please process the embedded resource above.",
        ]

    @server.prompt(title="Prompt With Image", description="A prompt that includes image content")
    def test_prompt_with_image() -> list[Any]:
        return [
            ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png"),
            "Please analyze the image above.",
        ]

    @server.prompt(description="MRTR: prompt that requires elicitation input")
    async def test_input_required_result_prompt(ctx: Context) -> Any:
        context = _accepted_field(ctx, "user_context", "context")
        if isinstance(context, str):
            return f"Prompt with context: {context}"
        return _input_required(
            {
                "user_context": _elicit_request(
                    "What context should the prompt use?", {"context": {"type": "string"}}, ["context"]
                )
            }
        )

    # ----- completion -----

    completion_candidates = {
        ("ref/prompt", "test_prompt_with_arguments"): ["test", "testValue1", "testValue2", "value"],
        ("ref/resource", "test://template/{id}/data"): ["1", "123", "42"],
    }

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        key = (ref.type, ref.name if isinstance(ref, PromptReference) else ref.uri)
        values = [v for v in completion_candidates.get(key, []) if v.startswith(argument.value)]
        return Completion(values=values, total=len(values), has_more=False)

    # ----- handshake-era handlers MCPServer does not register itself -----
    # MCPServer has no public way to add spec methods it does not wrap; the SDK points
    # at the lowlevel Server.add_request_handler for that (see MethodBinding's
    # docstring), which is only reachable through the private attribute. The SDK's
    # per-revision method table answers these methods with -32601 (HTTP 404) on
    # 2026-07-28, so registering them does not leak them into the stateless era.
    # Subscriptions are only recorded: the fixture's resources never change, so it
    # never sends notifications/resources/updated.

    lowlevel = server._lowlevel_server  # noqa: SLF001
    subscriptions: dict[str | None, set[str]] = {}

    def request_headers(ctx: ServerRequestContext[Any, Any]) -> Mapping[str, str] | None:
        return getattr(ctx.request, "headers", None)

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        _session_log_levels[_session_key(request_headers(ctx))] = params.level
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        subscriptions.setdefault(_session_key(request_headers(ctx)), set()).add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        subscriptions.get(_session_key(request_headers(ctx)), set()).discard(str(params.uri))
        return EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    return server


def serve_http(server: MCPServer, port: int, log_level: str) -> None:
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        # Priming events and resumption need an event store (SEP-1699); the retry
        # field tells clients how long to wait before reconnecting.
        event_store=InMemoryEventStore(),
        retry_interval=1000,
        # DNS-rebinding protection: only loopback Host/Origin values are accepted;
        # anything else gets 421 (Host) or 403 (Origin).
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ),
        host="127.0.0.1",
    )
    # Loopback only: this is a test peer and must never be reachable from outside.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level=log_level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("http", "stdio"), required=True)
    parser.add_argument("--port", type=int, help="TCP port on 127.0.0.1 (http transport)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)

    # stdout is the protocol channel in stdio mode, so diagnostics go to stderr.
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper())
    server = build_server()
    if args.transport == "stdio":
        server.run("stdio")
        return 0
    if args.port is None:
        parser.error("--port is required with --transport http")
    serve_http(server, args.port, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
