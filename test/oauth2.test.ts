import type { InjectOptions } from 'fastify'
import t from 'tap'
import { assertBootFails, build, PASSWORD, refreshCookie, USERNAME } from './helpers.js'

// responseFormat 'oauth2': login and refresh behave as an RFC 6749 token endpoint.

const FORM = 'application/x-www-form-urlencoded'

function form (fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString()
}

t.test('token responses carry RFC 6749 §5.1 fields; refresh_token only when it travels in the body', async (t) => {
  const app = await build(t, { responseFormat: 'oauth2', refreshTokenTransport: 'both' })
  const cookieLogin = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(cookieLogin.statusCode, 200)
  t.same(Object.keys(cookieLogin.json()).sort(), ['access_token', 'expires_in', 'token_type'])
  t.match(cookieLogin.json(), { token_type: 'Bearer', expires_in: 900 })
  t.ok(refreshCookie(cookieLogin)?.value, 'cookie transport: the refresh token is in the cookie')
  t.equal(cookieLogin.headers['cache-control'], 'no-store')

  const bodyLogin = await app.inject({
    method: 'POST', url: '/auth/login', payload: { grant_type: 'password', username: USERNAME, password: PASSWORD, refreshTokenTransport: 'body' }
  })
  t.equal(bodyLogin.statusCode, 200)
  t.same(Object.keys(bodyLogin.json()).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
  t.notOk(refreshCookie(bodyLogin), 'body transport: no cookie')

  const me = await app.inject({ url: '/me', headers: { authorization: `Bearer ${bodyLogin.json().access_token as string}` } })
  t.equal(me.statusCode, 200)
})

t.test('a form-encoded refresh (RFC 6749 §6) rotates; a refresh_token whose successor was used is then invalid_grant', async (t) => {
  const app = await build(t, { responseFormat: 'oauth2', refreshTokenTransport: 'body', reuseGrace: 0 })
  const login = await app.inject({
    method: 'POST', url: '/auth/login', headers: { 'content-type': FORM }, payload: form({ grant_type: 'password', username: USERNAME, password: PASSWORD, client_id: 'cli' })
  })
  t.equal(login.statusCode, 200)
  const first = login.json().refresh_token as string
  const refreshed = await app.inject({
    method: 'POST', url: '/auth/refresh', headers: { 'content-type': FORM }, payload: form({ grant_type: 'refresh_token', refresh_token: first, scope: 'ignored' })
  })
  t.equal(refreshed.statusCode, 200)
  t.not(refreshed.json().refresh_token, first)
  t.equal(refreshed.json().token_type, 'Bearer')
  // The successor is used too: `first` is now two generations old, which is theft (a predecessor
  // whose successor was never used would be recovered instead).
  const second = await app.inject({
    method: 'POST', url: '/auth/refresh', headers: { 'content-type': FORM }, payload: form({ grant_type: 'refresh_token', refresh_token: refreshed.json().refresh_token })
  })
  t.equal(second.statusCode, 200)

  const replay = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { grant_type: 'refresh_token', refresh_token: first } })
  t.equal(replay.statusCode, 400, '§5.2: invalid grants are 400')
  t.same(replay.json(), {
    error: 'invalid_grant',
    error_description: 'Refresh token already used: the session has been ended',
    code: 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED'
  })
  t.equal(replay.headers['cache-control'], 'no-store')
  const after = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { grant_type: 'refresh_token', refresh_token: second.json().refresh_token } })
  t.equal(after.statusCode, 400, 'the session ended: its newest refresh_token is invalid_grant too')
  t.match(after.json(), { error: 'invalid_grant', code: 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN' })
})

t.test('§5.2 errors: invalid_grant, invalid_request, unsupported_grant_type; other statuses keep theirs', async (t) => {
  const app = await build(t, { responseFormat: 'oauth2', refreshTokenTransport: 'body', loginRateLimit: { max: 3, timeWindow: 60_000 } })
  const cases: Array<[string, InjectOptions, number, string, string]> = [
    ['wrong password', { method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: 'nope' } }, 400, 'invalid_grant', 'FST_TOKEN_AUTH_INVALID_CREDENTIALS'],
    ['garbage refresh token', { method: 'POST', url: '/auth/refresh', payload: { refresh_token: 'garbage' } }, 400, 'invalid_grant', 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'],
    ['no refresh token', { method: 'POST', url: '/auth/refresh', payload: {} }, 400, 'invalid_request', 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN'],
    ['grant_type password on refresh', { method: 'POST', url: '/auth/refresh', payload: { grant_type: 'password', refresh_token: 'x' } }, 400, 'unsupported_grant_type', 'FST_TOKEN_AUTH_UNSUPPORTED_GRANT_TYPE'],
    ['grant_type client_credentials on login', { method: 'POST', url: '/auth/login', payload: { grant_type: 'client_credentials', username: USERNAME, password: PASSWORD } }, 400, 'unsupported_grant_type', 'FST_TOKEN_AUTH_UNSUPPORTED_GRANT_TYPE'],
    ['unknown field', { method: 'POST', url: '/auth/refresh', payload: { refreshToken: 'camelCase is not the OAuth name' } }, 400, 'invalid_request', 'FST_ERR_VALIDATION'],
    ['a parameter sent twice', { method: 'POST', url: '/auth/refresh', headers: { 'content-type': FORM }, payload: 'refresh_token=a&refresh_token=b' }, 400, 'invalid_request', 'FST_TOKEN_AUTH_INVALID_REQUEST_BODY'],
    ['text/plain', { method: 'POST', url: '/auth/refresh', headers: { 'content-type': 'text/plain' }, payload: 'refresh_token=a' }, 415, 'invalid_request', 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['cross-site', { method: 'POST', url: '/auth/refresh', headers: { 'sec-fetch-site': 'cross-site' }, payload: { refresh_token: 'a' } }, 403, 'invalid_request', 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST']
  ]
  for (const [name, request, status, error, code] of cases) {
    const response = await app.inject(request)
    t.equal(response.statusCode, status, name)
    t.match(response.json(), { error, code, error_description: String }, name)
    t.notOk('access_token' in response.json(), `${name}: no token`)
  }
  // Throttling keeps its 429 and Retry-After; the body says invalid_request with our code.
  let throttled
  for (let i = 0; i < 3; i++) throttled = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'x', password: 'y' } })
  t.equal(throttled!.statusCode, 429)
  t.ok(Number(throttled!.headers['retry-after']) > 0)
  t.match(throttled!.json(), { error: 'invalid_request', code: 'FST_TOKEN_AUTH_LOGIN_THROTTLED' })
})

