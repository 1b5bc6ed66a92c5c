import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { MemoryStore, type SessionRevokedEvent } from '../lib/index.js'
import { BOB, build, login, me, refresh, refreshCookie } from './helpers.js'

// The RFC 7009 revocation endpoint (docs/design.md, «Token revocation endpoint»).

function revoke (app: FastifyInstance, body: Record<string, string> | string, contentType?: string) {
  return app.inject({
    method: 'POST',
    url: '/auth/revoke',
    ...(typeof body === 'string' ? { payload: body, headers: { 'content-type': contentType ?? 'application/x-www-form-urlencoded' } } : { payload: body })
  })
}

/** RFC 7009 §2.2: 200, an empty body, never cached. */
function assertAnswered (t: Test, response: LightMyRequestResponse, label: string) {
  t.equal(response.statusCode, 200, `${label}: 200`)
  t.equal(response.body, '', `${label}: empty body`)
  t.equal(response.headers['cache-control'], 'no-store', `${label}: no-store`)
  t.notOk(response.headers['set-cookie'], `${label}: no cookie set or cleared`)
}

async function assertEnded (t: Test, app: FastifyInstance, tokens: { accessToken: string, refreshToken: string }, label: string) {
  const refreshed = await refresh(app, tokens.refreshToken)
  t.equal(refreshed.statusCode, 401, `${label}: the refresh token is refused`)
  t.equal(refreshed.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', `${label}: INVALID_REFRESH_TOKEN`)
  const protectedResponse = await me(app, tokens.accessToken)
  t.equal(protectedResponse.statusCode, 401, `${label}: the access token is refused`)
  t.equal(protectedResponse.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED', `${label}: SESSION_REVOKED`)
}

t.test('a refresh token, with or without a hint, ends its session and only that one', async (t) => {
  const app = await build(t)
  const revoked: SessionRevokedEvent[] = []
  app.tokenAuth.events.on('sessionRevoked', (event) => revoked.push(event))
  for (const hint of [undefined, 'refresh_token', 'access_token', 'something_else']) {
    const label = `hint ${hint ?? 'none'}`
    const tokens = await login(app)
    const other = await login(app)
    assertAnswered(t, await revoke(app, { token: tokens.refreshToken, ...(hint === undefined ? {} : { token_type_hint: hint }) }), label)
    await assertEnded(t, app, tokens, label)
    t.equal((await me(app, other.accessToken)).statusCode, 200, `${label}: the user's other session lives on`)
    t.equal(revoked.at(-1)?.reason, 'logout', `${label}: sessionRevoked, reason logout`)
  }
})

t.test('an access token, with any hint, ends its session', async (t) => {
  const app = await build(t)
  for (const hint of [undefined, 'access_token', 'refresh_token']) {
    const label = `hint ${hint ?? 'none'}`
    const tokens = await login(app)
    assertAnswered(t, await revoke(app, { token: tokens.accessToken, ...(hint === undefined ? {} : { token_type_hint: hint }) }), label)
    await assertEnded(t, app, tokens, label)
  }
})

t.test('anything that is not a live token is answered 200 and ends nothing', async (t) => {
  const app = await build(t)
  const alice = await login(app)
  const bob = await login(app, BOB)
  assertAnswered(t, await revoke(app, { token: alice.refreshToken }), 'first revocation')
  const tampered = `${bob.refreshToken.slice(0, -2)}${bob.refreshToken.endsWith('AA') ? 'BB' : 'AA'}`
  const cases: Array<[string, string]> = [
    ['the same refresh token again', alice.refreshToken],
    ['its access token, session already ended', alice.accessToken],
    ['garbage', 'not-a-token'],
    ['a refresh token with a wrong tag', tampered],
    ['an access token with a wrong signature', `${bob.accessToken.slice(0, -4)}AAAA`],
    ['an access token of another key', `${bob.accessToken.split('.').slice(0, 2).join('.')}.${'A'.repeat(43)}`]
  ]
  for (const [label, token] of cases) assertAnswered(t, await revoke(app, { token }), label)
  t.equal((await me(app, bob.accessToken)).statusCode, 200, "bob's session was not touched by the forgeries of his tokens")
  t.equal((await refresh(app, bob.refreshToken)).statusCode, 200)
})

t.test('a request without a token is a 400 with a stable code', async (t) => {
  const app = await build(t)
  const cases: Array<[string, Record<string, string> | string, number, string?]> = [
    ['no token', {}, 400],
    ['empty token', { token: '' }, 400],
    ['unknown field', { token: 'x', extra: 'y' }, 400],
    ['a form without a token', 'token_type_hint=refresh_token', 400],
    ['text/plain', 'token=x', 415, 'text/plain']
  ]
  for (const [label, body, status, type] of cases) {
    const response = await revoke(app, body, type)
    t.equal(response.statusCode, status, `${label}: ${status}`)
    t.match(response.json().code, /^FST_(TOKEN_AUTH|ERR)_[A-Z_]+$/, `${label}: coded`)
  }
  // RFC 7009's form body is taken in either response format: the route reads no cookie, so a
  // cross-site form post can only revoke a token its sender already holds.
  assertAnswered(t, await revoke(app, 'token=not-a-token'), 'a form in the default format')
  const oversize = await revoke(app, { token: 'x'.repeat(9000) })
  t.equal(oversize.statusCode, 400, 'a token longer than any of ours: 400')
})

t.test('the OAuth 2.0 format: a form body (RFC 7009 §2.1) and RFC 6749 §5.2 errors', async (t) => {
  const app = await build(t, { responseFormat: 'oauth2', refreshTokenTransport: 'body' })
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'alice', password: 'correct-horse-battery-staple' } })
  const tokens = { accessToken: response.json().access_token as string, refreshToken: response.json().refresh_token as string }
  assertAnswered(t, await revoke(app, `token=${encodeURIComponent(tokens.refreshToken)}&token_type_hint=refresh_token&client_id=spa`), 'form')
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { grant_type: 'refresh_token', refresh_token: tokens.refreshToken } })
  t.equal(refreshed.statusCode, 400, 'the revoked refresh token: invalid_grant')
  t.equal(refreshed.json().error, 'invalid_grant')
  const missing = await revoke(app, 'token_type_hint=refresh_token')
  t.equal(missing.statusCode, 400, 'no token: 400')
  t.equal(missing.json().error, 'invalid_request', 'error invalid_request')
  t.match(missing.json().code, /^FST_/, 'with the plugin code beside it')
  const twice = await revoke(app, 'token=a&token=b')
  t.equal(twice.statusCode, 400, 'a parameter sent twice: 400')
  t.equal(twice.json().error, 'invalid_request')
})

