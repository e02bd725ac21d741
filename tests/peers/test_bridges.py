"""Cross-revision bridging through mcp-bastion, driven by the official Python SDK client.

The fixture (tests/peers/conformance_fixture.py) speaks both revisions; bastion is run
twice in front of it with the upstream revision pinned, so every call crosses a bridge:

    BRIDGE_LEGACY_UPSTREAM_URL   bastion with the fixture pinned to 2025-11-25. A
                                 2026-07-28 client calls the fixture's 2025 tools: the
                                 fixture's server-to-client sampling/elicitation requests
                                 reach the client as `input_required` results with a
                                 gateway-sealed `requestState`, and its retry answers them.
    BRIDGE_MODERN_UPSTREAM_URL   bastion with the fixture pinned to 2026-07-28. A
                                 2025-11-25 client calls the fixture's input-required
                                 tools: the fixture's `inputRequests` reach the client as
                                 server-to-client requests on the tools/call SSE stream,
                                 and the gateway retries with `inputResponses`.

Both variables are required; a missing one fails the tests (nothing is skipped).
"""

from __future__ import annotations

import json
import os
import uuid

import anyio
import mcp_types as types
import pytest
from mcp import Client

TIMEOUT_S = 30


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def url(var: str) -> str:
    value = os.environ.get(var, "").strip()
    if not value:
        pytest.fail(f"{var} is not set (see the module docstring)", pytrace=False)
    return value


def text_of(result: types.CallToolResult) -> str:
    assert not result.is_error, f"tool returned an error: {result.content!r}"
    block = result.content[0]
    assert isinstance(block, types.TextContent), block
    return block.text


def sampler(answer: str, seen: list[types.CreateMessageRequestParams]):
    async def callback(_ctx, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        seen.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=answer), model="bridge-test"
        )

    return callback


def eliciter(answers: dict[str, str], seen: list[str]):
    async def callback(_ctx, params: types.ElicitRequestParams) -> types.ElicitResult:
        seen.append(params.message)
        fields = (params.requested_schema.get("properties") or {}).keys()
        return types.ElicitResult(action="accept", content={k: answers[k] for k in fields if k in answers})

    return callback


@pytest.mark.anyio
async def test_modern_client_through_legacy_upstream() -> None:
    answer, prompt = f"sampled-{uuid.uuid4().hex}", f"prompt-{uuid.uuid4().hex[:8]}"
    seen_sampling: list[types.CreateMessageRequestParams] = []
    seen_elicit: list[str] = []
    answers = {"response": f"yes-{uuid.uuid4().hex[:6]}"}
    with anyio.fail_after(TIMEOUT_S):
        async with Client(
            url("BRIDGE_LEGACY_UPSTREAM_URL"),
            mode="2026-07-28",
            sampling_callback=sampler(answer, seen_sampling),
            elicitation_callback=eliciter(answers, seen_elicit),
        ) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            # The upstream speaks 2025-11-25 only: its 2025 tools are what it lists.
            assert "test_sampling" in names, sorted(names)
            result = await client.call_tool("test_sampling", {"prompt": prompt})
            assert text_of(result) == f"LLM response: {answer}"
            message = f"Confirm {uuid.uuid4().hex[:6]}"
            result = await client.call_tool("test_elicitation", {"message": message})
            assert text_of(result) == f"User response: action=accept, content={json.dumps(answers)}"
            # A plain call is unaffected by the bridge.
            result = await client.call_tool("test_simple_text", {})
            assert text_of(result) == "This is a simple text response for testing."
    assert [p.messages[0].content.text for p in seen_sampling] == [prompt]
    assert seen_elicit == [message]


@pytest.mark.anyio
async def test_legacy_client_through_modern_upstream() -> None:
    answer = f"sampled-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex[:6]
    answers = {"name": f"Ada-{token}", "color": f"teal-{token}"}
    seen_sampling: list[types.CreateMessageRequestParams] = []
    seen_elicit: list[str] = []
    with anyio.fail_after(TIMEOUT_S):
        async with Client(
            url("BRIDGE_MODERN_UPSTREAM_URL"),
            mode="legacy",
            sampling_callback=sampler(answer, seen_sampling),
            elicitation_callback=eliciter(answers, seen_elicit),
        ) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            # The upstream speaks 2026-07-28 only: its input-required tools are listed.
            assert "test_input_required_result_sampling" in names, sorted(names)
            result = await client.call_tool("test_input_required_result_sampling", {})
            assert text_of(result) == f"Sampling result: {answer}"
            # Two rounds: the upstream's own requestState must survive the bridge intact.
            result = await client.call_tool("test_input_required_result_multi_round", {})
            assert text_of(result) == f"Multi-round complete for {answers['name']} who likes {answers['color']}"
    assert len(seen_sampling) == 1
    assert len(seen_elicit) == 2, seen_elicit
