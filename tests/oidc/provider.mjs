#!/usr/bin/env node
// A real, OpenID Certified provider (panva/oidc-provider) as a test IdP for the llm-jwt-auth
// end-to-end suite (tests/e2e/test_oidc_provider.py drives it through tests/e2e/oidc_provider.py).
//
//   node provider.mjs [--config FILE.json] [--host 127.0.0.1] [--port 0]
//                     [--keyset NAME[,NAME...]] [--keys-dir DIR] [--log-requests]
//
// The first line on stdout is one JSON object, printed once the port is bound:
//   {"port": N, "issuer": "http://127.0.0.1:N", "discovery_url": ..., "jwks_uri": ...,
//    "token_endpoint": ..., "keyset": [...], "keys": [{"kid", "kty", "crv", "alg", "signs"}, ...],
//    "clients": {"RS256": "client-rs256", ...}}
// Everything else (oidc-provider's warnings, errors, --log-requests lines) goes to stderr.
//
// What it serves:
//   * keys: one signing key per algorithm family — RSA pinned to RS256, RSA pinned to PS256,
//     EC P-256 (ES256), OKP Ed25519 without `alg` (so it signs both "EdDSA" and the fully
//     specified "Ed25519", RFC 9864). `kid`s are oidc-provider's own (RFC 7638 thumbprints).
//     A key set is named (--keyset, env OIDC_KEYSET); with --keys-dir (env OIDC_KEYS_DIR) it is
//     kept in <dir>/<name>.json (private JWKs, generated on first use), so a restart with the
//     same name serves the same keys and a restart with another name rotates them. Several
//     names ("new,old") publish all their keys; the first set's keys sign.
//   * clients (confidential, client_secret_basic): `client-<alg>` / `secret-<alg>` for
//     RS256, PS256, ES256, EdDSA, Ed25519 — grant types client_credentials and
//     authorization_code. The client's `id_token_signed_response_alg` is also the alg of the
//     access tokens issued to it, so the client picks the algorithm of everything it gets.
//   * resource indicators (RFC 8707): any absolute URI is a resource; access tokens for it are
//     JWTs (RFC 9068: typ at+jwt, client_id, scope as a space-separated string) whose `aud`
//     is the resource — or the `audience` configured for it under "resources" (a string, or a
//     list: oidc-provider itself only issues one audience, a list is set by its JWT
//     customizer hook).
//   * DPoP (RFC 9449, oidc-provider's default-on `dPoP` feature): a token request with a
//     `DPoP` proof gets a `cnf.jkt`-bound access token (token_type "DPoP").
//   * the authorization code flow with an automatic interaction: /interaction/<uid> logs in the
//     account named by `login_hint` (default "alice") and grants what was asked, no HTML.
//     id_tokens carry the scope's claims (conformIdTokenClaims off): email, profile, and the
//     custom "llm" scope (team_id, roles, groups from the account's config).
//
// Configuration file (JSON, every member optional; command-line flags win):
//   {"host": "127.0.0.1", "port": 0, "keyset": "a", "keys_dir": "/tmp/keys",
//    "access_token_ttl": 600, "id_token_ttl": 600, "scope": "llm.chat llm.models ...",
//    "resources": {"https://llm.example/": {"audience": ["https://llm.example/", "other"],
//                                           "scope": "llm.chat"}},
//    "accounts": {"alice": {"email": "alice@corp.example", "team_id": "research"}},
//    "token_claims": {"client-rs256": {"team_id": "batch"}},
//    "clients": [ ...oidc-provider client metadata, replacing the default clients... ]}

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'];
const DEFAULT_SCOPE = 'llm.chat llm.models llm.batch litellm_proxy_admin';
const REDIRECT_URI = 'http://127.0.0.1/cb';

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

// -- configuration ---------------------------------------------------------------------------

const { values: flags } = parseArgs({
  options: {
    config: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    keyset: { type: 'string' },
    'keys-dir': { type: 'string' },
    'log-requests': { type: 'boolean' },
  },
});

