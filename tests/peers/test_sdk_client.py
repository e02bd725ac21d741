"""End-to-end tests that drive an MCP server URL with the official Python SDK client.

The client is `mcp.Client` from the pinned `mcp==2.3.0` (tests/peers/requirements.txt).
The server under test is expected to serve the tools, resources and prompts of
tests/peers/conformance_fixture.py, either directly or through mcp-bastion.

Environment:
    MCP_URL          Streamable HTTP endpoint, e.g. http://127.0.0.1:8931/mcp (required:
                     every test fails, none is skipped, when it is unset).
    MCP_TOOL_PREFIX  Prefix the server under test puts in front of tool and prompt names
                     (default ""). Resource URIs are never prefixed.

Every test runs once per protocol revision:
    2025-11-25  `mode="legacy"`: initialize handshake, Mcp-Session-Id session, sampling
                and elicitation as server-to-client requests on the tools/call SSE stream,
                DELETE of the session when the client closes.
    2026-07-28  `mode="2026-07-28"`: stateless per-request `_meta` envelope, no session;
                sampling and elicitation arrive as `input_required` results
                (`inputRequests`), which the SDK answers through the same callbacks before
                resending the call with `inputResponses` (and the echoed `requestState`).
                `test_connect` uses `mode="auto"` instead, so the `server/discover` probe
                is exercised too.

Run with tests/peers/run_sdk_tests.sh URL [PREFIX].
"""

from __future__ import annotations

import base64
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

# Whole-test budget, including connect and the DELETE at exit; a single request
# gives up earlier (read timeout) so its error names the request that hung.
TEST_TIMEOUT_S = 30
READ_TIMEOUT_S = 20

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
MODES = {LEGACY: "legacy", MODERN: MODERN}

# Exact payloads of conformance_fixture.py.
SIMPLE_TEXT = "This is a simple text response for testing."
STATIC_TEXT = "This is the content of the static text resource."
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="

# Tools that exist for one revision only; the fixture hides each set from the other
# revision's tools/list, so a listing that mixes them answered the wrong revision.
LEGACY_ONLY_TOOLS = {"test_sampling", "test_elicitation"}
MODERN_ONLY_TOOLS = {
    "test_input_required_result_sampling",
    "test_input_required_result_elicitation",
    "test_input_required_result_multi_round",
}

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("revision", [LEGACY, MODERN]),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def server_url() -> str:
    """MCP_URL; a missing value fails the calling test (it is neither skipped nor an error)."""
    value = os.environ.get("MCP_URL", "").strip()
    if not value:
        pytest.fail(
            "MCP_URL is not set: export MCP_URL=http://HOST:PORT/mcp (the server under test), "
            "or run tests/peers/run_sdk_tests.sh URL [PREFIX]",
            pytrace=False,
        )
    if not value.startswith(("http://", "https://")):
        pytest.fail(f"MCP_URL must be an http(s) URL, got {value!r}", pytrace=False)
    return value


def named(name: str) -> str:
    """A tool or prompt name as the server under test exposes it."""
    return os.environ.get("MCP_TOOL_PREFIX", "") + name


