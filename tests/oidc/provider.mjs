#!/usr/bin/env node
// A real OpenID Connect provider (panva/oidc-provider) for Gatehouse's end-to-end tests and demo.
//
//   node tests/oidc/provider.mjs --config provider.json
//
// The configuration file is described in tests/oidc/README.md. Everything is in memory: users and
// clients come from the file, signing keys are generated at startup (or loaded from `keys_file`).
// Nothing here is a mock: discovery, JWKS, the token endpoint, the device flow and the login and
// consent pages are oidc-provider's own endpoints, driven exactly as a browser and a client would.
//
// Test-only endpoints under /test/ (only with "test_endpoints": true):
//   POST /test/mint    {header:{alg, kid?, typ?, ...}, claims:{...}, sign_with?, hmac_key?} -> {token}
//   POST /test/rotate  fresh signing keys (new kids, the old ones leave the JWKS)       -> {kids}
//   GET  /test/keys    the public JWKS being served
//   POST /test/outage  {seconds}: every other endpoint answers 503 for that long
//   GET  /test/stats   {jwks_requests, discovery_requests, token_requests, ...}
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as querystring from 'node:querystring';
import { parseArgs } from 'node:util';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const SCOPE_CLAIMS = {
  acr: null,
  auth_time: null,
  iss: null,
  sid: null,
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'preferred_username'],
  groups: ['groups'],
};
// One signing key per algorithm; the first is the default for ID and access tokens.
const KEY_SPECS = [
  { alg: 'RS256', type: 'rsa', options: { modulusLength: 2048 } },
  { alg: 'PS256', type: 'rsa', options: { modulusLength: 2048 } },
  { alg: 'ES256', type: 'ec', options: { namedCurve: 'P-256' } },
  { alg: 'ES384', type: 'ec', options: { namedCurve: 'P-384' } },
  { alg: 'EdDSA', type: 'ed25519', options: undefined },
];
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

// ---- configuration ----------------------------------------------------------------------------

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

const { values: args } = parseArgs({ options: { config: { type: 'string' } } });
if (!args.config) fail('usage: node provider.mjs --config FILE.json');
let config;
try {
  config = JSON.parse(fs.readFileSync(args.config, 'utf8'));
} catch (err) {
  fail(`cannot read ${args.config}: ${err.message}`);
}

const HOST = config.host ?? '127.0.0.1';
const PORT = Number(config.port ?? 0);
const AUDIENCE = config.audience ?? 'gatehouse';
const EXTRA_AUDIENCES = config.extra_audiences ?? [];
const AUDIENCE_SCOPES = (config.audience_scopes ?? []).join(' ');
const DEFAULT_TTL = Number(config.access_token_ttl ?? 3600);
const DEFAULT_AT_ALG = config.access_token_alg ?? 'RS256';
const POLL_INTERVAL = Number(config.device_poll_interval ?? 5);
const ENFORCE_SLOW_DOWN = config.enforce_slow_down ?? true;
const TEST_ENDPOINTS = config.test_endpoints === true;
const KEYS_FILE = config.keys_file;

// A resource indicator must be an absolute URI (RFC 8707); the audience ("aud") need not be one.
const resourceFor = (aud) => (URL.canParse(aud) ? aud : `urn:gatehouse:audience:${aud}`);
const RESOURCES = new Map([AUDIENCE, ...EXTRA_AUDIENCES].map((aud) => [resourceFor(aud), aud]));
const DEFAULT_RESOURCE = resourceFor(AUDIENCE);

const users = (config.users ?? []).map((u) => ({ groups: [], ...u }));
const findUser = (login) => users.find((u) => u.id === login || u.email === login);

// Client metadata goes to oidc-provider as is, except our own fields (kept here, by client_id).
const clientExtras = new Map();
const clients = (config.clients ?? []).map((raw) => {
  const {
    access_token_ttl: ttl, access_token_alg: alg, extra_token_claims: extra, ...meta
  } = raw;
  clientExtras.set(meta.client_id, { ttl, alg, extra });
  meta.grant_types = (meta.grant_types ?? ['client_credentials'])
    .map((g) => (g === 'device_code' ? DEVICE_GRANT : g));
  if (!meta.grant_types.includes('authorization_code')) {
    meta.response_types ??= [];
    meta.redirect_uris ??= [];
  }
  if (!meta.client_secret) meta.token_endpoint_auth_method ??= 'none';
  return meta;
});

// ---- signing keys --------------------------------------------------------------------------------

