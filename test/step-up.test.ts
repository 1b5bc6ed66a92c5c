import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'
import {
  assertBootFails, baseOptions, BOB, BOB_PASSWORD, decodePayload, handClock, login, PASSWORD, refresh, refreshCookie, USER_ID, USERNAME
} from './helpers.js'

// Step-up authentication (docs/design.md, «Step-up authentication»): requireAuth's RFC 9470
// challenge, and POST /auth/reauthenticate that answers it.

const INSUFFICIENT = 'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION'
const TOO_OLD = 'Bearer error="insufficient_user_authentication", error_description="a more recent authentication is required", max_age=300'
const TOO_WEAK = 'Bearer error="insufficient_user_authentication", error_description="a different authentication level is required", acr_values="mfa hwk"'
/** The second factor, appended to the password: verifyCredentials then names acr `mfa`. */
const OTP = '#123456'

/** alice and bob; a password with the OTP suffix authenticates with acr `mfa`, amr `pwd otp`. */
function options (overrides: Partial<TokenAuthOptions> = {}): TokenAuthOptions {
  const base = baseOptions()
  return baseOptions({
    verifyCredentials: async (username, password, request) => {
      const mfa = password.endsWith(OTP)
      const user = await base.verifyCredentials!(username, mfa ? password.slice(0, -OTP.length) : password, request)
      return user === null ? null : mfa ? { ...user, acr: 'mfa', amr: ['pwd', 'otp'] } : { ...user, amr: ['pwd'] }
    },
    ...overrides
  })
}