class TransportErrors:
    """message_handler recording transport-level exceptions, which the session otherwise drops."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    async def __call__(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)


def sole_exception(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The one leaf of a nested single-exception group, else None."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def connect(revision: str, *, mode: str | None = None, **callbacks: Any) -> AsyncIterator[Client]:
    """A connected `Client` for `revision` (mode legacy or 2026-07-28 unless `mode` is given).

    An assertion failing in the body surfaces as itself, not wrapped in the exception
    groups of the SDK's task groups, so pytest's summary line names it.
    """
    url = server_url()
    errors = TransportErrors()
    try:
        async with Client(
            url,
            mode=mode or MODES[revision],
            read_timeout_seconds=READ_TIMEOUT_S,
            message_handler=errors,
            **callbacks,
        ) as client:
            assert client.protocol_version == revision, f"negotiated {client.protocol_version}, wanted {revision}"
            yield client
    except BaseExceptionGroup as group:
        leaf = sole_exception(group)
        if leaf is None:
            raise
        raise leaf from None
    assert not errors.errors, f"transport errors reached the client: {errors.errors!r}"


def only_text(result: types.CallToolResult) -> str:
    """The single text block of a successful tool result."""
    assert not result.is_error, f"tool returned an error: {result.content!r}"
    assert len(result.content) == 1, f"expected one content block, got {result.content!r}"
    block = result.content[0]
    assert isinstance(block, types.TextContent), f"expected text content, got {block!r}"
    return block.text


async def test_connect(revision: str) -> None:
    """Negotiation: initialize on 2025-11-25; on 2026-07-28, mode="auto" must settle on it via server/discover."""
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision, mode="legacy" if revision == LEGACY else "auto") as client:
            session = client.session
            if revision == LEGACY:
                assert session.initialize_result is not None
                assert session.discover_result is None
            else:
                # "auto" falls back to initialize on any server/discover failure, so
                # landing on 2026-07-28 proves the probe was answered.
                assert session.discover_result is not None, "server/discover was not answered"
                assert MODERN in session.discover_result.supported_versions
            caps = client.server_capabilities
            assert caps.tools is not None, f"no tools capability: {caps!r}"
            assert caps.resources is not None, f"no resources capability: {caps!r}"
            assert caps.prompts is not None, f"no prompts capability: {caps!r}"


async def test_list_tools_and_call_simple_text(revision: str) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision) as client:
            listing = await client.list_tools()
            names = {tool.name for tool in listing.tools}
            for wanted in ("test_simple_text", "test_tool_with_progress"):
                assert named(wanted) in names, f"{named(wanted)} missing from tools/list: {sorted(names)}"
            expected, hidden = (
                (LEGACY_ONLY_TOOLS, MODERN_ONLY_TOOLS) if revision == LEGACY else (MODERN_ONLY_TOOLS, LEGACY_ONLY_TOOLS)
            )
            for name in sorted(expected):
                assert named(name) in names, f"{revision} tools/list lacks {named(name)}: {sorted(names)}"
            for name in sorted(hidden):
                assert named(name) not in names, f"{revision} tools/list shows the other revision's {named(name)}"
            simple = next(tool for tool in listing.tools if tool.name == named("test_simple_text"))
            assert simple.input_schema.get("type") == "object", simple.input_schema

            result = await client.call_tool(named("test_simple_text"), {})
            assert only_text(result) == SIMPLE_TEXT


async def test_read_text_resource(revision: str) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision) as client:
            listing = await client.list_resources()
            uris = {str(resource.uri) for resource in listing.resources}
            assert {"test://static-text", "test://static-binary"} <= uris, f"resources/list: {sorted(uris)}"

            result = await client.read_resource("test://static-text")
            assert len(result.contents) == 1, result.contents
            contents = result.contents[0]
            assert isinstance(contents, types.TextResourceContents), f"expected text contents, got {contents!r}"
            assert str(contents.uri) == "test://static-text"
            assert contents.mime_type == "text/plain"
            assert contents.text == STATIC_TEXT


async def test_read_binary_resource(revision: str) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision) as client:
            result = await client.read_resource("test://static-binary")
            assert len(result.contents) == 1, result.contents
            contents = result.contents[0]
            assert isinstance(contents, types.BlobResourceContents), f"expected blob contents, got {contents!r}"
            assert str(contents.uri) == "test://static-binary"
            assert contents.mime_type == "image/png"
            data = base64.b64decode(contents.blob, validate=True)
            assert data == base64.b64decode(PNG_BASE64)
            assert data.startswith(b"\x89PNG\r\n\x1a\n")


async def test_prompt_with_arguments(revision: str) -> None:
    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision) as client:
            listing = await client.list_prompts()
            prompts = {prompt.name: prompt for prompt in listing.prompts}
            assert named("test_simple_prompt") in prompts, f"prompts/list: {sorted(prompts)}"
            prompt = prompts.get(named("test_prompt_with_arguments"))
            assert prompt is not None, f"{named('test_prompt_with_arguments')} not in prompts/list: {sorted(prompts)}"
            arguments = {argument.name: argument for argument in prompt.arguments or []}
            assert set(arguments) == {"arg1", "arg2"}, prompt.arguments
            assert all(argument.required for argument in arguments.values()), prompt.arguments

            arg1, arg2 = f"alpha-{uuid.uuid4().hex[:8]}", "beta value"
            result = await client.get_prompt(named("test_prompt_with_arguments"), {"arg1": arg1, "arg2": arg2})
            assert len(result.messages) == 1, result.messages
            message = result.messages[0]
            assert message.role == "user"
            assert isinstance(message.content, types.TextContent), message.content
            assert message.content.text == f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


async def test_tool_with_progress(revision: str) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision) as client:
            result = await client.call_tool(named("test_tool_with_progress"), {}, progress_callback=on_progress)
            text = only_text(result)
            # The tool echoes the progressToken it received; "None" means the token was dropped.
            assert text.startswith("Progress test completed (progressToken="), text
            assert not text.endswith("progressToken=None)"), f"the server saw no progressToken: {text}"
            # The SDK runs each progress callback as its own task, so the last one can
            # still be pending when the result resolves the call.
            with anyio.move_on_after(2):
                while len(updates) < 3:
                    await anyio.sleep(0.01)
    values = [progress for progress, _, _ in updates]
    assert values == [0.0, 50.0, 100.0], f"progress notifications seen by the callback: {updates!r}"
    assert all(b > a for a, b in zip(values, values[1:])), f"progress did not increase: {values}"
    assert [total for _, total, _ in updates] == [100.0] * 3, updates
    assert [message for _, _, message in updates] == [f"Completed step {step} of 100" for step in (0, 50, 100)]


async def test_sampling_round_trip(revision: str) -> None:
    answer = f"sampled-{uuid.uuid4().hex}"
    prompt = f"Say something {uuid.uuid4().hex[:8]}"
    seen: list[tuple[ClientRequestContext, types.CreateMessageRequestParams]] = []

    async def sampling_callback(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        seen.append((context, params))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=answer),
            model="sdk-e2e-test-model",
            stop_reason="endTurn",
        )

    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision, sampling_callback=sampling_callback) as client:
            if revision == LEGACY:
                # sampling/createMessage arrives as a server-to-client request on the
                # tools/call SSE stream; the SDK POSTs the callback's result back.
                result = await client.call_tool(named("test_sampling"), {"prompt": prompt})
                expected_text, expected_prompt = f"LLM response: {answer}", prompt
            else:
                # The first tools/call answers input_required with inputRequests
                # {"sample_request": sampling/createMessage}; the SDK runs the callback
                # and resends tools/call with inputResponses.
                result = await client.call_tool(named("test_input_required_result_sampling"), {})
                expected_text, expected_prompt = f"Sampling result: {answer}", "What is the capital of France?"
            assert only_text(result) == expected_text
    assert len(seen) == 1, f"sampling callback ran {len(seen)} times"
    context, params = seen[0]
    assert params.max_tokens == 100
    assert len(params.messages) == 1, params.messages
    assert params.messages[0].role == "user"
    content = params.messages[0].content
    assert isinstance(content, types.TextContent), content
    assert content.text == expected_prompt
    if revision == MODERN:
        # On the input_required path the callback context carries the inputRequests key.
        assert context.request_id == "sample_request"


async def test_elicitation_round_trip(revision: str) -> None:
    token = uuid.uuid4().hex[:8]
    answers = {"response": f"response-{token}", "name": f"Ada-{token}", "color": f"teal-{token}"}
    seen: list[tuple[ClientRequestContext, types.ElicitRequestParams]] = []

    async def elicitation_callback(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        seen.append((context, params))
        if not isinstance(params, types.ElicitRequestFormParams):
            return types.ErrorData(code=types.INVALID_PARAMS, message=f"unexpected elicitation {params!r}")
        # Accept, filling in every field the form asks for that this test has an answer for.
        fields = (params.requested_schema.get("properties") or {}).keys()
        return types.ElicitResult(action="accept", content={key: answers[key] for key in fields if key in answers})

    with anyio.fail_after(TEST_TIMEOUT_S):
        async with connect(revision, elicitation_callback=elicitation_callback) as client:
            if revision == LEGACY:
                # elicitation/create is a server-to-client request on the tools/call SSE stream.
                message = f"Please answer {token}"
                result = await client.call_tool(named("test_elicitation"), {"message": message})
                content = json.dumps({"response": answers["response"]})
                assert only_text(result) == f"User response: action=accept, content={content}"
                assert [params.message for _, params in seen] == [message]
            else:
                # One input_required round keyed "user_name".
                result = await client.call_tool(named("test_input_required_result_elicitation"), {})
                assert only_text(result) == f"Hello, {answers['name']}!"
                assert [(context.request_id, params.message) for context, params in seen] == [
                    ("user_name", "What is your name?")
                ]
                # Two rounds; the server's sealed requestState must come back byte-exact
                # on each retry or the second answer is not accepted.
                seen.clear()
                result = await client.call_tool(named("test_input_required_result_multi_round"), {})
                assert only_text(result) == f"Multi-round complete for {answers['name']} who likes {answers['color']}"
                assert [(context.request_id, params.message) for context, params in seen] == [
                    ("step1", "Step 1: What is your name?"),
                    ("step2", "Step 2: What is your favorite color?"),
                ]
    for _, params in seen:
        assert isinstance(params, types.ElicitRequestFormParams), params
