import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import type { AuthUser, SessionInfo } from '../lib/index.js'
import { BOB, BOB_PASSWORD, build, decodePayload, me, PASSWORD, refresh, refreshCookie, tokenSecrets, USER_ID, USERNAME } from './helpers.js'

type ListedSession = SessionInfo & { current: boolean }

async function loginAs (app: FastifyInstance, userAgent: string, username = USERNAME, password = PASSWORD) {
  const response = await app.inject({ method: 'POST', url: '/auth/login', headers: { 'user-agent': userAgent }, payload: { username, password } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  const accessToken = response.json().accessToken as string
  return { accessToken, refreshToken: refreshCookie(response)!.value, sid: decodePayload(accessToken).sid as string }
}

function listSessions (app: FastifyInstance, accessToken?: string) {
  return app.inject({ method: 'GET', url: '/auth/sessions', headers: accessToken === undefined ? {} : { authorization: `Bearer ${accessToken}` } })
}

function deleteSession (app: FastifyInstance, accessToken: string, id: string) {
  return app.inject({ method: 'DELETE', url: `/auth/sessions/${id}`, headers: { authorization: `Bearer ${accessToken}` } })
}

const isoDate = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

t.test('GET /auth/sessions lists the user\'s sessions without token material', async (t) => {
  const app = await build(t)
  const before = Date.now()
  const laptop = await loginAs(app, 'Laptop/1.0')
  const phone = await loginAs(app, 'Phone/2.0')
  const bob = await loginAs(app, 'Bob/1.0', BOB, BOB_PASSWORD)
  const after = Date.now()

  const response = await listSessions(app, laptop.accessToken)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['cache-control'], 'no-store')
  const body = response.json() as { sessions: ListedSession[] }
  t.same(Object.keys(body), ['sessions'])
  t.equal(body.sessions.length, 2, "only alice's two sessions")
  t.same(body.sessions.map((s) => s.id), [laptop.sid, phone.sid], 'oldest first, ids are the sid claims')
  t.notOk(body.sessions.some((s) => s.id === bob.sid), "bob's session is not listed")

  for (const session of body.sessions) {
    t.same(Object.keys(session).sort(), ['createdAt', 'current', 'expiresAt', 'id', 'ip', 'lastUsedAt', 'userAgent'], 'exactly the documented fields')
    for (const field of ['createdAt', 'lastUsedAt', 'expiresAt'] as const) {
      t.match(session[field], isoDate, `${field} is an ISO date`)
      t.equal(new Date(session[field]).toISOString(), session[field])
    }
    const created = Date.parse(session.createdAt)
    t.ok(created >= before - 1 && created <= after + 1, 'createdAt is the login time')
    t.equal(session.lastUsedAt, session.createdAt, 'not used since login')
    t.ok(Math.abs(Date.parse(session.expiresAt) - created - 14 * 24 * 3600 * 1000) <= 1000, 'expiresAt is createdAt + refreshTokenTtl')
    t.equal(session.ip, '127.0.0.1')
  }
  t.equal(body.sessions[0]!.userAgent, 'Laptop/1.0', 'user agent recorded from the login request')
  t.equal(body.sessions[1]!.userAgent, 'Phone/2.0')
  t.same(body.sessions.map((s) => s.current), [true, false], 'current only for the session of the token used')

  const fromPhone = (await listSessions(app, phone.accessToken)).json() as { sessions: ListedSession[] }
  t.same(fromPhone.sessions.map((s) => s.current), [false, true], 'current follows the token')

  // No token material anywhere.
  const text = response.body
  t.notMatch(text, /eyJ/, 'no JWT')
  for (const { token, jti, signature } of [laptop.accessToken, laptop.refreshToken, phone.accessToken, phone.refreshToken].map(tokenSecrets)) {
    t.notOk(text.includes(token), 'no token')
    t.notOk(text.includes(jti), 'no jti')
    t.notOk(text.includes(createHash('sha256').update(jti).digest().toString('base64url', 0, 16)), 'no jti hash')
    t.notOk(text.includes(signature), 'no signature or tag')
  }
})

t.test('the sessions list reflects refreshes and truncates long user agents', async (t) => {
  const app = await build(t)
  const alice = await loginAs(app, 'U'.repeat(1000))
  const listed = (await listSessions(app, alice.accessToken)).json().sessions as ListedSession[]
  t.equal(listed[0]!.userAgent, 'U'.repeat(256), 'user agent capped at 256 characters')

  await new Promise((resolve) => setTimeout(resolve, 20))
  const refreshed = await app.inject({
    method: 'POST', url: '/auth/refresh', cookies: { refresh_token: alice.refreshToken }, headers: { 'user-agent': 'Refresher/3.0' }
  })
  t.equal(refreshed.statusCode, 200)
  const after = (await listSessions(app, refreshed.json().accessToken)).json().sessions as ListedSession[]
  t.equal(after.length, 1)
  t.equal(after[0]!.id, alice.sid)
  t.equal(after[0]!.createdAt, listed[0]!.createdAt, 'createdAt unchanged')
  t.ok(Date.parse(after[0]!.lastUsedAt) > Date.parse(listed[0]!.lastUsedAt), 'lastUsedAt moved')
  t.equal(after[0]!.userAgent, 'Refresher/3.0', 'last client seen')
  t.equal(after[0]!.current, true)
})

t.test('the sessions routes need a Bearer access token', async (t) => {
  const app = await build(t)
  const alice = await loginAs(app, 'Laptop/1.0')

  const missing = await listSessions(app)
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN')
  t.equal(missing.headers['www-authenticate'], 'Bearer')

  const withCookieOnly = await app.inject({ method: 'GET', url: '/auth/sessions', cookies: { refresh_token: alice.refreshToken } })
  t.equal(withCookieOnly.statusCode, 401, 'the refresh cookie is not an access token')
  t.equal(withCookieOnly.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN')

  const invalid = await listSessions(app, 'garbage')
  t.equal(invalid.statusCode, 401)
  t.equal(invalid.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.equal(invalid.headers['www-authenticate'], 'Bearer error="invalid_token"')

  const refreshAsBearer = await listSessions(app, alice.refreshToken)
  t.equal(refreshAsBearer.statusCode, 401)
  t.equal(refreshAsBearer.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')

  const deleteWithout = await app.inject({ method: 'DELETE', url: `/auth/sessions/${alice.sid}` })
  t.equal(deleteWithout.statusCode, 401)
  t.equal(deleteWithout.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN')
  t.equal((await me(app, alice.accessToken)).statusCode, 200, 'the session survives')
})

t.test('DELETE /auth/sessions/:id ends one of the user\'s own sessions', async (t) => {
  const app = await build(t)
  const revoked: Array<{ sessionId: string, reason: string }> = []
  app.tokenAuth.events.on('sessionRevoked', ({ sessionId, reason }) => revoked.push({ sessionId, reason }))
  const laptop = await loginAs(app, 'Laptop/1.0')
  const phone = await loginAs(app, 'Phone/2.0')

  const response = await deleteSession(app, laptop.accessToken, phone.sid)
  t.equal(response.statusCode, 204)
  t.equal(response.body, '')
  t.same(revoked, [{ sessionId: phone.sid, reason: 'revoked' }])

  const phoneRefresh = await refresh(app, phone.refreshToken)
  t.equal(phoneRefresh.statusCode, 401, "that session's refresh token is refused")
  t.equal(phoneRefresh.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
  const phoneMe = await me(app, phone.accessToken)
  t.equal(phoneMe.statusCode, 401, "that session's access token is refused")
  t.equal(phoneMe.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')

  const listed = (await listSessions(app, laptop.accessToken)).json().sessions as ListedSession[]
  t.same(listed.map((s) => s.id), [laptop.sid], 'only the laptop session is left')
  t.equal((await me(app, laptop.accessToken)).statusCode, 200, 'the caller\'s session is untouched')

  const again = await deleteSession(app, laptop.accessToken, phone.sid)
  t.equal(again.statusCode, 404, 'deleting it twice: 404')
  t.equal(again.json().code, 'FST_TOKEN_AUTH_SESSION_NOT_FOUND')

  // Ending one's own current session works too.
  t.equal((await deleteSession(app, laptop.accessToken, laptop.sid)).statusCode, 204)
  const selfMe = await me(app, laptop.accessToken)
  t.equal(selfMe.statusCode, 401)
  t.equal(selfMe.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
})

t.test("another user's session is not found, and survives", async (t) => {
  const app = await build(t)
  const alice = await loginAs(app, 'Laptop/1.0')
  const bob = await loginAs(app, 'Bob/1.0', BOB, BOB_PASSWORD)

  const response = await deleteSession(app, alice.accessToken, bob.sid)
  t.equal(response.statusCode, 404)
  t.equal(response.json().code, 'FST_TOKEN_AUTH_SESSION_NOT_FOUND')
  t.equal((await me(app, bob.accessToken)).statusCode, 200, "bob's access token still works")
  t.equal((await refresh(app, bob.refreshToken)).statusCode, 200, "bob's refresh token still works")
  const listed = (await listSessions(app, bob.accessToken)).json().sessions as ListedSession[]
  t.same(listed.map((s) => s.id), [bob.sid])
})

t.test('unknown and invalid session ids', async (t) => {
  const app = await build(t)
  const alice = await loginAs(app, 'Laptop/1.0')

  const unknown = await deleteSession(app, alice.accessToken, 'AAAAAAAAAAAAAAAAAAAAAA')
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().code, 'FST_TOKEN_AUTH_SESSION_NOT_FOUND')

  for (const id of ['bad.id', 'bad%24id', '%20', 'a'.repeat(65), 'x%00y', '..%2F..%2Fetc']) {
    const response = await deleteSession(app, alice.accessToken, id)
    t.equal(response.statusCode, 400, `${id.slice(0, 20)}: 400`)
    t.equal(response.json().code, 'FST_ERR_VALIDATION', `${id.slice(0, 20)}: FST_ERR_VALIDATION`)
  }
  t.equal((await me(app, alice.accessToken)).statusCode, 200, 'the session survives')
})

t.test('routes: { sessions: false } removes both sessions routes', async (t) => {
  const app = await build(t, { routes: { sessions: false } })
  const alice = await loginAs(app, 'Laptop/1.0')
  const list = await listSessions(app, alice.accessToken)
  t.equal(list.statusCode, 404)
  const del = await deleteSession(app, alice.accessToken, alice.sid)
  t.equal(del.statusCode, 404)
  t.equal((await me(app, alice.accessToken)).statusCode, 200, 'the session survives')
  t.equal((await refresh(app, alice.refreshToken)).statusCode, 200, 'the other routes remain')
})

t.test('a renamed sessions route', async (t) => {
  const app = await build(t, { routes: { sessions: { path: '/devices' } } })
  const alice = await loginAs(app, 'Laptop/1.0')
  const other = await loginAs(app, 'Phone/2.0')
  t.equal((await listSessions(app, alice.accessToken)).statusCode, 404)
  const list = await app.inject({ method: 'GET', url: '/auth/devices', headers: { authorization: `Bearer ${alice.accessToken}` } })
  t.equal(list.statusCode, 200)
  t.equal(list.json().sessions.length, 2)
  const del = await app.inject({ method: 'DELETE', url: `/auth/devices/${other.sid}`, headers: { authorization: `Bearer ${alice.accessToken}` } })
  t.equal(del.statusCode, 204)
  t.equal((await me(app, other.accessToken)).json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
})

t.test('routes: false registers no routes, but the hook and helpers work', async (t) => {
  const app = await build(t, { routes: false, verifyCredentials: undefined })
  for (const [method, url] of [['POST', '/auth/login'], ['POST', '/auth/refresh'], ['POST', '/auth/logout'], ['GET', '/auth/sessions'], ['DELETE', '/auth/sessions/abc']] as const) {
    const response = await app.inject({ method, url, payload: method === 'POST' ? { username: USERNAME, password: PASSWORD } : undefined })
    t.equal(response.statusCode, 404, `${method} ${url}: 404`)
    t.equal(response.headers['set-cookie'], undefined)
  }

  const robot: AuthUser = { id: 'user-9', claims: { role: 'robot' } }
  const tokens = await app.tokenAuth.issueSession(robot, { userAgent: 'Helper/1.0', ip: '10.0.0.1' })
  t.equal(tokens.tokenType, 'Bearer')
  t.equal(tokens.userId, 'user-9')
  const meResponse = await me(app, tokens.accessToken)
  t.equal(meResponse.statusCode, 200, 'GET /me with the issued access token')
  t.same(meResponse.json(), { id: 'user-9', sid: tokens.sessionId })
  t.equal(app.tokenAuth.verifyAccessToken<{ role: string, sub: string, sid: string, jti: string, iat: number, exp: number }>(tokens.accessToken).role, 'robot')

  const sessions = await app.tokenAuth.listSessions('user-9')
  t.equal(sessions.length, 1)
  t.equal(sessions[0]!.userAgent, 'Helper/1.0')
  t.equal(sessions[0]!.ip, '10.0.0.1')

  const rotated = await app.tokenAuth.rotateRefreshToken(tokens.refreshToken)
  t.not(rotated.refreshToken, tokens.refreshToken)
  t.equal((await me(app, rotated.accessToken)).statusCode, 200)

  t.equal(await app.tokenAuth.revokeSession(tokens.sessionId, USER_ID), false, 'not revoked for another user id')
  t.equal(await app.tokenAuth.revokeSession(tokens.sessionId, 'user-9'), true)
  const revoked = await me(app, rotated.accessToken)
  t.equal(revoked.statusCode, 401)
  t.equal(revoked.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  t.equal(app.tokenAuth.store.constructor.name, 'MemoryStore')
})

t.test('a client without a User-Agent is listed with userAgent null', async (t) => {
  const app = await build(t)
  const response = await app.inject({
    method: 'POST',
    url: '/auth/login',
    headers: { 'user-agent': undefined },
    payload: { username: USERNAME, password: PASSWORD }
  })
  t.equal(response.statusCode, 200)
  const list = await app.inject({ url: '/auth/sessions', headers: { authorization: `Bearer ${response.json().accessToken}` } })
  t.equal(list.statusCode, 200)
  t.equal(list.json().sessions[0].userAgent, null)
  t.type(list.json().sessions[0].ip, 'string')
})
