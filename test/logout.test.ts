import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import type { LogoutAllEvent, LogoutEvent, SessionRevokedEvent } from '../lib/index.js'
import { build, decodePayload, login, me, refresh, refreshCookie, sleep, USER_ID } from './helpers.js'

function logout (app: FastifyInstance, options: Partial<InjectOptions> = {}, query = '') {
  return app.inject({ method: 'POST', url: `/auth/logout${query}`, ...options } as InjectOptions)
}

/** 204, empty body, and the refresh cookie cleared with the same name, Path and flags. */
function assertLoggedOut (t: Test, response: LightMyRequestResponse, label = '') {
  t.equal(response.statusCode, 204, `${label} 204`)
  t.equal(response.body, '', `${label} empty body`)
  t.equal(response.headers['cache-control'], 'no-store', `${label} no-store`)
  const cookie = refreshCookie(response)
  t.ok(cookie, `${label} Set-Cookie clears refresh_token`)
  t.equal(cookie?.value, '', `${label} cookie emptied`)
  t.equal(cookie?.maxAge, 0, `${label} Max-Age=0`)
  t.equal(cookie?.path, '/auth', `${label} same Path`)
  t.equal(cookie?.httpOnly, true, `${label} HttpOnly`)
  t.equal(cookie?.secure, true, `${label} Secure`)
  t.equal(cookie?.sameSite, 'Strict', `${label} SameSite`)
}

async function assertSessionEnded (t: Test, app: FastifyInstance, tokens: { accessToken: string, refreshToken: string }, label = '') {
  const refreshed = await refresh(app, tokens.refreshToken)
  t.equal(refreshed.statusCode, 401, `${label} refresh token refused`)
  t.equal(refreshed.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', `${label} refresh: INVALID_REFRESH_TOKEN`)
  const meResponse = await me(app, tokens.accessToken)
  t.equal(meResponse.statusCode, 401, `${label} access token refused`)
  t.equal(meResponse.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED', `${label} access: SESSION_REVOKED`)
}

async function assertSessionAlive (t: Test, app: FastifyInstance, tokens: { accessToken: string, refreshToken: string }, label = '') {
  t.equal((await me(app, tokens.accessToken)).statusCode, 200, `${label} access token works`)
  const refreshed = await refresh(app, tokens.refreshToken)
  t.equal(refreshed.statusCode, 200, `${label} refresh token works`)
  return { accessToken: refreshed.json().accessToken as string, refreshToken: refreshCookie(refreshed)!.value }
}

t.test('logout with the cookie ends the session', async (t) => {
  const app = await build(t)
  const alice = await login(app)
  const other = await login(app)
  const response = await logout(app, { cookies: { refresh_token: alice.refreshToken } })
  assertLoggedOut(t, response)
  await assertSessionEnded(t, app, alice)
  await assertSessionAlive(t, app, other, 'the other session of the same user')
})

t.test('logout is idempotent', async (t) => {
  const app = await build(t, { refreshTokenTtl: 1 })
  const alice = await login(app)
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: alice.refreshToken } }), 'first logout')
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: alice.refreshToken } }), 'repeated logout')
  assertLoggedOut(t, await logout(app), 'no cookie')
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: 'garbage' } }), 'garbage cookie')
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: '' } }), 'empty cookie')
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: alice.accessToken } }), 'an access token as the cookie')

  const bob = await login(app, 'bob')
  await sleep(1200)
  t.equal((await refresh(app, bob.refreshToken)).json().code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED', 'the token has expired')
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: bob.refreshToken } }), 'expired token')
})

t.test('logout?all=true revokes every session of the user, and only theirs', async (t) => {
  const app = await build(t)
  const first = await login(app)
  const second = await login(app)
  const bob = await login(app, 'bob')

  const response = await logout(app, { headers: { authorization: `Bearer ${first.accessToken}` } }, '?all=true')
  assertLoggedOut(t, response)
  await assertSessionEnded(t, app, first, 'first session')
  await assertSessionEnded(t, app, second, 'second session')
  await assertSessionAlive(t, app, bob, 'bob')
  t.same(await app.tokenAuth.listSessions(USER_ID), [], 'alice has no session left')
})

