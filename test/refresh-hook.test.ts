import Fastify from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { MemoryStore, type RefreshDecision, type RefreshHookContext, type TokenAuthOptions } from '../lib/index.js'
import { assertBootFails, baseOptions, decodePayload, handClock, login, me, refresh, refreshCookie, REVOKED, USER_ID } from './helpers.js'

// The refresh risk hook (docs/design.md, «The refresh risk hook»): allow, deny, shorten, and
// failing closed (503 with Retry-After, nothing rotated) on anything else.

const UNAVAILABLE = 'FST_TOKEN_AUTH_REFRESH_CHECK_UNAVAILABLE'

/** An app whose hook is whatever `hook.current` is at the time of the refresh. */
async function withHook (t: Test, overrides: Partial<TokenAuthOptions> = {}) {
  const hook: { current: (context: RefreshHookContext) => unknown, calls: RefreshHookContext[] } = { current: () => undefined, calls: [] }
  const store = new MemoryStore()
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({
    store,
    onRefresh: (context) => { hook.calls.push(context); return hook.current(context) as RefreshDecision },
    ...overrides
  }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ sid: request.user.sid }))
  t.teardown(async () => { await app.close(); await store.close() })
  await app.ready()
  return { app, hook, store }
}

t.test('allow: undefined or { action: "allow" }; the hook sees the session, the client and the request', async (t) => {
  const clock = handClock(t)
  const { app, hook } = await withHook(t)
  const loggedInAt = clock.now()
  const { refreshToken, accessToken } = await login(app)
  clock.advance(1000)
  const first = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken }, headers: { 'user-agent': 'Phone' } })
  t.equal(first.statusCode, 200)
  const [context] = hook.calls
  const sid = decodePayload(accessToken).sid
  t.same(context?.session, {
    id: sid,
    userId: USER_ID,
    createdAt: loggedInAt,
    lastUsedAt: loggedInAt,
    expiresAt: context?.session.expiresAt,
    absoluteExpiresAt: context?.session.absoluteExpiresAt,
    ip: '127.0.0.1',
    userAgent: 'lightMyRequest',
    firstIp: '127.0.0.1',
    firstUserAgent: 'lightMyRequest',
    authentication: { time: loggedInAt }
  }, 'the session before the rotation, no token material, no claims')
  t.same(context?.client, { ip: '127.0.0.1', userAgent: 'Phone' }, 'the client asking now')
  t.equal(context?.request?.url, '/auth/refresh', 'the request')
  hook.current = () => ({ action: 'allow' })
  t.equal((await refresh(app, refreshCookie(first)!.value)).statusCode, 200)
  t.equal(hook.calls.length, 2, 'called on every refresh')
  hook.current = async () => undefined
  const rotated = await app.tokenAuth.rotateRefreshToken(refreshCookie(first)!.value)
  t.type(rotated.accessToken, 'string', 'an async hook too, and the helper')
  t.equal(hook.calls[2]?.request, undefined, 'no request outside a route')
})

t.test('deny: 401, the session ended with its access tokens, events', async (t) => {
  const { app, hook } = await withHook(t)
  const denied: unknown[] = []
  const revoked: unknown[] = []
  app.tokenAuth.events.on('refreshDenied', (event) => denied.push(event))
  app.tokenAuth.events.on('sessionRevoked', (event) => revoked.push(event))
  const { refreshToken, accessToken } = await login(app)
  const sid = decodePayload(accessToken).sid
  hook.current = () => ({ action: 'deny', reason: 'impossible travel' })
  const response = await refresh(app, refreshToken)
  t.equal(response.statusCode, 401)
  t.equal(response.json().code, 'FST_TOKEN_AUTH_REFRESH_DENIED')
  t.equal(refreshCookie(response)?.value, '', 'the cookie is cleared')
  t.same(denied, [{ userId: USER_ID, sessionId: sid, reason: 'impossible travel', ip: '127.0.0.1', userAgent: 'lightMyRequest' }])
  t.same(revoked, [{ userId: USER_ID, sessionId: sid, reason: 'refresh-denied' }])
  t.equal((await me(app, accessToken)).json().code, REVOKED, 'its access token is refused')
  hook.current = () => undefined
  const calls = hook.calls.length
  const after = await refresh(app, refreshToken)
  t.equal(after.statusCode, 401, 'the session is gone')
  t.equal(hook.calls.length, calls, 'a session that is not live is not shown to the hook')
})

