import Fastify from 'fastify'
import { calculateJwkThumbprint } from 'jose'
import * as oauth from 'oauth4webapi'
import t, { type Test } from 'tap'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'
import { baseOptions, decodePayload, PASSWORD, USER_ID, USERNAME } from './helpers.js'

// Sender-constrained sessions (docs/design.md, «Sender-constrained sessions (DPoP)») driven by a
// third-party DPoP client, oauth4webapi, over real HTTP: it signs its own proofs (RFC 9449 §4.2),
// computes its own thumbprint (RFC 7638), caches our DPoP-Nonce (§8) and validates our token
// responses (RFC 6749 §5.1) with its own rules, so none of our code checks our code here.

const client: oauth.Client = { client_id: 'interop' }
// A public client (RFC 6749 §2.1): client_id in the body, no secret.
const clientAuth = oauth.None()
const insecure = { [oauth.allowInsecureRequests]: true } as const // plain HTTP on loopback, for the test only
const INVALID_PROOF = 'FST_TOKEN_AUTH_INVALID_DPOP_PROOF'
const USE_NONCE = 'FST_TOKEN_AUTH_USE_DPOP_NONCE'

interface Server {
  base: string
  /** The token endpoint for the password grant: our login route. */
  login: oauth.AuthorizationServer
  /** The token endpoint for the refresh_token grant: our refresh route. */
  refresh: oauth.AuthorizationServer
  me: URL
}

/**
 * The plugin as an RFC 6749 token endpoint with the refresh token in the body, and `GET /me`
 * (answering the claims) behind `authenticate`, listening on an ephemeral loopback port.
 * Two AuthorizationServer objects, one per route: our login and refresh are two token endpoints,
 * and an `as` is what the client knows of one.
 */
async function serve (t: Test, overrides: Partial<TokenAuthOptions> = {}): Promise<Server> {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ responseFormat: 'oauth2', refreshTokenTransport: 'body', dpop: 'optional', ...overrides }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => request.user)
  t.teardown(() => app.close())
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  return {
    base,
    login: { issuer: base, token_endpoint: `${base}/auth/login` },
    refresh: { issuer: base, token_endpoint: `${base}/auth/refresh` },
    me: new URL('/me', base)
  }
}

/** RFC 6749 §4.3: the resource owner password credentials grant, with a proof from `DPoP`. */
function passwordGrant (server: Server, DPoP: oauth.DPoPHandle | undefined) {
  return oauth.genericTokenEndpointRequest(server.login, client, clientAuth, 'password',
    new URLSearchParams({ username: USERNAME, password: PASSWORD }), { ...(DPoP === undefined ? {} : { DPoP }), ...insecure })
}

/** RFC 6749 §6, with a proof from `DPoP` (RFC 9449 §5). */
function refreshGrant (server: Server, refreshToken: string, DPoP: oauth.DPoPHandle) {
  return oauth.refreshTokenGrantRequest(server.refresh, client, clientAuth, refreshToken, { DPoP, ...insecure })
}

/** RFC 9449 §7.1: `Authorization: DPoP` and a proof with `ath`, both made by oauth4webapi. */
function getMe (server: Server, accessToken: string, DPoP: oauth.DPoPHandle) {
  return oauth.protectedResourceRequest(accessToken, 'GET', server.me, new Headers(), null, { DPoP, ...insecure })
}

/**
 * A token response as it went over the wire (status, cache headers, the exact body), then as
 * oauth4webapi's validation takes it: `process` must not throw.
 */
