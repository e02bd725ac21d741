"""The official Python SDK's OAuth clients against the gateway as an OAuth 2.1
resource server, with oidc-provider (tests/peers/idp.mjs) as the authorization
server.

- `OAuthClientProvider` (authorization code): PRM discovery from the gateway's
  401 challenge, RFC 8414 metadata, dynamic client registration, PKCE S256,
  RFC 8707 `resource`, RFC 9207 `iss`; consent is auto-approved by the fixture.
- `ClientCredentialsOAuthProvider` (machine to machine).

Each then lists tools and calls one through the gateway, on both revisions.

Environment (set by tests/peers/run_all.sh):
    MCP_URL      the gateway's MCP endpoint (its public_url)
    IDP_ISSUER   the provider's issuer
    MCP_TOOL     a tool to call, with MCP_TOOL_ARGS (JSON) as arguments
"""

from __future__ import annotations

import json
import os
import urllib.parse

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

URL = os.environ.get("MCP_URL", "")
ISSUER = os.environ.get("IDP_ISSUER", "")
TOOL = os.environ.get("MCP_TOOL", "")
TOOL_ARGS = json.loads(os.environ.get("MCP_TOOL_ARGS", "{}"))
CALLBACK = "http://127.0.0.1:9999/cb"

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Memory(TokenStorage):
    def __init__(self) -> None:
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens) -> None:
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info) -> None:
        self.client = info


async def exercise(auth: httpx2.Auth, mode: str) -> None:
    assert URL and ISSUER and TOOL, "MCP_URL, IDP_ISSUER and MCP_TOOL must be set"
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
            async with Client(streamable_http_client(URL, http_client=http), mode=mode) as c:
                tools = await c.list_tools()
                assert any(t.name == TOOL for t in tools.tools), [t.name for t in tools.tools]
                res = await c.call_tool(TOOL, TOOL_ARGS)
                assert not res.is_error, res


async def test_authorization_code_with_discovery_dcr_and_pkce(mode: str) -> None:
    landing: dict[str, str] = {}
    seen: dict[str, list[str]] = {}

    async def redirect_handler(auth_url: str) -> None:
        # Plays the browser: follow the provider's redirects to the callback.
        seen.update(urllib.parse.parse_qs(urllib.parse.urlsplit(auth_url).query))
        async with httpx2.AsyncClient() as browser:
            url = auth_url
            for _ in range(10):
                if url.startswith(CALLBACK):
                    break
                r = await browser.get(url)
                url = urllib.parse.urljoin(url, r.headers["location"])
        landing.update({k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()})

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=landing["code"], state=landing.get("state"), iss=landing.get("iss"))

    meta = OAuthClientMetadata(
        client_name="bastion-sdk-test",
        redirect_uris=[CALLBACK],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope="mcp:tools",
    )
    store = Memory()
    auth = OAuthClientProvider(URL, meta, store, redirect_handler, callback_handler)
    await exercise(auth, mode)
    # The SDK found the gateway's resource through its metadata and asked for it.
    assert seen.get("resource") == [URL], seen
    assert seen.get("code_challenge_method") == ["S256"], seen
    assert store.client is not None and store.client.client_id, "dynamic registration"


async def test_client_credentials(mode: str) -> None:
    auth = ClientCredentialsOAuthProvider(URL, Memory(), "m2m", "m2m-secret", scope="mcp:tools", issuer=ISSUER)
    await exercise(auth, mode)


async def test_no_token_gets_the_challenge(mode: str) -> None:
    async with httpx2.AsyncClient() as http:
        r = await http.post(URL, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                            headers={"accept": "application/json, text/event-stream"})
        assert r.status_code == 401
        challenge = r.headers["www-authenticate"]
        assert "resource_metadata=" in challenge, challenge
        prm_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        prm = (await http.get(prm_url)).json()
        assert prm["resource"] == URL
        assert prm["authorization_servers"] == [ISSUER]