t.test('logout?all=true with a cookie too still revokes everything', async (t) => {
  const app = await build(t)
  const first = await login(app)
  const second = await login(app)
  const response = await logout(app, {
    headers: { authorization: `Bearer ${second.accessToken}` }, cookies: { refresh_token: first.refreshToken }
  }, '?all=true')
  assertLoggedOut(t, response)
  await assertSessionEnded(t, app, first)
  await assertSessionEnded(t, app, second)
})

t.test('logout?all=true needs a valid access token', async (t) => {
  const app = await build(t)
  const alice = await login(app)

  const missing = await logout(app, { cookies: { refresh_token: alice.refreshToken } }, '?all=true')
  t.equal(missing.statusCode, 401, 'no bearer: 401')
  t.equal(missing.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN')
  t.equal(missing.headers['www-authenticate'], 'Bearer')
  t.equal(missing.headers['set-cookie'], undefined, 'cookie not cleared')

  const invalid = await logout(app, { headers: { authorization: 'Bearer not.a.token' } }, '?all=true')
  t.equal(invalid.statusCode, 401, 'invalid bearer: 401')
  t.equal(invalid.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.equal(invalid.headers['www-authenticate'], 'Bearer error="invalid_token"')
  t.equal(invalid.headers['set-cookie'], undefined)

  const refreshAsBearer = await logout(app, { headers: { authorization: `Bearer ${alice.refreshToken}` } }, '?all=true')
  t.equal(refreshAsBearer.statusCode, 401, 'a refresh token is no access token')
  t.equal(refreshAsBearer.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')

  await assertSessionAlive(t, app, alice, 'nothing was revoked')
})

t.test('logout?all must be true or false', async (t) => {
  const app = await build(t)
  const alice = await login(app)
  for (const query of ['?all=maybe', '?all=1', '?all=TRUE', '?everything=true']) {
    const response = await logout(app, { headers: { authorization: `Bearer ${alice.accessToken}` }, cookies: { refresh_token: alice.refreshToken } }, query)
    t.equal(response.statusCode, 400, `${query}: 400`)
    t.equal(response.json().code, 'FST_ERR_VALIDATION', `${query}: FST_ERR_VALIDATION`)
    t.equal(response.headers['set-cookie'], undefined, `${query}: cookie not cleared`)
  }
  await assertSessionAlive(t, app, alice, 'nothing was revoked')

  const notAll = await logout(app, { cookies: { refresh_token: alice.refreshToken } }, '?all=false')
  assertLoggedOut(t, notAll, '?all=false')
})

t.test('logout with only a Bearer access token ends that session', async (t) => {
  const app = await build(t)
  const events: LogoutEvent[] = []
  app.tokenAuth.events.on('logout', (event) => events.push(event))
  const alice = await login(app)
  const other = await login(app)
  const response = await logout(app, { headers: { authorization: `Bearer ${alice.accessToken}` } })
  assertLoggedOut(t, response)
  t.equal(response.headers['www-authenticate'], undefined)
  await assertSessionEnded(t, app, alice)
  await assertSessionAlive(t, app, other, 'the other session')
  t.same(events, [{ userId: USER_ID, sessionId: decodePayload(alice.accessToken).sid }])
})

t.test('an invalid bearer and no cookie is still a 204', async (t) => {
  const app = await build(t)
  const alice = await login(app)
  for (const authorization of ['Bearer garbage', 'Bearer ', 'Basic dXNlcjpwYXNz', `Bearer ${alice.refreshToken}`]) {
    const response = await logout(app, { headers: { authorization } })
    assertLoggedOut(t, response, JSON.stringify(authorization.slice(0, 20)))
    t.equal(response.headers['www-authenticate'], undefined, 'no challenge on a 204')
  }
  await assertSessionAlive(t, app, alice, 'nothing was revoked')

  // A bearer for an already-ended session is fine too.
  assertLoggedOut(t, await logout(app, { headers: { authorization: `Bearer ${alice.accessToken}` } }))
  assertLoggedOut(t, await logout(app, { headers: { authorization: `Bearer ${alice.accessToken}` } }), 'again')
})

t.test('cross-site logout is refused and the session survives', async (t) => {
  const app = await build(t)
  const alice = await login(app)
  for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'null' }]) {
    const response = await logout(app, { cookies: { refresh_token: alice.refreshToken }, headers })
    t.equal(response.statusCode, 403, `${JSON.stringify(headers)}: 403`)
    t.equal(response.json().code, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST')
    t.equal(response.headers['set-cookie'], undefined, 'cookie not cleared')
  }
  const allAttempt = await logout(app, {
    headers: { origin: 'https://evil.example', authorization: `Bearer ${alice.accessToken}` }
  }, '?all=true')
  t.equal(allAttempt.statusCode, 403, 'cross-site ?all=true: 403')
  await assertSessionAlive(t, app, alice, 'the session survives')

  const textPlain = await logout(app, { cookies: { refresh_token: alice.refreshToken }, headers: { 'content-type': 'text/plain' }, payload: 'x' })
  t.equal(textPlain.statusCode, 415, 'text/plain: 415')
  const get = await app.inject({ method: 'GET', url: '/auth/logout', cookies: { refresh_token: alice.refreshToken } })
  t.equal(get.statusCode, 404, 'GET /auth/logout: 404')
})

t.test('logout, logoutAll and sessionRevoked events', async (t) => {
  const app = await build(t)
  const logouts: LogoutEvent[] = []
  const logoutAlls: LogoutAllEvent[] = []
  const revoked: SessionRevokedEvent[] = []
  app.tokenAuth.events.on('logout', (event) => logouts.push(event))
  app.tokenAuth.events.on('logoutAll', (event) => logoutAlls.push(event))
  app.tokenAuth.events.on('sessionRevoked', (event) => revoked.push(event))

  const one = await login(app)
  const oneSid = decodePayload(one.accessToken).sid
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: one.refreshToken } }))
  t.same(logouts, [{ userId: USER_ID, sessionId: oneSid }], 'logout event')
  t.same(revoked, [{ userId: USER_ID, sessionId: oneSid, reason: 'logout' }], 'sessionRevoked with reason logout')

  // A logout that ends nothing emits nothing.
  assertLoggedOut(t, await logout(app, { cookies: { refresh_token: one.refreshToken } }))
  t.equal(logouts.length, 1)
  t.equal(revoked.length, 1)

  const two = await login(app)
  const three = await login(app)
  const sids = [decodePayload(two.accessToken).sid, decodePayload(three.accessToken).sid]
  assertLoggedOut(t, await logout(app, { headers: { authorization: `Bearer ${three.accessToken}` } }, '?all=true'))
  t.equal(logoutAlls.length, 1)
  t.equal(logoutAlls[0]!.userId, USER_ID)
  t.same([...logoutAlls[0]!.sessionIds].sort(), [...sids].sort(), 'logoutAll lists the sessions ended')
  t.same(revoked.slice(1).map((event) => event.reason), ['logout-all', 'logout-all'])
  t.same(revoked.slice(1).map((event) => event.sessionId).sort(), [...sids].sort())
  t.equal(logouts.length, 1, 'no per-session logout event for logout-all')
  t.notOk(JSON.stringify([logouts, logoutAlls, revoked]).includes('eyJ'), 'no token in events')
})

t.test("logout with refreshTokenTransport 'body'", async (t) => {
  const app = await build(t, { refreshTokenTransport: 'body' })
  const loggedIn = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'alice', password: 'correct-horse-battery-staple' } })
  const { accessToken, refreshToken } = loggedIn.json()
  const response = await app.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken } })
  t.equal(response.statusCode, 204)
  t.equal(response.headers['set-cookie'], undefined, 'no cookie to clear in body mode')
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })
  t.equal(refreshed.statusCode, 401)
  t.equal(refreshed.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
  const meResponse = await me(app, accessToken)
  t.equal(meResponse.statusCode, 401)
  t.equal(meResponse.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
})
