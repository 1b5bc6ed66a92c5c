import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import * as oauth from 'oauth4webapi'
import t, { type Test } from 'tap'
import { MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import { assertBootFails, build, decodePayload, login, me, pollOnly, refresh, refreshCookie, USER_ID } from './helpers.js'

// The RFC 7662 introspection endpoint (docs/design.md, «Token introspection endpoint»), and both
// it and the RFC 7009 revocation endpoint driven by a third-party client, oauth4webapi.

const CLIENT = { id: 'orders-service', secret: 'kP3x9QzL1mW7vR2tY8uN4bC6dF0gH5jAq' }
const OTHER = { id: 'billing:eu', secret: 'Zq1Xw2Ec3Rv4Tb5Yn6Um7Ik8Ol9Pa0SdW' }
const INTROSPECTION = { clients: [CLIENT, OTHER] }

function basic (id: string, secret: string): string {
  // RFC 6749 §2.3.1: each part form-urlencoded, then base64.
  const encode = (text: string) => encodeURIComponent(text).replaceAll('%20', '+')
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`
}

/** `authorization` null sends none. */
function introspect (app: FastifyInstance, token: string, authorization: string | null = basic(CLIENT.id, CLIENT.secret)) {
  return app.inject({
    method: 'POST',
    url: '/auth/introspect',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization === null ? {} : { authorization }) },
    payload: new URLSearchParams({ token }).toString()
  })
}

function assertInactive (t: Test, response: LightMyRequestResponse, label: string) {
  t.equal(response.statusCode, 200, `${label}: 200`)
  t.same(response.json(), { active: false }, `${label}: { active: false } and nothing else`)
  t.equal(response.headers['cache-control'], 'no-store', `${label}: no-store`)
}

async function setup (t: Test, overrides: Partial<TokenAuthOptions> = {}) {
  return await build(t, { introspection: INTROSPECTION, ...overrides })
}

t.test('a live access token: active, with its claims; after logout: inactive', async (t) => {
  const app = await setup(t)
  const tokens = await login(app)
  const response = await introspect(app, tokens.accessToken)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['cache-control'], 'no-store')
  const claims = decodePayload(tokens.accessToken)
  t.same(response.json(), { active: true, token_type: 'Bearer', ...claims }, 'active, token_type Bearer and every claim of the token')
  t.equal(response.json().sub, USER_ID)
  await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: tokens.refreshToken } })
  assertInactive(t, await introspect(app, tokens.accessToken), 'right after logout')
})

t.test('a refresh token: active only while it is its session\'s current one', async (t) => {
  const app = await setup(t)
  const tokens = await login(app)
  const response = await introspect(app, tokens.refreshToken)
  t.equal(response.statusCode, 200)
  t.match(response.json(), { active: true, token_type: 'refresh_token', sub: USER_ID, sid: decodePayload(tokens.accessToken).sid })
  t.ok(Number.isSafeInteger(response.json().exp) && Number.isSafeInteger(response.json().iat), 'exp and iat in seconds')
  t.notMatch(response.body, tokens.refreshToken, 'the token is not echoed')
  const rotated = await refresh(app, tokens.refreshToken)
  assertInactive(t, await introspect(app, tokens.refreshToken), 'the rotated predecessor')
  t.equal((await introspect(app, refreshCookie(rotated)!.value)).json().active, true, 'its successor is')
})

t.test('a revocation on another instance is seen at once, not after the revocation feed', async (t) => {
  // A store that cannot push revocations: b hears of them only by polling, once a minute.
  const store = pollOnly(new MemoryStore())
  const a = await setup(t, { store, revocationPollInterval: 60_000 })
  const b = await setup(t, { store, revocationPollInterval: 60_000 })
  const tokens = await login(a)
  t.equal((await introspect(b, tokens.accessToken)).json().active, true)
  await a.tokenAuth.revokeSession(decodePayload(tokens.accessToken).sid as string)
  t.equal((await me(b, tokens.accessToken)).statusCode, 200, "instance b's own denylist has not heard yet (feed polled every minute)")
  assertInactive(t, await introspect(b, tokens.accessToken), 'b introspects: inactive')
})

t.test('anything not live is { active: false }', async (t) => {
  const app = await setup(t)
  const tokens = await login(app)
  const cases: Array<[string, string]> = [
    ['garbage', 'not-a-token'],
    ['a forged access token signature', `${tokens.accessToken.slice(0, -4)}AAAA`],
    ['a refresh token with a wrong tag', `${tokens.refreshToken.slice(0, -2)}${tokens.refreshToken.endsWith('AA') ? 'BB' : 'AA'}`]
  ]
  for (const [label, token] of cases) assertInactive(t, await introspect(app, token), label)
})

t.test('callers authenticate with HTTP Basic; anything else is 401 invalid_client with a Basic challenge', async (t) => {
  const app = await setup(t)
  const tokens = await login(app)
  const refused: Array<[string, string | null]> = [
    ['no credentials', null],
    ['a bearer token instead', `Bearer ${tokens.accessToken}`],
    ['a wrong secret', basic(CLIENT.id, `${CLIENT.secret}x`)],
    ['a secret one character short', basic(CLIENT.id, CLIENT.secret.slice(0, -1))],
    ['another client\'s secret', basic(CLIENT.id, OTHER.secret)],
    ['an unknown client with a known secret', basic('nobody', CLIENT.secret)],
    ['no colon', `Basic ${Buffer.from(CLIENT.id).toString('base64')}`],
    ['bad percent-encoding', `Basic ${Buffer.from('%E0%A4%A:secret').toString('base64')}`],
    ['not base64', 'Basic ???']
  ]
  for (const [label, authorization] of refused) {
    const response = await introspect(app, tokens.accessToken, authorization)
    t.equal(response.statusCode, 401, `${label}: 401`)
    t.equal(response.json().code, 'FST_TOKEN_AUTH_INVALID_CLIENT', `${label}: INVALID_CLIENT`)
    t.equal(response.headers['www-authenticate'], 'Basic realm="fastify-token-auth", charset="UTF-8"', `${label}: Basic challenge`)
    t.notMatch(response.body, /"active"|eyJ/, `${label}: nothing about the token`)
  }
  const other = await introspect(app, tokens.accessToken, basic(OTHER.id, OTHER.secret))
  t.equal(other.json().active, true, 'the second client, whose id needs form-encoding, authenticates too')
})

t.test('the OAuth 2.0 format: RFC 6749 §5.2 errors, 401 invalid_client', async (t) => {
  const app = await setup(t, { responseFormat: 'oauth2' })
  const response = await introspect(app, 'x', basic(CLIENT.id, 'wrong-secret'))
  t.equal(response.statusCode, 401)
  t.same(response.json(), { error: 'invalid_client', error_description: 'Client authentication failed', code: 'FST_TOKEN_AUTH_INVALID_CLIENT' })
  const missing = await app.inject({ method: 'POST', url: '/auth/introspect', headers: { authorization: basic(CLIENT.id, CLIENT.secret) }, payload: {} })
  t.equal(missing.statusCode, 400)
  t.equal(missing.json().error, 'invalid_request')
})

t.test('rate limited per client IP, failed authentications included: 429 with Retry-After', async (t) => {
  const app = await setup(t, { introspection: { ...INTROSPECTION, rateLimit: { max: 3, timeWindow: 60_000 } } })
  for (let i = 0; i < 3; i++) t.equal((await introspect(app, 'x', basic(CLIENT.id, 'guess'))).statusCode, 401, `guess ${i + 1}: 401`)
  const throttled = await introspect(app, 'x')
  t.equal(throttled.statusCode, 429, 'then 429, even with the right credentials')
  t.equal(throttled.json().code, 'FST_TOKEN_AUTH_INTROSPECTION_THROTTLED')
  t.ok(Number(throttled.headers['retry-after']) > 0, 'Retry-After')
  const unlimited = await setup(t, { introspection: { ...INTROSPECTION, rateLimit: false } })
  for (let i = 0; i < 5; i++) t.equal((await introspect(unlimited, 'x', basic(CLIENT.id, 'guess'))).statusCode, 401, `rateLimit false, guess ${i + 1}: 401, never 429`)
})

t.test('a store that cannot answer: 503 with Retry-After', async (t) => {
  const store = new MemoryStore()
  const app = await setup(t, { store, storeTimeout: 100 })
  const tokens = await login(app)
  store.listUserSessions = async () => { throw new Error('connect ECONNREFUSED 10.0.0.1:5432') }
  const response = await introspect(app, tokens.accessToken)
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'FST_TOKEN_AUTH_STORE_UNAVAILABLE')
  t.equal(response.headers['retry-after'], '1')
  t.notMatch(response.body, /ECONNREFUSED|10\.0\.0\.1|"active"/, 'nothing leaked, no answer about the token')
})

t.test('off unless configured; routes.introspect: false removes it; bad client lists refuse to boot', async (t) => {
  const off = await build(t)
  t.equal((await introspect(off, 'x')).statusCode, 404, 'no introspection option: no endpoint')
  const removed = await setup(t, { routes: { introspect: false } })
  t.equal((await introspect(removed, 'x')).statusCode, 404, 'routes.introspect: false')
  await assertBootFails(t, { introspection: { clients: [] } }, 'introspection.clients')
  await assertBootFails(t, { introspection: { clients: [{ id: 'rs', secret: 'short' }] } }, 'introspection.clients[0].secret')
  await assertBootFails(t, { introspection: { clients: [{ id: '', secret: CLIENT.secret }] } }, 'introspection.clients[0].id')
  await assertBootFails(t, { introspection: { clients: [CLIENT, { ...OTHER, id: CLIENT.id }] } }, 'introspection.clients[1].id')
  await assertBootFails(t, { introspection: { clients: [CLIENT], rateLimit: { max: 0, timeWindow: 1000 } } }, 'introspection.rateLimit.max')
  await assertBootFails(t, { introspection: { clients: [{ id: 'rs' }] } }, 'introspection.clients[0].secret', 'a missing secret')
  await assertBootFails(t, { introspection: { clients: [{ id: 7, secret: CLIENT.secret }] } }, 'introspection.clients[0].id', 'a numeric id')
  await assertBootFails(t, { introspection: { clients: [{ id: 'x'.repeat(257), secret: CLIENT.secret }] } }, 'introspection.clients[0].id', 'an id over 256 characters')
  await assertBootFails(t, { introspection: { clients: ['rs:secret'] } }, 'introspection.clients[0]', 'a string instead of { id, secret }')
})

t.test('oauth4webapi, a third-party client, introspects and revokes over HTTP (RFC 7662, RFC 7009)', async (t) => {
  const app = await setup(t)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const as: oauth.AuthorizationServer = {
    issuer: address,
    introspection_endpoint: `${address}/auth/introspect`,
    revocation_endpoint: `${address}/auth/revoke`
  }
  const insecure = { [oauth.allowInsecureRequests]: true } // plain HTTP on loopback, for the test only
  const resourceServer: oauth.Client = { client_id: CLIENT.id }
  const resourceServerAuth = oauth.ClientSecretBasic(CLIENT.secret)
  const tokens = await login(app)

  const live = await oauth.processIntrospectionResponse(as, resourceServer,
    await oauth.introspectionRequest(as, resourceServer, resourceServerAuth, tokens.accessToken, insecure))
  t.equal(live.active, true, 'introspection: active')
  t.equal(live.sub, USER_ID)
  t.equal(live.token_type, 'Bearer')

  // The app's own client is public: it revokes with its client_id and no secret (RFC 7009 §2.1).
  const app_: oauth.Client = { client_id: 'web' }
  const revoked = await oauth.revocationRequest(as, app_, oauth.None(), tokens.refreshToken, { ...insecure, additionalParameters: { token_type_hint: 'refresh_token' } })
  t.equal(revoked.status, 200, 'revocation: 200')
  t.equal(await oauth.processRevocationResponse(revoked), undefined, 'processRevocationResponse accepts it')

  const after = await oauth.processIntrospectionResponse(as, resourceServer,
    await oauth.introspectionRequest(as, resourceServer, resourceServerAuth, tokens.accessToken, insecure))
  t.same(after, { active: false }, 'the revoked session\'s access token: inactive')

  const wrong = await oauth.introspectionRequest(as, resourceServer, oauth.ClientSecretBasic('not-the-secret'), tokens.accessToken, insecure)
  t.equal(wrong.status, 401, 'a wrong secret: 401')
  await t.rejects(oauth.processIntrospectionResponse(as, resourceServer, wrong), 'oauth4webapi refuses the 401')
})
