// Benchmark peer: the npm package `oidc-provider`, set up to do what the benchmark measures on
// Zarish Sphere Auth: client_credentials grants issuing ES256-signed JWT access tokens
// (RFC 9068, typ at+jwt), plus token introspection.
//
// Start:  cd bench/peer && npm ci --silent && node server.mjs
// Env:    PEER_PORT           listen port on 127.0.0.1 (default 3100); issuer http://127.0.0.1:PORT
//         PEER_CLIENT_SECRET  secret of client "bench-backend" (default "bench-secret")
//         PEER_AUDIENCE       aud of access tokens (default http://127.0.0.1:PORT/fhir, the same
//                             shape as Zarish's default audience "{issuer}/fhir")
//         PEER_TOKEN_TTL      access token lifetime in seconds (default 3600, as Zarish's default)
//         PEER_ACCESS_TOKEN_FORMAT  "jwt" (default: ES256 JWT, typ at+jwt) or "opaque"
// Prints "ready http://127.0.0.1:PORT" on stdout once listening; GET /ready answers 200 (like
// Zarish's /ready, so the same readiness poll works). Exits 0 on SIGTERM/SIGINT.
// No per-request logging. The ES256 signing key is generated in memory at every start.
//
// Introspection (POST /token/introspection, client auth as for /token) is enabled, but
// oidc-provider refuses to introspect JWT access tokens (400 unsupported_token_type, "Structured
// JWT Tokens cannot be introspected"): they are not stored. To benchmark introspection, start with
// PEER_ACCESS_TOKEN_FORMAT=opaque; opaque tokens live in oidc-provider's development in-memory
// adapter, an LRU of 1000 entries, so introspect a recently issued token.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const PORT = Number.parseInt(process.env.PEER_PORT || '3100', 10);
const ISSUER = `http://${HOST}:${PORT}`;
const CLIENT_SECRET = process.env.PEER_CLIENT_SECRET || 'bench-secret';
const AUDIENCE = process.env.PEER_AUDIENCE || `${ISSUER}/fhir`;
const TOKEN_TTL = Number.parseInt(process.env.PEER_TOKEN_TTL || '3600', 10);
const TOKEN_FORMAT = process.env.PEER_ACCESS_TOKEN_FORMAT || 'jwt';
const SCOPES = ['system/Patient.read', 'system/Observation.read'];

if (TOKEN_FORMAT !== 'jwt' && TOKEN_FORMAT !== 'opaque') {
  console.error(`invalid PEER_ACCESS_TOKEN_FORMAT: ${TOKEN_FORMAT} (jwt or opaque)`);
  process.exit(2);
}
if (!Number.isInteger(TOKEN_TTL) || TOKEN_TTL <= 0) {
  console.error(`invalid PEER_TOKEN_TTL: ${process.env.PEER_TOKEN_TTL}`);
  process.exit(2);
}

if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  console.error(`invalid PEER_PORT: ${process.env.PEER_PORT}`);
  process.exit(2);
}

// ES256 (P-256) signing key, generated fresh at start.
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  alg: 'ES256',
  use: 'sig',
};

const resourceServer = {
  scope: SCOPES.join(' '),
  audience: AUDIENCE,
  accessTokenTTL: TOKEN_TTL,
  accessTokenFormat: TOKEN_FORMAT,
  ...(TOKEN_FORMAT === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
};

const configuration = {
  clients: [{
    client_id: 'bench-backend',
    client_secret: CLIENT_SECRET,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPES.join(' '),
  }],
  jwks: { keys: [signingJwk] },
  scopes: SCOPES,
  claims: { openid: ['sub'] },
  // Only ES256 anywhere a signing alg is negotiated, so the single key above covers everything.
  enabledJWA: {
    idTokenSigningAlgValues: ['ES256'],
    requestObjectSigningAlgValues: ['ES256'],
    userinfoSigningAlgValues: ['ES256'],
    introspectionSigningAlgValues: ['ES256'],
    authorizationSigningAlgValues: ['ES256'],
  },
  clientDefaults: {
    id_token_signed_response_alg: 'ES256',
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  ttl: {
    ClientCredentials: () => TOKEN_TTL,
    AccessToken: () => TOKEN_TTL,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: false },
    userinfo: { enabled: false },
    rpInitiatedLogout: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // No `resource` parameter in the request: the token is for the one benchmark API.
      defaultResource: () => AUDIENCE,
      getResourceServerInfo: (_ctx, resourceIndicator) => {
        if (resourceIndicator !== AUDIENCE) {
          throw new Provider.errors.InvalidTarget();
        }
        return resourceServer;
      },
    },
  },
};

const provider = new Provider(ISSUER, configuration);
// A thrown error in a handler must not print a stack per request under load; count quietly
// and report once at shutdown.
let serverErrors = 0;
let firstServerError;
provider.on('server_error', (_ctx, err) => {
  serverErrors += 1;
  if (!firstServerError) firstServerError = err;
});

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/ready') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ready\n');
    return;
  }
  callback(req, res);
});
server.keepAliveTimeout = 65_000;

server.on('error', (err) => {
  console.error(`peer: listen failed: ${err.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  process.stdout.write(`ready ${ISSUER}\n`);
});

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  if (serverErrors) {
    console.error(`peer: ${serverErrors} server_error(s); first: ${firstServerError?.stack || firstServerError}`);
  }
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Backstop: never hang on shutdown.
  setTimeout(() => process.exit(0), 2000).unref();
  void signal;
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
