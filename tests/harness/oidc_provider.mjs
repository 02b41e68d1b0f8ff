// A real OpenID Connect provider for the tests: node-oidc-provider (npm `oidc-provider`, the
// certified implementation) on loopback over HTTPS, with a few accounts and groups.
//
//   node tests/harness/oidc_provider.mjs --port 8443 --cert c.pem --key k.pem --jwk key.json \
//        --client-id gw --client-secret s --redirect-uri https://auth.example.test/callback
//
// --host names the issuer (https://HOST:PORT) and is where it listens, unless --listen says another
// address (a guest's provider: issuer on the address the host forwards, listening on every address).
// --user names the account that signs in from the start (the molecule guests' provider).
//
// Login and consent are a custom interaction that approves at once: the account named by
// POST /_ctl/config {"user": "alice"} signs in (no user: the interaction stops at a login page, as
// a person would see it). The control endpoints under /_ctl/ steer it from the tests:
//   POST /_ctl/config   {"user": ..., "accounts": {"alice": {"email": ..., "groups": [...]}}, "reset": true}
//   POST /_ctl/tamper   {"id_token": "..."}  the next /token answer carries this id_token instead
//   POST /_ctl/token-error {"error": "server_error"}  the next /token answer is this error
//   GET  /_ctl/last     the id_token of the last /token answer
//   GET  /_ctl/last-authorization  the query parameters of the last authorization request (/auth)
//   GET  /_ctl/health
// Not part of the product.

import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: opts } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    listen: { type: 'string' },
    user: { type: 'string' },
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    jwk: { type: 'string' }, // a private RSA JWK (JSON); made and written there when the file is missing
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'other-client-id': { type: 'string', default: 'other-app' },
    'other-redirect-uri': { type: 'string', default: 'https://other.example.test/cb' },
  },
});

const issuer = `https://${opts.host}:${opts.port}`;

function signingKey() {
  if (opts.jwk && fs.existsSync(opts.jwk)) return JSON.parse(fs.readFileSync(opts.jwk, 'utf8'));
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: crypto.randomUUID() };
  if (opts.jwk) fs.writeFileSync(opts.jwk, JSON.stringify(jwk), { mode: 0o600 });
  return jwk;
}

const initialAccounts = () => ({
    alice: { email: 'alice@example.org', email_verified: true, groups: ['mcp-users'] },
    bob: { email: 'bob@example.org', email_verified: true, groups: [] },
    carol: { email: 'carol@elsewhere.test', email_verified: true, groups: ['mcp-users'] },
    eve: { email: 'alice@example.org', email_verified: false, groups: ['mcp-users'] },
});

const state = {
  user: opts.user || null,
  accounts: initialAccounts(),
  tamper: null,
  tokenError: null,
  last: null,
  lastAuthorization: null,
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: opts['client-id'],
      client_secret: opts['client-secret'],
      redirect_uris: opts['redirect-uri'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      // Another application of the same provider: its id_tokens are for another audience.
      client_id: opts['other-client-id'],
      client_secret: 'other-secret',
      redirect_uris: [opts['other-redirect-uri']],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey()] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  // The claims of the scopes asked for go into the id_token, as Keycloak and Entra put them there.
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    const account = state.accounts[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        const current = state.accounts[sub] || {};
        return { sub, preferred_username: sub, name: sub, ...current };
      },
    };
  },
  // Refresh tokens for the gateway whatever the scopes, as Keycloak does by default.
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 86400, Interaction: 600, Session: 3600, Grant: 86400 },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.proxy = false;

// The token endpoint's answer, as the tests want it changed.
provider.use(async (ctx, next) => {
  if (ctx.path === '/auth' && ctx.method === 'GET') state.lastAuthorization = { ...ctx.query };
  if (ctx.path === '/token' && ctx.method === 'POST' && state.tokenError) {
    ctx.status = 400;
    ctx.body = { error: state.tokenError };
    state.tokenError = null;
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
    if (state.tamper) {
      ctx.body.id_token = state.tamper;
      state.tamper = null;
    }
    if (ctx.body.id_token) state.last = ctx.body.id_token;
  }
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === 'login') {
    if (!state.user || !state.accounts[state.user]) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>Sign in</title><form method="post"><input name="login"></form>');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: state.user } }, { mergeWithLastSubmission: false });
    return;
  }
  // Consent: grant what the client asked for.
  const { prompt, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => { try { resolve(body ? JSON.parse(body) : {}); } catch (err) { reject(err); } });
  });
}

async function control(req, res, path) {
  let answer = { ok: true };
  if (path === '/_ctl/config' && req.method === 'POST') {
    const body = await readJson(req);
    if ('user' in body) state.user = body.user || null;
    if (body.reset) state.accounts = initialAccounts();
    for (const [name, account] of Object.entries(body.accounts || {})) {
      if (account === null) delete state.accounts[name];
      else state.accounts[name] = account;
    }
  } else if (path === '/_ctl/tamper' && req.method === 'POST') {
    state.tamper = (await readJson(req)).id_token || null;
  } else if (path === '/_ctl/token-error' && req.method === 'POST') {
    state.tokenError = (await readJson(req)).error || null;
  } else if (path === '/_ctl/last') {
    answer = { id_token: state.last };
  } else if (path === '/_ctl/last-authorization') {
    answer = { query: state.lastAuthorization };
  } else if (path !== '/_ctl/health') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(answer));
}

const handle = provider.callback();
const server = https.createServer(
  { cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) },
  async (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    try {
      if (path.startsWith('/_ctl/')) return await control(req, res, path);
      if (path.startsWith('/interaction/')) return await interaction(req, res);
      return handle(req, res);
    } catch (err) {
      console.error(err);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    }
  },
);
server.listen(Number(opts.port), opts.listen || opts.host, () => console.log(`oidc-provider listening on ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