let file = {};
if (flags.config) {
  try {
    file = JSON.parse(fs.readFileSync(flags.config, 'utf8'));
  } catch (err) {
    fail(`cannot read --config ${flags.config}: ${err.message}`);
  }
  if (file === null || typeof file !== 'object' || Array.isArray(file)) fail('--config must hold a JSON object');
}

const settings = {
  host: flags.host ?? file.host ?? '127.0.0.1',
  port: Number(flags.port ?? process.env.OIDC_PORT ?? file.port ?? 0),
  keysets: String(flags.keyset ?? process.env.OIDC_KEYSET ?? file.keyset ?? 'default')
    .split(',').map((s) => s.trim()).filter(Boolean),
  keysDir: flags['keys-dir'] ?? process.env.OIDC_KEYS_DIR ?? file.keys_dir,
  logRequests: Boolean(flags['log-requests'] ?? file.log_requests),
  accessTokenTTL: file.access_token_ttl ?? 600,
  idTokenTTL: file.id_token_ttl ?? 600,
  scope: file.scope ?? DEFAULT_SCOPE,
  resources: file.resources ?? {},
  accounts: file.accounts ?? {},
  tokenClaims: file.token_claims ?? {},
  clients: file.clients,
};
if (!Number.isInteger(settings.port) || settings.port < 0 || settings.port > 65535) fail(`bad port ${settings.port}`);
for (const name of settings.keysets) {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) fail(`bad key set name ${JSON.stringify(name)}`);
}

// -- keys ------------------------------------------------------------------------------------

function generateKeySet() {
  const jwk = (pair) => pair.privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...jwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })), alg: 'RS256', use: 'sig' },
      { ...jwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })), alg: 'PS256', use: 'sig' },
      { ...jwk(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })), use: 'sig' },
      // No `alg`: oidc-provider then signs with this key under "EdDSA" and "Ed25519" alike.
      { ...jwk(crypto.generateKeyPairSync('ed25519')), use: 'sig' },
    ],
  };
}

function loadKeySet(name) {
  if (!settings.keysDir) return generateKeySet(); // ephemeral: new keys on every start
  const file = path.join(settings.keysDir, `${name}.json`);
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'));
  const set = generateKeySet();
  fs.mkdirSync(settings.keysDir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(set, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, file); // atomic: two starts racing on one name both end up with one set
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// Start-up phases on stderr, with their times: a start that never prints its port line (seen
// twice in CI, never reproduced alone) then shows in the provider log where it stopped.
const started = Date.now();
const phase = (what) => process.stderr.write(`provider.mjs: ${what} (${Date.now() - started} ms)\n`);
phase('settings read');
const jwks = { keys: settings.keysets.flatMap((name) => loadKeySet(name).keys) };
phase(`keys ready (${settings.keysets.join(',')})`);

// RFC 7638 thumbprint: the kid oidc-provider gives a key that has none.
function thumbprint(jwk) {
  const members = {
    RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  const canonical = Object.fromEntries(members.map((m) => [m, jwk[m]]));
  return crypto.createHash('sha256').update(JSON.stringify(canonical)).digest('base64url');
}

// The algorithms oidc-provider signs with this key (its jwkSignatureAlgorithms, for our keys).
function signingAlgs(jwk) {
  if (jwk.alg) return [jwk.alg];
  if (jwk.kty === 'EC') return { 'P-256': ['ES256'], 'P-384': ['ES384'] }[jwk.crv] ?? [];
  if (jwk.kty === 'OKP') return jwk.crv === 'Ed25519' ? ['EdDSA', 'Ed25519'] : [];
  return ['PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'];
}

// -- clients, accounts, resources ------------------------------------------------------------

const defaultClients = ALGS.map((alg) => ({
  client_id: `client-${alg.toLowerCase()}`,
  client_secret: `secret-${alg.toLowerCase()}`,
  grant_types: ['client_credentials', 'authorization_code'],
  response_types: ['code'],
  redirect_uris: [REDIRECT_URI],
  application_type: 'native', // loopback http redirect URI
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: alg,
}));
const clients = settings.clients ?? defaultClients;

function accountClaims(id) {
  const account = settings.accounts[id] ?? {};
  return {
    sub: id,
    email: `${id}@example.test`,
    email_verified: true,
    name: id,
    preferred_username: id,
    ...account,
  };
}

function resourceConfig(indicator) {
  return settings.resources[indicator] ?? {};
}

// -- the provider ----------------------------------------------------------------------------

const configuration = {
  clients,
  jwks,
  findAccount(ctx, id) {
    return { accountId: id, claims: async () => accountClaims(id) };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    llm: ['team_id', 'roles', 'groups'],
  },
  conformIdTokenClaims: false,
  cookies: { keys: ['llm-jwt-auth-test-cookie-key'] },
  features: {
    devInteractions: { enabled: false }, // /interaction/<uid> is answered below, without HTML
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, indicator, client) {
        const rs = resourceConfig(indicator);
        return {
          scope: rs.scope ?? settings.scope,
          audience: typeof rs.audience === 'string' ? rs.audience : undefined, // else the indicator
          accessTokenTTL: settings.accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: client.idTokenSignedResponseAlg } },
        };
      },
    },
  },
  formats: {
    customizers: {
      // oidc-provider issues exactly one audience; a configured list replaces it here.
      jwt(ctx, token, jwt) {
        const rs = token.resourceServer && resourceConfig(token.resourceServer.identifier());
        if (rs && Array.isArray(rs.audience)) jwt.payload.aud = [...rs.audience];
      },
    },
  },
  extraTokenClaims(ctx, token) {
    return settings.tokenClaims[token.clientId];
  },
  pkce: { required: () => false },
  ttl: {
    AccessToken: settings.accessTokenTTL,
    ClientCredentials: settings.accessTokenTTL,
    IdToken: settings.idTokenTTL,
    AuthorizationCode: 60,
    Interaction: 300,
    Session: 3600,
    Grant: 3600,
  },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