t.test('a store that cannot answer: 503 with Retry-After, and the session is not ended', async (t) => {
  const store = new MemoryStore()
  const app = await build(t, { store, storeTimeout: 100 })
  const tokens = await login(app)
  const revokeSession = store.revokeSession.bind(store)
  store.revokeSession = async () => { throw new Error('connect ECONNREFUSED 10.0.0.1:6379') }
  const response = await revoke(app, { token: tokens.refreshToken })
  t.equal(response.statusCode, 503, '503')
  t.equal(response.json().code, 'FST_TOKEN_AUTH_STORE_UNAVAILABLE')
  t.equal(response.headers['retry-after'], '1', 'Retry-After')
  t.notMatch(response.body, /ECONNREFUSED|10\.0\.0\.1/, 'the store error is not leaked')
  store.revokeSession = revokeSession
  const refreshed = await refresh(app, tokens.refreshToken)
  t.equal(refreshed.statusCode, 200, 'the session still works')
  assertAnswered(t, await revoke(app, { token: refreshCookie(refreshed)!.value }), 'the retry')
})

t.test('routes.revoke: false registers no revocation endpoint', async (t) => {
  const app = await build(t, { routes: { revoke: false } })
  const tokens = await login(app)
  const response = await revoke(app, { token: tokens.refreshToken })
  t.equal(response.statusCode, 404)
  t.equal((await me(app, tokens.accessToken)).statusCode, 200)
})