async function assertTokenResponse (t: Test, label: string, response: Response, process: (response: Response) => Promise<oauth.TokenEndpointResponse>, jkt: string) {
  t.equal(response.status, 200, `${label}: 200`)
  t.equal(response.headers.get('cache-control'), 'no-store', `${label}: Cache-Control no-store (RFC 6749 §5.1)`)
  t.equal(response.headers.get('pragma'), 'no-cache', `${label}: Pragma no-cache`)
  const wire = await response.clone().json()
  t.same(Object.keys(wire).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'], `${label}: exactly the §5.1 members, the refresh token in the body`)
  t.equal(wire.token_type, 'DPoP', `${label}: token_type DPoP (RFC 9449 §5)`)
  t.equal(wire.expires_in, 900, `${label}: expires_in, the default accessTokenTtl in seconds`)
  const tokens = await process(response)
  t.equal(tokens.token_type, 'dpop', `${label}: oauth4webapi accepts the response (it lower-cases token_type)`)
  t.equal(tokens.access_token, wire.access_token)
  t.same(decodePayload(tokens.access_token).cnf, { jkt }, `${label}: the access token carries cnf.jkt of the client's key (RFC 9449 §6.1)`)
  const refreshToken = tokens.refresh_token as string
  t.equal(refreshToken.split('.').length, 4, `${label}: a bound refresh token has four segments`)
  t.equal(refreshToken.split('.')[2], jkt, `${label}: the refresh token names the same thumbprint`)
  return { accessToken: tokens.access_token, refreshToken }
}

/**
 * Login, a protected request, a refused Bearer, a refused refresh with another key and a refresh
 * with the right one: all made by oauth4webapi against `server` with an `alg` key pair.
 */
async function boundSession (t: Test, server: Server, alg: string) {
  const keyPair = await oauth.generateKeyPair(alg)
  const DPoP = oauth.DPoP(client, keyPair)
  // Our expected thumbprint comes from oauth4webapi and, independently, from jose (RFC 7638).
  const jkt = await DPoP.calculateThumbprint()
  t.equal(jkt, await calculateJwkThumbprint(await crypto.subtle.exportKey('jwk', keyPair.publicKey)), 'oauth4webapi and jose agree on the thumbprint')

  const login = await assertTokenResponse(t, 'login', await passwordGrant(server, DPoP),
    (response) => oauth.processGenericTokenEndpointResponse(server.login, client, response), jkt)

  const me = await getMe(server, login.accessToken, DPoP)
  t.equal(me.status, 200, 'the protected request: 200')
  const claims = await me.json()
  t.equal(claims.sub, USER_ID, 'sub user-1')
  t.same(claims.cnf, { jkt }, 'the claims hold the binding')

  // A bound token presented as a bearer token is refused: the copy is useless without the key.
  const bearer = await fetch(server.me, { headers: { authorization: `Bearer ${login.accessToken}` } })
  t.equal(bearer.status, 401, 'the same token as Bearer: 401')
  t.match(bearer.headers.get('www-authenticate'), /^DPoP error="invalid_token"/, 'the DPoP invalid_token challenge (RFC 9449 §7.1)')
  t.equal((await bearer.json()).code, 'FST_TOKEN_AUTH_INVALID_TOKEN')

  // A thief with the refresh token and a key of his own: refused before the store, nothing rotates.
  const thief = oauth.DPoP(client, await oauth.generateKeyPair(alg))
  const stolen = await refreshGrant(server, login.refreshToken, thief)
  t.equal(stolen.status, 400, 'a refresh with another key: 400')
  t.match(await stolen.clone().json(), { error: 'invalid_dpop_proof', code: INVALID_PROOF }, 'invalid_dpop_proof (RFC 9449 §5)')
  t.equal(stolen.headers.get('www-authenticate'), null, 'a token endpoint error, no challenge')
  await t.rejects(oauth.processRefreshTokenResponse(server.refresh, client, stolen),
    { name: 'ResponseBodyError', error: 'invalid_dpop_proof', status: 400 }, 'oauth4webapi surfaces it as a ResponseBodyError')

  const refreshed = await assertTokenResponse(t, 'refresh', await refreshGrant(server, login.refreshToken, DPoP),
    (response) => oauth.processRefreshTokenResponse(server.refresh, client, response), jkt)
  t.not(refreshed.refreshToken, login.refreshToken, 'the untouched token rotated now, with the key')
  t.equal((await getMe(server, refreshed.accessToken, DPoP)).status, 200, 'the refreshed access token works with the key')
}

for (const dpop of ['optional', 'required'] as const) {
  t.test(`dpop '${dpop}': oauth4webapi logs in, calls /me and refreshes with an ES256 key (RFC 9449)`, async (t) => {
    await boundSession(t, await serve(t, { dpop }), 'ES256')
  })
}

t.test('dpop \'required\': oauth4webapi without a DPoP handle is refused at the token endpoint', async (t) => {
  const server = await serve(t, { dpop: 'required' })
  const response = await passwordGrant(server, undefined)
  t.equal(response.status, 400)
  // lib/oauth2.ts maps DPOP_REQUIRED to invalid_dpop_proof (RFC 9449 §5: the request lacks the
  // proof the server needs), not the invalid_request of the design's catch-all row.
  t.match(await response.clone().json(), { error: 'invalid_dpop_proof', code: 'FST_TOKEN_AUTH_DPOP_REQUIRED' })
  t.equal(response.headers.get('www-authenticate'), null)
  await t.rejects(oauth.processGenericTokenEndpointResponse(server.login, client, response), { name: 'ResponseBodyError', error: 'invalid_dpop_proof', status: 400 })
})

for (const alg of ['RS256', 'PS256']) {
  t.test(`${alg}: oauth4webapi logs in, calls /me and refreshes with an RSA key`, async (t) => {
    await boundSession(t, await serve(t), alg)
  })
}

t.test('Ed25519: the fully-specified name oauth4webapi signs with (RFC 9864) and the older EdDSA both pass', async (t) => {
  const server = await serve(t)
  const keyPair = await oauth.generateKeyPair('EdDSA')
  // oauth4webapi 3.x signs Ed25519 proofs with the fully-specified JWS alg "Ed25519" (RFC 9864
  // §2.2), not the polymorphic "EdDSA" (RFC 8037 §3.1); the plugin accepts both names.
  const handle = oauth.DPoP(client, keyPair)
  const asSigned = await assertTokenResponse(t, 'login, alg Ed25519', await passwordGrant(server, handle),
    (response) => oauth.processGenericTokenEndpointResponse(server.login, client, response), await handle.calculateThumbprint())
  t.equal((await getMe(server, asSigned.accessToken, handle)).status, 200, '/me with alg Ed25519: 200')
  const edOnly = await serve(t, { dpopAlgorithms: ['EdDSA'] })
  const refused = await passwordGrant(edOnly, oauth.DPoP(client, keyPair))
  t.equal(refused.status, 400, 'a server that lists only "EdDSA" refuses the name "Ed25519"')
  t.same(await refused.json(), { error: 'invalid_dpop_proof', error_description: 'Invalid DPoP proof: alg not allowed', code: INVALID_PROOF })

  // The same key under the name "EdDSA" (oauth4webapi's modifyAssertion hook edits the header
  // before signing).
  const renamed = oauth.DPoP(client, keyPair, { [oauth.modifyAssertion]: (header) => { header.alg = 'EdDSA' } })
  const jkt = await renamed.calculateThumbprint()
  const login = await assertTokenResponse(t, 'login, alg EdDSA', await passwordGrant(server, renamed),
    (response) => oauth.processGenericTokenEndpointResponse(server.login, client, response), jkt)
  t.equal((await getMe(server, login.accessToken, renamed)).status, 200, '/me: 200')
  await assertTokenResponse(t, 'refresh, alg EdDSA', await refreshGrant(server, login.refreshToken, renamed),
    (response) => oauth.processRefreshTokenResponse(server.refresh, client, response), jkt)
})

t.test('nonces (RFC 9449 §8, §9): each first request fails with use_dpop_nonce, oauth4webapi caches DPoP-Nonce, the retry passes', async (t) => {
  const server = await serve(t, { dpopNonce: true })
  const keyPair = await oauth.generateKeyPair('ES256')
  const jkt = await oauth.DPoP(client, keyPair).calculateThumbprint()

  // Login (§8): 400 use_dpop_nonce with DPoP-Nonce; oauth4webapi rejects it as a nonce error.
  const DPoP = oauth.DPoP(client, keyPair)
  const first = await passwordGrant(server, DPoP)
  t.equal(first.status, 400, 'login without a nonce: 400')
  t.match(await first.clone().json(), { error: 'use_dpop_nonce', code: USE_NONCE })
  const nonce = first.headers.get('dpop-nonce')
  t.match(nonce, /^[A-Za-z0-9_-]+$/, 'with DPoP-Nonce')
  t.equal(first.headers.get('www-authenticate'), null, 'login never sends WWW-Authenticate')
  const loginError = await oauth.processGenericTokenEndpointResponse(server.login, client, first).then(() => null, (error: unknown) => error)
  t.ok(oauth.isDPoPNonceError(loginError), 'isDPoPNonceError: the documented signal to retry once')
  const login = await assertTokenResponse(t, 'login, retried', await passwordGrant(server, DPoP),
    (response) => oauth.processGenericTokenEndpointResponse(server.login, client, response), jkt)

  // The handle keeps the nonce per origin: the same handle passes at once.
  t.equal((await getMe(server, login.accessToken, DPoP)).status, 200, 'the handle that learned the nonce: 200 at the first try')

  // A client with the same key but a fresh handle (a restart: no cached nonce) meets each
  // refusal once. Refresh (§8): a 400 that leaves the token untouched.
  const restarted = oauth.DPoP(client, keyPair)
  const refreshFirst = await refreshGrant(server, login.refreshToken, restarted)
  t.equal(refreshFirst.status, 400, 'refresh without a nonce: 400')
  t.match(await refreshFirst.clone().json(), { error: 'use_dpop_nonce', code: USE_NONCE })
  t.equal(refreshFirst.headers.get('dpop-nonce'), nonce, 'the same nonce, within its period')
  const refreshError = await oauth.processRefreshTokenResponse(server.refresh, client, refreshFirst).then(() => null, (error: unknown) => error)
  t.ok(oauth.isDPoPNonceError(refreshError), 'isDPoPNonceError')
  const refreshed = await assertTokenResponse(t, 'refresh, retried', await refreshGrant(server, login.refreshToken, restarted),
    (response) => oauth.processRefreshTokenResponse(server.refresh, client, response), jkt)

  // The protected resource (§9): 401 with the DPoP challenge; protectedResourceRequest throws it.
  const fresh = oauth.DPoP(client, keyPair)
  const meError = await getMe(server, refreshed.accessToken, fresh).then(() => null, (error: unknown) => error)
  t.ok(meError instanceof oauth.WWWAuthenticateChallengeError, 'protectedResourceRequest rejects the challenge')
  t.ok(oauth.isDPoPNonceError(meError), 'isDPoPNonceError')
  const refused = (meError as oauth.WWWAuthenticateChallengeError).response
  t.equal(refused.status, 401, '/me without a nonce: 401')
  t.match(refused.headers.get('www-authenticate'), /^DPoP error="use_dpop_nonce"/)
  t.equal(refused.headers.get('dpop-nonce'), nonce)
  t.equal((await refused.json()).code, USE_NONCE)
  const me = await getMe(server, refreshed.accessToken, fresh)
  t.equal(me.status, 200, '/me, retried: 200')
  t.equal((await me.json()).sub, USER_ID)
})