async function generateKeys() {
  const keys = await Promise.all(KEY_SPECS.map(({ alg, type, options }) => new Promise((resolve, reject) => {
    crypto.generateKeyPair(type, options, (err, _pub, privateKey) => {
      if (err) return reject(err);
      const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
      return resolve({ ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
    });
  })));
  return { keys };
}

async function loadOrGenerateKeys() {
  if (KEYS_FILE && fs.existsSync(KEYS_FILE)) {
    return JSON.parse(fs.readFileSync(KEYS_FILE, 'utf8'));
  }
  const jwks = await generateKeys();
  saveKeys(jwks);
  return jwks;
}

function saveKeys(jwks) {
  if (KEYS_FILE) fs.writeFileSync(KEYS_FILE, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
}

// Key generation runs on libuv's thread pool: start it before loading oidc-provider (startup time).
const jwksPromise = loadOrGenerateKeys();
const { default: Provider, errors } = await import('oidc-provider');

const publicJwks = (jwks) => ({
  keys: jwks.keys.map((k) => Object.fromEntries(
    Object.entries(k).filter(([name]) => !PRIVATE_JWK_MEMBERS.includes(name)),
  )),
});

// ---- HTML pages (kept tiny; the Python harness reads them like a person would) -------------------

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body><h1>${esc(title)}</h1>
${body}
</body></html>
`;

function loginPage(uid, { error, login } = {}) {
  return page('Sign-in', `${error ? `<p class="error" id="error">${esc(error)}</p>\n` : ''}\
<form id="login" method="post" action="/interaction/${esc(uid)}/login">
  <label>User <input type="text" name="login" value="${esc(login ?? '')}" autocomplete="username"></label>
  <label>Password <input type="password" name="password" autocomplete="current-password"></label>
  <button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Cancel</a></p>`);
}

function consentPage(uid, client, details, session) {
  const items = [];
  if (details.missingOIDCScope) items.push(`scopes: ${details.missingOIDCScope.join(' ')}`);
  if (details.missingOIDCClaims) items.push(`claims: ${details.missingOIDCClaims.join(' ')}`);
  for (const [resource, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    items.push(`access to ${RESOURCES.get(resource) ?? resource}${scopes.length ? `: ${scopes.join(' ')}` : ''}`);
  }
  if (!items.length) items.push('confirm a previously given authorization');
  return page('Authorize', `<p>Signed in as <strong>${esc(session?.accountId ?? '?')}</strong>.
<strong>${esc(client?.clientName ?? client?.clientId ?? '?')}</strong> asks for:</p>
<ul>${items.map((i) => `<li>${esc(i)}</li>`).join('')}</ul>
<form id="consent" method="post" action="/interaction/${esc(uid)}/confirm">
  <button type="submit">Allow</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Deny</a></p>`);
}

// ---- the oidc-provider instance -------------------------------------------------------------------

const cookieKeys = [crypto.randomBytes(32).toString('base64url')];
let issuer;

function clientTtl(client) {
  return Number(clientExtras.get(client?.clientId)?.ttl ?? DEFAULT_TTL);
}

function makeProvider(jwks) {
  const provider = new Provider(issuer, {
    clients,
    jwks,
    cookies: { keys: cookieKeys },
    claims: SCOPE_CLAIMS,
    scopes: ['openid', 'offline_access'],
    conformIdTokenClaims: false,
    enabledJWA: {
      idTokenSigningAlgValues: KEY_SPECS.map((s) => s.alg),
      userinfoSigningAlgValues: KEY_SPECS.map((s) => s.alg),
    },
    async findAccount(_ctx, sub) {
      const user = users.find((u) => u.id === sub);
      if (!user) return undefined;
      return {
        accountId: user.id,
        async claims() {
          return {
            sub: user.id,
            email: user.email,
            email_verified: Boolean(user.email),
            name: user.name,
            preferred_username: user.id,
            groups: user.groups,
          };
        },
      };
    },
    async extraTokenClaims(_ctx, token) {
      if (token.accountId) {
        const user = users.find((u) => u.id === token.accountId);
        return user ? { email: user.email, name: user.name, groups: user.groups } : undefined;
      }
      return clientExtras.get(token.clientId)?.extra;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: true },
      deviceFlow: {
        enabled: true,
        async userCodeInputSource(ctx, form, _out, err) {
          let msg = '<p>Enter the code displayed on your device.</p>';
          if (err) msg = `<p class="error" id="error">${esc(err.userCode ? 'the code you entered is incorrect' : err.message || err.name)}</p>`;
          ctx.body = page('Device sign-in', `${msg}\n${form}\n<button type="submit" form="op.deviceInputForm">Continue</button>`);
        },
        async userCodeConfirmSource(ctx, form, client, _info, userCode) {
          ctx.body = page('Confirm device', `<p><strong>${esc(client.clientName ?? client.clientId)}</strong>
wants to sign in. Check that your device shows <code id="user_code">${esc(userCode)}</code>.</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`);
        },
        async successSource(ctx) {
          ctx.body = page('Signed in', '<p id="device-success">The device is signed in; you can close this page.</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => DEFAULT_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, resource, client) {
          const aud = RESOURCES.get(resource);
          if (!aud) throw new errors.InvalidTarget(`unknown resource ${resource}`);
          return {
            audience: aud,
            scope: AUDIENCE_SCOPES,
            accessTokenFormat: 'jwt',
            accessTokenTTL: clientTtl(client),
            jwt: { sign: { alg: clientExtras.get(client?.clientId)?.alg ?? DEFAULT_AT_ALG } },
          };
        },
      },
    },
    ttl: {
      AccessToken: (_ctx, _token, client) => clientTtl(client),
      ClientCredentials: (_ctx, _token, client) => clientTtl(client),
      IdToken: () => 3600,
      DeviceCode: () => 600,
      Interaction: () => 600,
      Session: () => 3600,
      Grant: () => 3600,
      RefreshToken: () => 86400,
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<p class="error" id="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
    },
  });
  // RFC 8628 `interval`: oidc-provider leaves it out (meaning 5 s); tests want it shorter.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      ctx.body.interval = POLL_INTERVAL;
    }
  });
  provider.on('server_error', (_ctx, err) => console.log(`server_error ${err.stack}`));
  return provider;
}

// ---- /test/mint: JWS with the provider's own keys ------------------------------------------------

const b64u = (data) => Buffer.from(data).toString('base64url');
const HASH = {
  RS256: 'sha256', RS384: 'sha384', RS512: 'sha512', PS256: 'sha256', PS384: 'sha384', PS512: 'sha512',
  ES256: 'sha256', ES384: 'sha384', ES512: 'sha512', HS256: 'sha256', HS384: 'sha384', HS512: 'sha512',
};

function mint(body) {
  const header = { ...(body.header ?? {}) };
  const claims = body.claims ?? {};
  const alg = header.alg ?? 'RS256';
  header.alg = alg;
  if (alg === 'none') {
    if (header.kid === null) delete header.kid;
    return `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}.`;
  }
  if (alg.startsWith('HS')) {
    // Default HMAC key: the RS256 public key as PEM, i.e. the classic algorithm-confusion token.
    let key = body.hmac_key;
    if (key === undefined) {
      const rsa = current.jwks.keys.find((k) => k.alg === 'RS256');
      key = crypto.createPublicKey({ key: rsa, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    }
    if (header.kid === null) delete header.kid;
    const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
    return `${input}.${crypto.createHmac(HASH[alg], key).update(input).digest('base64url')}`;
  }
  // sign_with: which of our keys signs (by alg or kid); default the key for the header's alg.
  const selector = body.sign_with ?? alg;
  const jwk = current.jwks.keys.find((k) => k.alg === selector || k.kid === selector);
  if (!jwk) throw new Error(`no signing key for ${selector}`);
  if (!('kid' in header)) header.kid = jwk.kid;
  if (header.kid === null) delete header.kid;
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  let signature;
  switch (jwk.alg) {
    case 'RS256': signature = crypto.sign('sha256', Buffer.from(input), key); break;
    case 'PS256':
      signature = crypto.sign('sha256', Buffer.from(input), {
        key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
      });
      break;
    case 'ES256': case 'ES384':
      signature = crypto.sign(HASH[jwk.alg], Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'EdDSA': signature = crypto.sign(null, Buffer.from(input), key); break;
    default: throw new Error(`cannot sign with ${jwk.alg}`);
  }
  return `${input}.${signature.toString('base64url')}`;
}

// ---- the HTTP server in front of oidc-provider ----------------------------------------------------

let current; // { provider, handler, jwks }
let outageUntil = 0;
const stats = {
  jwks_requests: 0, discovery_requests: 0, token_requests: 0, device_authorizations: 0, outage_rejections: 0,
};
const polls = new Map(); // device_code -> { last, interval }

function install(jwks) {
  const provider = makeProvider(jwks);
  current = { provider, handler: provider.callback(), jwks };
}

function send(res, status, body, type = 'application/json') {
  const text = type === 'application/json' ? JSON.stringify(body) : body;
  res.writeHead(status, { 'content-type': `${type}; charset=utf-8`, 'cache-control': 'no-store' });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) reject(new Error('request body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function passwordMatches(user, password) {
  const a = crypto.createHash('sha256').update(String(user.password ?? '')).digest();
  const b = crypto.createHash('sha256').update(String(password ?? '')).digest();
  return user.password !== undefined && crypto.timingSafeEqual(a, b);
}

async function testEndpoint(req, res, path, body) {
  const json = body.length ? JSON.parse(body.toString()) : {};
  if (req.method === 'POST' && path === '/test/mint') {
    return send(res, 200, { token: mint(json) });
  }
  if (req.method === 'POST' && path === '/test/rotate') {
    const jwks = await generateKeys();
    saveKeys(jwks);
    install(jwks);
    return send(res, 200, { kids: jwks.keys.map((k) => k.kid) });
  }
  if (req.method === 'GET' && path === '/test/keys') return send(res, 200, publicJwks(current.jwks));
  if (req.method === 'POST' && path === '/test/outage') {
    outageUntil = Date.now() + Number(json.seconds ?? 0) * 1000;
    return send(res, 200, { until: outageUntil / 1000 });
  }
  if (req.method === 'GET' && path === '/test/stats') return send(res, 200, stats);
  return send(res, 404, { error: 'not_found' });
}

async function interaction(req, res, uid, action, body) {
  const { provider } = current;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, page('Error', `<p class="error" id="error">${esc(err.message)}</p>`), 'text/html');
  }
  if (details.uid !== uid) return send(res, 400, page('Error', '<p class="error" id="error">interaction mismatch</p>'), 'text/html');
  const { prompt, params, session } = details;
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return send(res, 200, loginPage(uid), 'text/html');
    const client = await provider.Client.find(params.client_id);
    return send(res, 200, consentPage(uid, client, prompt.details, session), 'text/html');
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const form = querystring.parse(body.toString());
    const user = findUser(form.login);
    if (!user || !passwordMatches(user, form.password)) {
      console.log(`login failed for ${JSON.stringify(form.login)}`);
      return send(res, 401, loginPage(uid, { error: 'wrong user or password', login: form.login }), 'text/html');
    }
    return provider.interactionFinished(req, res, {
      login: { accountId: user.id, amr: ['pwd'] },
    }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    const { details: missing } = prompt;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return send(res, 400, page('Error', `<p class="error" id="error">unexpected ${esc(action ?? 'page')} for prompt ${esc(prompt.name)}</p>`), 'text/html');
}

// RFC 8628 3.5: polling faster than `interval` earns slow_down, and the interval grows by 5 s.
function slowDown(form) {
  if (!ENFORCE_SLOW_DOWN || form.grant_type !== DEVICE_GRANT || typeof form.device_code !== 'string') return false;
  const now = Date.now();
  for (const [code, p] of polls) if (now - p.last > 900_000) polls.delete(code);
  const poll = polls.get(form.device_code);
  if (!poll) {
    polls.set(form.device_code, { last: now, interval: POLL_INTERVAL });
    return false;
  }
  const early = now - poll.last < poll.interval * 1000 - 100;
  poll.last = now;
  if (early) poll.interval += 5;
  return early;
}

async function handle(req, res) {
  const url = new URL(req.url, issuer);
  const path = url.pathname;
  const body = await readBody(req);
  req.body = body; // oidc-provider reads an already-read body from req.body
  if (TEST_ENDPOINTS && path.startsWith('/test/')) return testEndpoint(req, res, path, body);
  if (Date.now() < outageUntil) {
    stats.outage_rejections += 1;
    res.setHeader('retry-after', String(Math.ceil((outageUntil - Date.now()) / 1000)));
    return send(res, 503, { error: 'temporarily_unavailable', error_description: 'simulated outage' });
  }
  if (path === '/jwks') stats.jwks_requests += 1;
  if (path === '/.well-known/openid-configuration') stats.discovery_requests += 1;
  if (path === '/device/auth') stats.device_authorizations += 1;
  const m = path.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (m) return interaction(req, res, m[1], m[2], body);
  if (path === '/token' && req.method === 'POST') {
    stats.token_requests += 1;
    const form = querystring.parse(body.toString());
    res.tag = form.grant_type === DEVICE_GRANT ? 'device_code' : form.grant_type;
    if (slowDown(form)) {
      res.tag += ' slow_down';
      return send(res, 400, { error: 'slow_down', error_description: 'you are polling too quickly and should back off' });
    }
  }
  return current.handler(req, res);
}

const server = http.createServer((req, res) => {
  const started = process.hrtime.bigint();
  res.on('finish', () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const path = req.url.split('?')[0];
    const tag = path === '/jwks' ? ' JWKS' : '';
    console.log(`${req.method} ${path} ${res.statusCode} ${ms.toFixed(1)}ms${tag}${res.tag ? ` ${res.tag}` : ''}`);
  });
  handle(req, res).catch((err) => {
    console.log(`error ${req.method} ${req.url}: ${err.stack}`);
    if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: err.message });
    else res.end();
  });
});

const jwks = await jwksPromise;
server.listen(PORT, HOST, () => {
  const { port } = server.address();
  issuer = (config.issuer ?? `http://${HOST}:${port}`).replace(/\/$/, '');
  install(jwks);
  console.log(`ready issuer=${issuer} jwks_uri=${issuer}/jwks audience=${AUDIENCE} kids=${jwks.keys.map((k) => k.kid).join(',')}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
