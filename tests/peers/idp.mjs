// Test identity provider: oidc-provider (a certified OpenID Provider) on a
// loopback port, configured the way the gateway's authentication tests need it.
// TEST FIXTURE ONLY: consent is auto-approved, secrets are fixed strings.
//
//   IDP_NODE_MODULES=.peers/node/node_modules node tests/peers/idp.mjs
//
// Environment:
//   IDP_PORT       port to listen on (0 or unset: any free port)
//   MCP_RESOURCES  comma-separated resource indicators (RFC 8707) it issues JWT
//                  access tokens for; the first is the default resource
//   OPAQUE_RESOURCES  resources whose tokens are opaque (for introspection tests)
// Prints one JSON line {"issuer": …, "port": …} on stdout when it listens.
//
// Clients (all secrets are "<id>-secret"):
//   m2m, m2m-rs, m2m-ed   client_credentials; tokens signed ES256 / RS256 / EdDSA
//   gateway               the gateway's own client: introspection, client
//                         credentials towards upstreams, RFC 8693 token exchange
//   app                   public client, authorization code + PKCE
//   analyst, engineer     client_credentials; tokens carry groups ["analysts"] /
//                         ["engineers"] (authorization tests)
// Every start generates fresh keys with fresh kids: a restart is a key rotation.
// Test-only endpoint: POST /__test/sign {header, claims} signs with the issuer's
// ES256 key (to craft expired or not-yet-valid tokens the real key signed).

import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { resolve as resolvePath } from 'node:path';
const base = process.env.IDP_NODE_MODULES && resolvePath(process.env.IDP_NODE_MODULES);
if (!base) throw new Error('IDP_NODE_MODULES must point at .peers/node/node_modules');
const req = createRequire(join(base, 'noop.js'));
const { default: Provider, errors } = await import(pathToFileURL(req.resolve('oidc-provider')));
const jose = await import(pathToFileURL(createRequire(req.resolve('oidc-provider')).resolve('jose')));

const server = http.createServer();
await new Promise((r) => server.listen(Number(process.env.IDP_PORT || 0), '127.0.0.1', r));
const PORT = server.address().port;
const ISSUER = `http://127.0.0.1:${PORT}`;
const RESOURCES = (process.env.MCP_RESOURCES || 'http://127.0.0.1:8080/mcp').split(',').filter(Boolean);
const OPAQUE = (process.env.OPAQUE_RESOURCES || '').split(',').filter(Boolean);

const tag = randomUUID().slice(0, 8);
const mk = (type, opts, alg) => {
  const { privateKey } = generateKeyPairSync(type, opts);
  return { privateKey, jwk: { ...privateKey.export({ format: 'jwk' }), kid: `${alg.toLowerCase()}-${tag}`, alg, use: 'sig' } };
};
const es = mk('ec', { namedCurve: 'P-256' }, 'ES256');
const rs = mk('rsa', { modulusLength: 2048 }, 'RS256');
const ed = mk('ed25519', {}, 'EdDSA');
const publicJwks = { keys: [es, rs, ed].map(({ jwk }) => { const { d, p, q, dp, dq, qi, ...pub } = jwk; return pub; }) };
const localJwks = jose.createLocalJWKSet(publicJwks);

const algFor = (client) => ({ 'm2m-rs': 'RS256', 'm2m-ed': 'EdDSA' }[client?.clientId] || 'ES256');
const TX = 'urn:ietf:params:oauth:grant-type:token-exchange';
const secretClient = (id, grants, extra = {}) => ({
  client_id: id, client_secret: `${id}-secret`, grant_types: grants, response_types: [], redirect_uris: [],
  scope: 'mcp:tools mcp:admin files:read', ...extra,
});