t.test('shorten: the session ends at most expiresIn seconds from now', async (t) => {
  const clock = handClock(t)
  const { app, hook, store } = await withHook(t)
  const { refreshToken, accessToken } = await login(app)
  hook.current = () => ({ action: 'shorten', expiresIn: 60 })
  const response = await refresh(app, refreshToken)
  t.equal(response.statusCode, 200)
  t.equal(refreshCookie(response)?.maxAge, 60, 'the cookie lives 60 s')
  const session = await store.getSession(decodePayload(accessToken).sid as string, clock.now())
  t.equal(session?.absoluteExpiresAt, clock.now() + 60_000, 'the absolute end moved in')
  hook.current = () => ({ action: 'shorten', expiresIn: 3600 })
  const longer = await refresh(app, refreshCookie(response)!.value)
  t.equal(refreshCookie(longer)?.maxAge, 60, 'a later, longer shorten never extends it')
  clock.advance(61_000)
  t.equal((await refresh(app, refreshCookie(longer)!.value)).statusCode, 401, 'over after the shortened end')
})

t.test('a hook that fails: 503 with Retry-After, nothing rotated, the same token works once fixed', async (t) => {
  const { app, hook } = await withHook(t, { onRefreshTimeout: 50 })
  const unavailable: unknown[] = []
  app.tokenAuth.events.on('unavailableResponse', (event) => unavailable.push(event))
  const { refreshToken } = await login(app)
  const failures: Array<[string, (context: RefreshHookContext) => unknown]> = [
    ['throws', () => { throw new Error('risk service down') }],
    ['rejects', async () => { throw new Error('risk service down') }],
    ['times out', () => new Promise(() => {})],
    ['answers a string', () => 'allow'],
    ['answers null', () => null],
    ['answers an unknown action', () => ({ action: 'block' })],
    ['denies without a reason', () => ({ action: 'deny' })],
    ['shortens by nothing', () => ({ action: 'shorten', expiresIn: 0 })],
    ['shortens by no number', () => ({ action: 'shorten', expiresIn: '60' })],
    ['shortens by infinity', () => ({ action: 'shorten', expiresIn: Infinity })]
  ]
  for (const [label, current] of failures) {
    hook.current = current
    const response = await refresh(app, refreshToken)
    t.equal(response.statusCode, 503, `${label}: 503`)
    t.equal(response.json().code, UNAVAILABLE, `${label}: the code`)
    t.equal(response.headers['retry-after'], '1', `${label}: Retry-After`)
    t.equal(refreshCookie(response), undefined, `${label}: the cookie is kept`)
  }
  t.equal(unavailable.length, failures.length, 'each counted as a 503 of the refresh route')
  hook.current = () => undefined
  const fixed = await refresh(app, refreshToken)
  t.equal(fixed.statusCode, 200, 'nothing was rotated: the same refresh token works')
  t.equal((await refresh(app, refreshToken)).statusCode, 200, 'and is now the predecessor, inside the grace window')
})

t.test('the OAuth 2.0 format: a denial is invalid_grant', async (t) => {
  const { app, hook } = await withHook(t, { responseFormat: 'oauth2' })
  const { refreshToken } = await login(app)
  hook.current = () => ({ action: 'deny', reason: 'x' })
  const response = await refresh(app, refreshToken)
  t.equal(response.statusCode, 400)
  t.same(response.json(), { error: 'invalid_grant', error_description: response.json().error_description, code: 'FST_TOKEN_AUTH_REFRESH_DENIED' })
  hook.current = () => { throw new Error('x') }
  const other = await login(app)
  const unavailable = await refresh(app, other.refreshToken)
  t.equal(unavailable.statusCode, 503)
  t.equal(unavailable.json().error, 'temporarily_unavailable')
})

t.test('the options are checked at boot', async (t) => {
  await assertBootFails(t, { onRefresh: 'allow' }, 'onRefresh')
  await assertBootFails(t, { onRefreshTimeout: 0 }, 'onRefreshTimeout')
})