// The automatic interaction: log in `login_hint`, then grant whatever the request asked for.
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const accountId = typeof params.login_hint === 'string' && params.login_hint ? params.login_hint : 'alice';
    await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } },
      { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 400;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ error: 'unsupported_prompt', prompt: prompt.name }));
}

const server = http.createServer({ keepAliveTimeout: 5000 });
server.on('error', (err) => fail(`cannot listen on ${settings.host}:${settings.port}: ${err.message}`));
server.listen(settings.port, settings.host, () => {
  phase('listening');
  const { port } = server.address();
  const issuer = `http://${settings.host}:${port}`;
  let provider;
  try {
    provider = new Provider(issuer, configuration);
  } catch (err) {
    fail(`oidc-provider refused the configuration: ${err.stack || err}`);
  }
  for (const event of ['server_error', 'grant.error', 'authorization.error', 'introspection.error']) {
    provider.on(event, (ctx, err) => process.stderr.write(`provider.mjs: ${event}: ${err?.message} ${err?.error_description ?? ''}\n`));
  }
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (settings.logRequests) {
      res.on('finish', () => process.stderr.write(`${JSON.stringify({ method: req.method, url: req.url, status: res.statusCode })}\n`));
    }
    if (req.url.startsWith('/interaction/')) {
      interaction(provider, req, res).catch((err) => {
        res.statusCode = 500;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: 'interaction_failed', message: String(err?.message ?? err) }));
      });
      return;
    }
    callback(req, res);
  });

  const keys = jwks.keys.map((k) => ({
    kid: k.kid ?? thumbprint(k), kty: k.kty, crv: k.crv, alg: k.alg, signs: signingAlgs(k),
  }));
  const info = {
    port,
    issuer,
    discovery_url: `${issuer}/.well-known/openid-configuration`,
    jwks_uri: `${issuer}/jwks`,
    token_endpoint: `${issuer}/token`,
    keyset: settings.keysets,
    keys,
    clients: Object.fromEntries(clients.map((c) => [c.id_token_signed_response_alg ?? 'RS256', c.client_id])),
  };
  process.stdout.write(`${JSON.stringify(info)}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