const provider = new Provider(ISSUER, {
  jwks: { keys: [es.jwk, rs.jwk, ed.jwk] },
  cookies: { keys: ['test-only-cookie-key'] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  scopes: ['openid', 'offline_access', 'mcp:tools', 'mcp:admin', 'files:read'],
  clients: [
    secretClient('m2m', ['client_credentials']),
    secretClient('m2m-rs', ['client_credentials']),
    secretClient('m2m-ed', ['client_credentials']),
    secretClient('gateway', ['client_credentials', TX]),
    secretClient('analyst', ['client_credentials']),
    secretClient('engineer', ['client_credentials']),
    { client_id: 'app', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], redirect_uris: ['http://127.0.0.1:9999/cb'] },
  ],
  pkce: { required: () => true },
  // Group memberships for the authorization tests (claim "groups").
  extraTokenClaims: async (ctx, token) => {
    const groups = { analyst: ['analysts'], engineer: ['engineers'] }[token.clientId];
    return groups ? { groups } : undefined;
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCES[0],
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => {
        if (!RESOURCES.includes(resource) && !OPAQUE.includes(resource)) throw new errors.InvalidTarget();
        if (OPAQUE.includes(resource)) {
          return { audience: resource, scope: 'mcp:tools mcp:admin files:read', accessTokenTTL: 300, accessTokenFormat: 'opaque' };
        }
        return { audience: resource, scope: 'mcp:tools mcp:admin files:read', accessTokenTTL: 300,
                 accessTokenFormat: 'jwt', jwt: { sign: { alg: algFor(client) } } };
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

// RFC 8693 token exchange through the provider's grant-type API: the subject
// token must be an access token this issuer signed (any of RESOURCES as its
// audience); the new token keeps the subject and names the requested resource.
provider.registerGrantType(TX, async (ctx) => {
  const { client } = ctx.oidc;
  const p = ctx.oidc.params;
  const fail = (d) => { ctx.status = 400; ctx.body = { error: 'invalid_grant', error_description: d }; };
  if (p.subject_token_type !== 'urn:ietf:params:oauth:token-type:access_token') return fail('subject_token_type');
  let claims;
  try {
    ({ payload: claims } = await jose.jwtVerify(p.subject_token, localJwks, { issuer: ISSUER, audience: RESOURCES }));
  } catch (e) { return fail('subject_token invalid'); }
  const resource = p.resource;
  if (!resource || !RESOURCES.includes(resource)) return fail('resource');
  const now = Math.floor(Date.now() / 1000);
  const scope = (p.scope || claims.scope || '').split(' ').filter((s) => (claims.scope || '').split(' ').includes(s)).join(' ');
  const token = await new jose.SignJWT({ scope, client_id: client.clientId, act: { sub: client.clientId } })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: es.jwk.kid })
    .setIssuer(ISSUER).setSubject(claims.sub).setAudience(resource)
    .setIssuedAt(now).setExpirationTime(now + 300).setJti(randomUUID())
    .sign(es.privateKey);
  ctx.body = { access_token: token, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
               token_type: 'Bearer', expires_in: 300 };
}, new Set(['subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'audience', 'scope']));

const app = provider.callback();
server.on('request', async (req, res) => {
  if (req.method === 'POST' && req.url === '/__test/sign') {
    let body = '';
    for await (const c of req) body += c;
    try {
      const { header, claims } = JSON.parse(body);
      const jws = await new jose.CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
        .setProtectedHeader({ alg: 'ES256', kid: es.jwk.kid, typ: 'at+jwt', ...header })
        .sign(es.privateKey);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token: jws }));
    } catch (e) { res.statusCode = 400; res.end(String(e)); }
    return;
  }
  // RFC 6749 3.3 default scope: oidc-provider denies scope-less authorization requests.
  if (req.url.startsWith('/auth?') && !/[?&]scope=/.test(req.url)) req.url += '&scope=mcp%3Atools';
  if (!req.url.startsWith('/interaction/')) return app(req, res);
  try { // headless auto-approve (TEST FIXTURE ONLY)
    const d = await provider.interactionDetails(req, res);
    const accountId = d.session?.accountId || 'test-user';
    const grant = d.grantId ? await provider.Grant.find(d.grantId)
      : new provider.Grant({ accountId, clientId: d.params.client_id });
    const det = d.prompt.details;
    if (det.missingOIDCScope) grant.addOIDCScope(det.missingOIDCScope.join(' '));
    for (const [r, sc] of Object.entries(det.missingResourceScopes || {})) grant.addResourceScope(r, sc.join(' '));
    const result = { login: { accountId }, consent: { grantId: await grant.save() } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } catch (e) { res.statusCode = 500; res.end(String(e)); }
});
console.log(JSON.stringify({ issuer: ISSUER, port: PORT }));