/** An app with `GET /recent` (maxAge 300 s), `GET /strong` (acr mfa or hwk) and `GET /me` (authenticate). */
async function app (t: Test, overrides: Partial<TokenAuthOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(tokenAuth, options(overrides))
  app.get('/recent', { onRequest: app.tokenAuth.requireAuth({ maxAge: 300 }) }, async (request) => ({ authTime: request.user.auth_time }))
  app.get('/strong', { onRequest: app.tokenAuth.requireAuth({ acr: ['mfa', 'hwk'] }) }, async (request) => ({ acr: request.user.acr }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ sid: request.user.sid }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

const get = (app: FastifyInstance, url: string, accessToken: string) =>
  app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${accessToken}` } })

function reauthenticate (app: FastifyInstance, refreshToken: string, username = USERNAME, password = PASSWORD, extra: Record<string, unknown> = {}) {
  return app.inject({ method: 'POST', url: '/auth/reauthenticate', cookies: { refresh_token: refreshToken }, payload: { username, password, ...extra } })
}

async function sessionIds (app: FastifyInstance, accessToken: string): Promise<string[]> {
  const response = await get(app, '/auth/sessions', accessToken)
  return response.json().sessions.map((session: { id: string }) => session.id)
}

t.test('a session authenticated longer ago than maxAge gets the RFC 9470 challenge; re-authentication clears it in the same session', async (t) => {
  const clock = handClock(t)
  const server = await app(t)
  const reauthenticated: unknown[] = []
  server.tokenAuth.events.on('reauthenticated', (event) => reauthenticated.push(event))
  const loggedInAt = clock.now()
  const { accessToken, refreshToken } = await login(server)
  t.equal(decodePayload(accessToken).auth_time, Math.floor(loggedInAt / 1000), 'auth_time is the login, in seconds')
  t.same(decodePayload(accessToken).amr, ['pwd'], 'amr as verifyCredentials named it')
  t.notOk('acr' in decodePayload(accessToken), 'no acr when none was named')
  t.equal((await get(server, '/recent', accessToken)).statusCode, 200, 'fresh enough at first')
  clock.advance(300_000)
  t.equal((await get(server, '/recent', accessToken)).statusCode, 200, 'exactly maxAge is still enough')

  clock.advance(1000)
  const refused = await get(server, '/recent', accessToken)
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, INSUFFICIENT)
  t.equal(refused.headers['www-authenticate'], TOO_OLD, 'the exact RFC 9470 challenge')
  t.equal((await get(server, '/me', accessToken)).statusCode, 200, 'routes without step-up still take the token')

  // A refresh does not make the authentication recent.
  const refreshed = await refresh(server, refreshToken)
  const refreshedAccess = refreshed.json().accessToken
  t.equal(decodePayload(refreshedAccess).auth_time, Math.floor(loggedInAt / 1000), 'a refresh keeps auth_time')
  t.equal((await get(server, '/recent', refreshedAccess)).statusCode, 401, 'and so still refused')

  const [sid] = await sessionIds(server, refreshedAccess)
  const response = await reauthenticate(server, refreshCookie(refreshed)!.value)
  t.equal(response.statusCode, 200)
  t.same(Object.keys(response.json()).sort(), ['accessToken', 'expiresIn', 'tokenType'], 'the login\'s response')
  t.equal(response.headers['cache-control'], 'no-store')
  const fresh = response.json().accessToken
  t.equal(decodePayload(fresh).auth_time, Math.floor(clock.now() / 1000), 'a new auth_time')
  t.equal(decodePayload(fresh).sid, sid, 'the same session')
  t.same(await sessionIds(server, fresh), [sid], 'still one session, with the same id')
  t.equal((await get(server, '/recent', fresh)).statusCode, 200, 'the challenge is met')
  t.ok(refreshCookie(response)?.value, 'a new refresh token in the cookie')
  t.same(reauthenticated, [{ userId: USER_ID, sessionId: sid, ip: '127.0.0.1', userAgent: 'lightMyRequest' }], 'one reauthenticated event, without acr')
  const next = await refresh(server, refreshCookie(response)!.value)
  t.equal(decodePayload(next.json().accessToken).auth_time, Math.floor(clock.now() / 1000), 'the next refresh carries the new auth_time')
})

t.test('wrong credentials: 401 and a loginFailed event, the session untouched', async (t) => {
  const server = await app(t)
  const failed: unknown[] = []
  server.tokenAuth.events.on('loginFailed', (event) => failed.push(event))
  const { refreshToken } = await login(server)
  const response = await reauthenticate(server, refreshToken, USERNAME, 'wrong-password')
  t.equal(response.statusCode, 401)
  t.equal(response.json().code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
  t.same(failed, [{ username: USERNAME, ip: '127.0.0.1', userAgent: 'lightMyRequest' }])
  t.equal((await refresh(server, refreshToken)).statusCode, 200, 'the refresh token was not rotated')
})

t.test('a user whose credentials name no claims: re-authentication replaces the claims with none, as loadUser does', async (t) => {
  let withClaims = true
  const base = baseOptions()
  const server = await app(t, {
    verifyCredentials: async (username, password, request) => {
      const user = await base.verifyCredentials!(username, password, request)
      return user === null || withClaims ? user : { id: user.id }
    }
  })
  const { accessToken, refreshToken } = await login(server)
  t.equal(decodePayload(accessToken).username, USERNAME, 'login signed the claims')
  withClaims = false
  const response = await reauthenticate(server, refreshToken)
  t.equal(response.statusCode, 200)
  const claims = decodePayload(response.json().accessToken)
  t.equal(claims.username, undefined, 'no claims after the re-authentication')
  t.equal(claims.sub, USER_ID)
})

t.test('another user\'s credentials: 403, the session untouched', async (t) => {
  const server = await app(t)
  const { refreshToken } = await login(server)
  const response = await reauthenticate(server, refreshToken, BOB, BOB_PASSWORD)
  t.equal(response.statusCode, 403)
  t.equal(response.json().code, 'FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH')
  t.equal((await refresh(server, refreshToken)).statusCode, 200, 'the refresh token was not rotated')
})

t.test('throttled like login, on the same counters', async (t) => {
  const server = await app(t, { loginRateLimit: { max: 3, timeWindow: 60_000 } })
  const { refreshToken } = await login(server)
  t.equal((await reauthenticate(server, refreshToken, USERNAME, 'wrong')).statusCode, 401, 'attempt 2 of 3')
  t.equal((await reauthenticate(server, refreshToken, USERNAME, 'wrong')).statusCode, 401, 'attempt 3 of 3')
  const throttled = await reauthenticate(server, refreshToken)
  t.equal(throttled.statusCode, 429, 'the right password is refused too')
  t.equal(throttled.json().code, 'FST_TOKEN_AUTH_LOGIN_THROTTLED')
  t.ok(Number(throttled.headers['retry-after']) > 0, 'Retry-After')
  const loginAfter = await server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(loginAfter.statusCode, 429, 'login counts against the same limit')
})

t.test('the per-account throttle counts re-authentications too', async (t) => {
  const server = await app(t, { loginRateLimit: false, accountRateLimit: { max: 2, timeWindow: 60_000 } })
  const { refreshToken } = await login(server)
  t.equal((await reauthenticate(server, refreshToken, USERNAME, 'wrong')).statusCode, 401)
  const throttled = await reauthenticate(server, refreshToken)
  t.equal(throttled.statusCode, 429)
  t.equal(throttled.json().code, 'FST_TOKEN_AUTH_LOGIN_THROTTLED')
})

t.test('a grace answer is refused as superseded: nothing re-authenticated', async (t) => {
  const clock = handClock(t)
  const server = await app(t)
  const { refreshToken } = await login(server)
  const loggedInAt = clock.now()
  const rotated = await refresh(server, refreshToken)
  clock.advance(1000)
  const response = await reauthenticate(server, refreshToken)
  t.equal(response.statusCode, 401)
  t.equal(response.json().code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED')
  t.equal(refreshCookie(response), undefined, 'the cookie is left to the parallel response')
  const next = await refresh(server, refreshCookie(rotated)!.value)
  t.equal(next.statusCode, 200, 'the current token still works')
  t.equal(decodePayload(next.json().accessToken).auth_time, Math.floor(loggedInAt / 1000), 'auth_time unchanged')
})

t.test('refresh-token errors as on the refresh route', async (t) => {
  const server = await app(t)
  const missing = await server.inject({ method: 'POST', url: '/auth/reauthenticate', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN')
  const invalid = await reauthenticate(server, 'not-a-refresh-token')
  t.equal(invalid.statusCode, 401)
  t.equal(invalid.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
  t.equal(refreshCookie(invalid)?.value, '', 'a dead refresh cookie is dropped, as by the refresh route')
  const { refreshToken, accessToken } = await login(server)
  await server.tokenAuth.revokeSession(decodePayload(accessToken).sid as string)
  const revoked = await reauthenticate(server, refreshToken)
  t.equal(revoked.statusCode, 401)
  t.equal(revoked.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'an ended session')
  t.equal(refreshCookie(revoked)?.value, '', 'its cookie dropped')
  const crossSite = await server.inject({
    method: 'POST', url: '/auth/reauthenticate', cookies: { refresh_token: refreshToken }, headers: { origin: 'https://evil.example' }, payload: { username: USERNAME, password: PASSWORD }
  })
  t.equal(crossSite.statusCode, 403, 'the same cross-site check')
  t.equal(crossSite.json().code, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST')
})

t.test('an acr requirement: refused with acr_values, met after a re-authentication with a second factor', async (t) => {
  const server = await app(t)
  const reauthenticated: unknown[] = []
  server.tokenAuth.events.on('reauthenticated', (event) => reauthenticated.push(event))
  const { accessToken, refreshToken } = await login(server)
  const refused = await get(server, '/strong', accessToken)
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, INSUFFICIENT)
  t.equal(refused.headers['www-authenticate'], TOO_WEAK)
  const response = await reauthenticate(server, refreshToken, USERNAME, PASSWORD + OTP)
  t.equal(response.statusCode, 200)
  const strong = response.json().accessToken
  t.equal(decodePayload(strong).acr, 'mfa')
  t.same(decodePayload(strong).amr, ['pwd', 'otp'])
  const allowed = await get(server, '/strong', strong)
  t.equal(allowed.statusCode, 200)
  t.same(allowed.json(), { acr: 'mfa' })
  t.match(reauthenticated, [{ userId: USER_ID, acr: 'mfa' }], 'the event names the acr')
  const refused2 = await get(server, '/strong', (await login(server)).accessToken)
  t.equal(refused2.statusCode, 401, 'a session of a weaker login is refused')
})

t.test('both requirements in one challenge', async (t) => {
  const server = Fastify()
  await server.register(tokenAuth, options())
  server.get('/both', { onRequest: server.tokenAuth.requireAuth({ maxAge: 60, acr: ['mfa'] }) }, async () => ({ ok: true }))
  t.teardown(() => server.close())
  const weak = await get(server, '/both', (await login(server)).accessToken)
  t.equal(weak.headers['www-authenticate'], 'Bearer error="insufficient_user_authentication", error_description="a different authentication level is required", max_age=60, acr_values="mfa"')
  const strong = await get(server, '/both', (await login(server, USERNAME, PASSWORD + OTP)).accessToken)
  t.equal(strong.statusCode, 200)
  const open = Fastify()
  await open.register(tokenAuth, options())
  open.get('/any', { onRequest: open.tokenAuth.requireAuth() }, async () => ({ ok: true }))
  t.teardown(() => open.close())
  t.equal((await get(open, '/any', (await login(open)).accessToken)).statusCode, 200, 'no requirement: authenticate alone')
  const missing = await open.inject({ method: 'GET', url: '/any' })
  t.equal(missing.statusCode, 401, 'no token: refused as by authenticate')
  t.equal(missing.headers['www-authenticate'], 'Bearer')
})

t.test('a token without auth_time (signAccessToken) is not recent enough', async (t) => {
  const server = await app(t)
  const { accessToken } = await login(server)
  const signed = server.tokenAuth.signAccessToken(USER_ID, decodePayload(accessToken).sid as string)
  t.notOk('auth_time' in decodePayload(signed.token))
  const response = await get(server, '/recent', signed.token)
  t.equal(response.statusCode, 401)
  t.equal(response.headers['www-authenticate'], TOO_OLD)
})

t.test('requireAuth refuses options it cannot state', async (t) => {
  const server = await app(t)
  t.throws(() => server.tokenAuth.requireAuth({ maxAge: -1 }), TypeError)
  t.throws(() => server.tokenAuth.requireAuth({ maxAge: 1.5 }), TypeError)
  t.throws(() => server.tokenAuth.requireAuth({ acr: [] }), TypeError)
  t.throws(() => server.tokenAuth.requireAuth({ acr: ['a b'] }), TypeError, 'no space inside a value')
  t.throws(() => server.tokenAuth.requireAuth({ acr: ['"'] }), TypeError, 'no quote')
  t.throws(() => server.tokenAuth.requireAuth({ acr: 'mfa' as unknown as string[] }), TypeError)
})

t.test('the body transport: the refresh token in the body, its successor too', async (t) => {
  const server = await app(t, { refreshTokenTransport: 'body' })
  const loggedIn = await server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  const response = await server.inject({
    method: 'POST', url: '/auth/reauthenticate', payload: { username: USERNAME, password: PASSWORD, refreshToken: loggedIn.json().refreshToken }
  })
  t.equal(response.statusCode, 200)
  t.type(response.json().refreshToken, 'string')
  t.equal(refreshCookie(response), undefined, 'no cookie')
  const extra = await server.inject({ method: 'POST', url: '/auth/reauthenticate', payload: { username: USERNAME, password: PASSWORD, refreshToken: 'x', other: 1 } })
  t.equal(extra.statusCode, 400, 'strict body')
})

t.test('the transport "both": a cookie session may ask for the body', async (t) => {
  const server = await app(t, { refreshTokenTransport: 'both' })
  const { refreshToken } = await login(server)
  const response = await reauthenticate(server, refreshToken, USERNAME, PASSWORD, { refreshTokenTransport: 'body' })
  t.equal(response.statusCode, 200)
  t.type(response.json().refreshToken, 'string')
})

t.test('the OAuth 2.0 format: errors as RFC 6749 §5.2', async (t) => {
  const server = await app(t, { responseFormat: 'oauth2' })
  const { refreshToken } = await login(server)
  const mismatch = await reauthenticate(server, refreshToken, BOB, BOB_PASSWORD)
  t.equal(mismatch.statusCode, 400)
  t.same(mismatch.json(), { error: 'invalid_grant', error_description: mismatch.json().error_description, code: 'FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH' })
  const ok = await reauthenticate(server, refreshToken)
  t.equal(ok.statusCode, 200)
  t.type(ok.json().access_token, 'string')
})

t.test('the route: renamed, left out, and left out without verifyCredentials', async (t) => {
  const renamed = await app(t, { routes: { reauthenticate: { path: '/step-up' } } })
  const { refreshToken } = await login(renamed)
  t.equal((await renamed.inject({ method: 'POST', url: '/auth/step-up', cookies: { refresh_token: refreshToken }, payload: { username: USERNAME, password: PASSWORD } })).statusCode, 200)
  const off = await app(t, { routes: { reauthenticate: false } })
  t.equal((await reauthenticate(off, (await login(off)).refreshToken)).statusCode, 404)
  const noCredentials = Fastify()
  const { verifyCredentials: _unused, ...withoutCredentials } = baseOptions()
  await noCredentials.register(tokenAuth, { ...withoutCredentials, routes: { login: false } })
  t.teardown(() => noCredentials.close())
  t.equal((await noCredentials.inject({ method: 'POST', url: '/auth/reauthenticate', payload: {} })).statusCode, 404, 'not registered')
  await assertBootFails(t, { verifyCredentials: undefined, routes: { login: false, reauthenticate: {} } }, 'verifyCredentials', 'asked for without verifyCredentials')
})

t.test('issueSession records acr and amr as given, and refuses them of the wrong type', async (t) => {
  const server = await app(t)
  const tokens = await server.tokenAuth.issueSession({ id: USER_ID, acr: 'mfa', amr: ['hwk'] })
  t.equal(decodePayload(tokens.accessToken).acr, 'mfa')
  t.same(decodePayload(tokens.accessToken).amr, ['hwk'])
  t.equal((await get(server, '/strong', tokens.accessToken)).statusCode, 200)
  await t.rejects(server.tokenAuth.issueSession({ id: USER_ID, acr: 1 as unknown as string }), TypeError)
  await t.rejects(server.tokenAuth.issueSession({ id: USER_ID, amr: 'pwd' as unknown as string[] }), TypeError)
  await t.rejects(server.tokenAuth.issueSession({ id: USER_ID, amr: [1] as unknown as string[] }), TypeError)
  t.same(await server.tokenAuth.listSessions(USER_ID), [{ ...(await server.tokenAuth.listSessions(USER_ID))[0] }], 'nothing stored for the refused ones')
})

t.test('over real HTTP: the challenge reaches the client as sent', async (t) => {
  const clock = handClock(t)
  const server = await app(t)
  const { accessToken } = await login(server)
  clock.advance(301_000)
  const address = await server.listen({ port: 0, host: '127.0.0.1' })
  const response = await fetch(`${address}/recent`, { headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(response.status, 401)
  t.equal(response.headers.get('www-authenticate'), TOO_OLD)
  t.equal((await response.json() as { code: string }).code, INSUFFICIENT)
})
