import Fastify from 'fastify'
import t from 'tap'
import tokenAuth, { MemoryStore, type TokenStore } from '../lib/index.js'
import { sessionLimitOf } from '../lib/session-policy.js'
import {
  assertBootFails, baseOptions, BOB, build, decodePayload, handClock, login, me, PASSWORD, pollOnly, REVOKED, refresh, USER_ID, USERNAME
} from './helpers.js'

// Session caps (docs/design.md, «Session caps») and the newSession event («Session policy»).

const LIMIT = 'FST_TOKEN_AUTH_SESSION_LIMIT_REACHED'

const loginAs = (app: Awaited<ReturnType<typeof build>>, userAgent?: string) => app.inject({
  method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD }, headers: userAgent === undefined ? {} : { 'user-agent': userAgent }
})

t.test('end-least-recent: the least recently used session ends, its access token is refused at once', async (t) => {
  const clock = handClock(t)
  const app = await build(t, { maxSessionsPerUser: 2 })
  const revoked: unknown[] = []
  app.tokenAuth.events.on('sessionRevoked', (event) => revoked.push(event))
  const first = await login(app)
  clock.advance(1000)
  const second = await login(app)
  clock.advance(1000)
  // The first is used now: the second becomes the least recently used.
  const refreshedFirst = await refresh(app, first.refreshToken)
  t.equal(refreshedFirst.statusCode, 200)
  clock.advance(1000)
  const bob = await login(app, BOB)
  const third = await login(app)
  const secondSid = decodePayload(second.accessToken).sid
  t.same(revoked, [{ userId: USER_ID, sessionId: secondSid, reason: 'session-limit' }], 'one session ended, by the cap')
  const refused = await me(app, second.accessToken)
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, REVOKED, 'its access token is refused at once')
  t.equal((await refresh(app, second.refreshToken)).statusCode, 401, 'its refresh token too')
  t.equal((await me(app, refreshedFirst.json().accessToken)).statusCode, 200, 'the recently used one lives')
  t.equal((await me(app, third.accessToken)).statusCode, 200)
  t.equal((await me(app, bob.accessToken)).statusCode, 200, 'another user counts apart')
  const sessions = await app.tokenAuth.listSessions(USER_ID)
  t.equal(sessions.length, 2, 'never more than the cap')
})

t.test('refuse: 403, nothing stored, the others untouched', async (t) => {
  const app = await build(t, { maxSessionsPerUser: 1, sessionLimitPolicy: 'refuse' })
  const events: string[] = []
  app.tokenAuth.events.on('login', () => events.push('login'))
  app.tokenAuth.events.on('newSession', () => events.push('newSession'))
  app.tokenAuth.events.on('sessionRevoked', () => events.push('sessionRevoked'))
  const first = await login(app)
  const refused = await loginAs(app)
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().code, LIMIT)
  t.equal(refused.cookies.length, 0, 'no cookie')
  t.same(events, ['login', 'newSession'], 'only the first login is reported')
  t.equal((await app.tokenAuth.listSessions(USER_ID)).length, 1)
  t.equal((await me(app, first.accessToken)).statusCode, 200)
  await t.rejects(app.tokenAuth.issueSession({ id: USER_ID }), { code: LIMIT }, 'issueSession too')
  t.equal((await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: first.refreshToken } })).statusCode, 204)
  t.equal((await loginAs(app)).statusCode, 200, 'room again after a logout')
})

t.test('the OAuth 2.0 format refuses with access_denied, keeping 403', async (t) => {
  const app = await build(t, { maxSessionsPerUser: 1, sessionLimitPolicy: 'refuse', responseFormat: 'oauth2' })
  await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  const refused = await loginAs(app)
  t.equal(refused.statusCode, 403)
  t.same(refused.json(), { error: 'access_denied', error_description: refused.json().error_description, code: LIMIT })
})

t.test('the options are checked at boot', async (t) => {
  await assertBootFails(t, { maxSessionsPerUser: 0 }, 'maxSessionsPerUser')
  await assertBootFails(t, { maxSessionsPerUser: 1.5 }, 'maxSessionsPerUser', 'a fraction')
  await assertBootFails(t, { maxSessionsPerUser: '2' }, 'maxSessionsPerUser', 'a string')
  await assertBootFails(t, { sessionLimitPolicy: 'oldest' }, 'sessionLimitPolicy')
})

t.test('newSession: knownUserAgent tells whether another live session has the User-Agent', async (t) => {
  const app = await build(t)
  const events: Array<{ knownUserAgent: boolean, userAgent: string | null, sessionId: string }> = []
  app.tokenAuth.events.on('newSession', (event) => events.push(event))
  const first = await loginAs(app, 'Firefox')
  t.match(events[0], { userId: USER_ID, sessionId: decodePayload(first.json().accessToken).sid, ip: '127.0.0.1', userAgent: 'Firefox', knownUserAgent: false }, 'the first session: unknown')
  await loginAs(app, 'Firefox')
  t.equal(events[1]?.knownUserAgent, true, 'the same browser again: known')
  await loginAs(app, 'Safari')
  t.equal(events[2]?.knownUserAgent, false, 'another browser: unknown')
  await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: first.cookies[0]!.value }, headers: { 'user-agent': 'Chrome' } })
  await loginAs(app, 'Firefox')
  t.equal(events[3]?.knownUserAgent, true, 'known by its first User-Agent after the session moved to another one')
  await loginAs(app, 'Chrome')
  t.equal(events[4]?.knownUserAgent, true, 'known by the latest User-Agent of a session')
  await app.tokenAuth.issueSession({ id: USER_ID }, { ip: '10.0.0.1' })
  t.match(events[5], { userId: USER_ID, ip: '10.0.0.1', userAgent: null, knownUserAgent: false }, 'issueSession reports too; no User-Agent is never known')
  const bob = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: BOB, password: 'bob-password-1234' }, headers: { 'user-agent': 'Firefox' } })
  t.equal(bob.statusCode, 200)
  t.equal(events[6]?.knownUserAgent, false, 'another user\'s sessions do not count')
})

t.test('without a newSession listener no session list is read', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  let listed = 0
  const store: TokenStore = { ...pollOnly(memory), listUserSessions: async (userId, now) => { listed++; return await memory.listUserSessions(userId, now) } }
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ store }))
  t.teardown(() => app.close())
  await login(app)
  t.equal(listed, 0, 'no listener: no read')
  app.tokenAuth.events.on('newSession', () => {})
  await login(app)
  t.equal(listed, 1, 'one read with a listener')
})

t.test('the cap a session service asks for: none without a maximum, end-least-recent by default', async (t) => {
  t.equal(sessionLimitOf({}, 1000), undefined)
  t.same(sessionLimitOf({ maxSessionsPerUser: 2 }, 1000), { max: 2, policy: 'end-least-recent', keepRevocationFor: 1000 })
  t.same(sessionLimitOf({ maxSessionsPerUser: 2, sessionLimitPolicy: 'refuse' }, 5), { max: 2, policy: 'refuse', keepRevocationFor: 5 })
})