t.test('a store outage is 503 temporarily_unavailable with Retry-After; a crash is 500 server_error without details', async (t) => {
  let mode: 'down' | 'crash' = 'down'
  const app = await build(t, {
    responseFormat: 'oauth2',
    refreshTokenTransport: 'body',
    verifyCredentials: async () => {
      if (mode === 'crash') throw new Error('database password is hunter2')
      return { id: 'user-1' }
    }
  })
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  const refreshToken = login.json().refresh_token as string
  const rotate = app.tokenAuth.store.rotate.bind(app.tokenAuth.store)
  app.tokenAuth.store.rotate = async () => { throw new Error('ECONNREFUSED 127.0.0.1:6379') }
  const down = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: refreshToken } })
  t.equal(down.statusCode, 503)
  t.equal(down.headers['retry-after'], '1')
  t.match(down.json(), { error: 'temporarily_unavailable', code: 'FST_TOKEN_AUTH_STORE_UNAVAILABLE' })
  t.notMatch(down.body, /ECONNREFUSED/)
  app.tokenAuth.store.rotate = rotate

  mode = 'crash'
  const crash = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(crash.statusCode, 500)
  t.same(crash.json(), { error: 'server_error', error_description: 'Internal server error', code: 'FST_TOKEN_AUTH_INTERNAL' })
})

t.test('the default format is unchanged and refuses forms; logout and sessions errors are never reshaped', async (t) => {
  const plain = await build(t, { refreshTokenTransport: 'body' })
  const formLogin = await plain.inject({ method: 'POST', url: '/auth/login', headers: { 'content-type': FORM }, payload: form({ username: USERNAME, password: PASSWORD }) })
  t.equal(formLogin.statusCode, 415)
  t.equal(formLogin.json().code, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')

  const oauth = await build(t, { responseFormat: 'oauth2', refreshTokenTransport: 'body' })
  const sessions = await oauth.inject({ url: '/auth/sessions' })
  t.equal(sessions.statusCode, 401)
  t.equal(sessions.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN', 'bearer-protected routes keep RFC 6750 errors')
  const logout = await oauth.inject({ method: 'POST', url: '/auth/logout', payload: { refresh_token: 'garbage' } })
  t.equal(logout.statusCode, 204, 'logout takes the same refresh_token field and keeps RFC 7009 semantics')
  const camel = await oauth.inject({ method: 'POST', url: '/auth/logout', payload: { refreshToken: 'garbage' } })
  t.equal(camel.statusCode, 400, 'one field name per format')
  t.equal(camel.json().code, 'FST_ERR_VALIDATION', 'logout errors are not reshaped')
})

t.test('cookie transport: the §5.1 body has no refresh_token, the cookie carries it; no refresh route is fine too', async (t) => {
  const app = await build(t, { responseFormat: 'oauth2' })
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(login.statusCode, 200)
  t.same(Object.keys(login.json()).sort(), ['access_token', 'expires_in', 'token_type'])
  const cookie = refreshCookie(login)!.value
  const refreshed = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: cookie }, payload: { grant_type: 'refresh_token' } })
  t.equal(refreshed.statusCode, 200)
  t.notOk('refresh_token' in refreshed.json())
  t.not(refreshCookie(refreshed)?.value, cookie, 'rotated in the cookie')

  const noRefresh = await build(t, { responseFormat: 'oauth2', routes: { refresh: false }, refreshTokenTransport: 'both' })
  t.equal((await noRefresh.inject({ method: 'POST', url: '/auth/refresh', payload: {} })).statusCode, 404)
})

t.test('responseFormat and routes.refresh.method are validated', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['bad format', { responseFormat: 'oauth' }, 'responseFormat', /must be one of/],
    ['bad method', { routes: { refresh: { method: 'PUT' } } }, 'routes.refresh.method', /must be one of/],
    ['GET with body transport', { routes: { refresh: { method: 'GET' } }, refreshTokenTransport: 'both' }, 'routes.refresh.method', /GET needs refreshTokenTransport 'cookie'/],
    ['method on another route', { routes: { login: { method: 'GET' } } }, 'routes.login.method', /unknown route option/]
  ]
  for (const [name, overrides, option, message] of cases) {
    t.match(await assertBootFails(t, overrides, option, name), message, name)
  }
})
