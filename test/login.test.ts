import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import type { AuthUser, LoginEvent, LoginFailedEvent } from '../lib/index.js'
import { build, decodePayload, PASSWORD, refresh, refreshCookie, refreshTokenOf, USER_ID, USERNAME } from './helpers.js'

const CREDENTIALS = { username: USERNAME, password: PASSWORD }
const DEFAULT_REFRESH_TTL = 14 * 24 * 60 * 60

function postLogin (app: FastifyInstance, options: Partial<InjectOptions> = {}, url = '/auth/login') {
  return app.inject({ method: 'POST', url, payload: CREDENTIALS, ...options } as InjectOptions)
}

/** POSTs a raw body to /auth/login; `contentType: null` sends no Content-Type at all. */
function rawLogin (app: FastifyInstance, payload: string, contentType: string | null = 'application/json') {
  return app.inject({
    method: 'POST',
    url: '/auth/login',
    headers: contentType === null ? {} : { 'content-type': contentType },
    payload
  })
}

/** A 4xx with the given status and code, and no refresh cookie (no token issued). */
function assertRefused (t: Test, response: LightMyRequestResponse, status: number, code: string, label = '') {
  t.equal(response.statusCode, status, `${label} status ${status}`)
  t.equal(response.json().code, code, `${label} code ${code}`)
  t.equal(response.headers['set-cookie'], undefined, `${label} no Set-Cookie`)
  t.notMatch(response.body, /accessToken|eyJ/, `${label} no token in the body`)
}

t.test('successful login: body shape, cache headers and the refresh cookie', async (t) => {
  const app = await build(t)
  const response = await postLogin(app)
  t.equal(response.statusCode, 200)
  const body = response.json()
  t.same(Object.keys(body).sort(), ['accessToken', 'expiresIn', 'tokenType'], 'nothing else in the body')
  t.type(body.accessToken, 'string')
  t.equal(body.tokenType, 'Bearer')
  t.equal(body.expiresIn, 900)
  t.equal(decodePayload(body.accessToken).sub, USER_ID)
  t.equal(response.headers['cache-control'], 'no-store')
  t.equal(response.headers.pragma, 'no-cache')

  const setCookie = response.headers['set-cookie']
  t.type(setCookie, 'string', 'exactly one Set-Cookie')
  t.ok(Buffer.byteLength(setCookie as string) < 4096, 'cookie under 4096 bytes')
  const cookie = refreshCookie(response)
  t.ok(cookie, 'refresh_token cookie set')
  // Opaque (docs/design.md, «Refresh tokens»): <session id>.<user id, base64url>.<id (22)><tag (22)>.
  t.match(cookie!.value, /^[\w-]{1,128}\.[\w-]+\.[\w-]{44}$/)
  t.same(refreshTokenOf(cookie!.value), { sub: USER_ID, sid: decodePayload(body.accessToken).sid, jti: cookie!.value.slice(-44, -22) })
  t.not(cookie!.value, body.accessToken)
  t.equal(cookie!.httpOnly, true, 'HttpOnly')
  t.equal(cookie!.secure, true, 'Secure')
  t.equal(cookie!.sameSite, 'Strict', 'SameSite=Strict')
  t.equal(cookie!.path, '/auth', 'Path=/auth')
  t.equal(cookie!.domain, undefined, 'no Domain')
  t.ok(Math.abs((cookie!.maxAge as number) - DEFAULT_REFRESH_TTL) <= 2, `Max-Age ${cookie!.maxAge} ≈ refreshTokenTtl`)

  // The access token works on a protected route.
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${body.accessToken}` } })
  t.equal(me.statusCode, 200)
  t.equal(me.json().id, USER_ID)
})

t.test('Max-Age follows a custom refreshTokenTtl', async (t) => {
  const app = await build(t, { refreshTokenTtl: 3600 })
  const cookie = refreshCookie(await postLogin(app))
  t.ok(Math.abs((cookie!.maxAge as number) - 3600) <= 2, `Max-Age ${cookie!.maxAge} ≈ 3600`)
})

t.test('unknown user and wrong password answer identically, without a cookie', async (t) => {
  const app = await build(t)
  const unknown = await postLogin(app, { payload: { username: 'mallory', password: PASSWORD } })
  const wrong = await postLogin(app, { payload: { username: USERNAME, password: 'wrong-password' } })
  for (const response of [unknown, wrong]) {
    assertRefused(t, response, 401, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
    t.equal(response.headers['cache-control'], 'no-store')
  }
  t.equal(unknown.body, wrong.body, 'identical bodies')
  t.same(Object.keys(unknown.headers).sort(), Object.keys(wrong.headers).sort(), 'identical header names')
  t.same(unknown.json(), {
    statusCode: 401, code: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS', error: 'Unauthorized', message: 'Invalid username or password'
  })
})

t.test('body validation: 400 and no cookie', async (t) => {
  let calls = 0
  const app = await build(t, {
    loginRateLimit: false,
    verifyCredentials: async () => { calls++; return { id: USER_ID } }
  })
  const invalid: Array<[string, unknown]> = [
    ['missing password', { username: USERNAME }],
    ['missing username', { password: PASSWORD }],
    ['empty object', {}],
    ['empty username', { username: '', password: PASSWORD }],
    ['empty password', { username: USERNAME, password: '' }],
    ['extra field', { ...CREDENTIALS, admin: true }],
    ['operator object', { username: { $ne: null }, password: PASSWORD }],
    ['number username (no coercion)', { username: 12345, password: PASSWORD }],
    ['boolean password', { username: USERNAME, password: true }],
    ['null password', { username: USERNAME, password: null }],
    ['array password', { username: USERNAME, password: [PASSWORD] }],
    ['array body', []],
    ['string body', 'alice'],
    ['null body', null],
    ['username of 257 characters', { username: 'u'.repeat(257), password: PASSWORD }]
  ]
  for (const [label, body] of invalid) {
    const response = await rawLogin(app, JSON.stringify(body))
    assertRefused(t, response, 400, 'FST_ERR_VALIDATION', label)
  }
  t.equal(calls, 0, 'verifyCredentials never called for an invalid body')
})

t.test('unparseable bodies: 400 and no cookie', async (t) => {
  const app = await build(t, { loginRateLimit: false })
  // Fastify's own codes: the body never reaches the schema, so these are not FST_ERR_VALIDATION.
  const cases: Array<[string, string, string]> = [
    ['malformed JSON', '{"username":"alice","password":', 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['empty body', '', 'FST_ERR_CTP_EMPTY_JSON_BODY'],
    ['__proto__ key', `{"__proto__":{"admin":true},"username":"${USERNAME}","password":"${PASSWORD}"}`, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['nested __proto__', `{"username":"${USERNAME}","password":"${PASSWORD}","x":{"__proto__":{"admin":true}}}`, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['constructor.prototype', `{"constructor":{"prototype":{"admin":true}},"username":"${USERNAME}","password":"${PASSWORD}"}`, 'FST_ERR_CTP_INVALID_JSON_BODY']
  ]
  for (const [label, payload, code] of cases) {
    assertRefused(t, await rawLogin(app, payload), 400, code, label)
  }
  t.equal(({} as Record<string, unknown>).admin, undefined, 'no prototype pollution')
})

t.test('only application/json: other media types are 415', async (t) => {
  const app = await build(t, { loginRateLimit: false })
  const json = JSON.stringify(CREDENTIALS)
  assertRefused(t, await rawLogin(app, json, 'text/plain'), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'text/plain')
  assertRefused(t, await rawLogin(app, json, 'text/plain;charset=UTF-8'), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'text/plain;charset')
  assertRefused(t, await rawLogin(app, `username=${USERNAME}&password=${PASSWORD}`, 'application/x-www-form-urlencoded'),
    415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'form-urlencoded')
  assertRefused(t, await rawLogin(app, json, 'multipart/form-data; boundary=x'), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'multipart')
  assertRefused(t, await rawLogin(app, json, null), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'no content-type')
  // The ordinary form a JSON client sends is accepted.
  const ok = await rawLogin(app, json, 'application/json; charset=utf-8')
  t.equal(ok.statusCode, 200, 'application/json; charset=utf-8 logs in')
})

t.test('odd application/json spellings never log in (CVE-2025-32442 / CVE-2026-25223 / GHSA-573f-x89g-hqp9)', async (t) => {
  const app = await build(t, { loginRateLimit: false })
  for (const contentType of ['application/json\t', ' Application/JSON ;', 'application/json;', 'application/jsonx', 'application/json; charset=latin1']) {
    const label = JSON.stringify(contentType)
    // Refused before any parser or validator sees the body, valid or not.
    const invalid = await rawLogin(app, JSON.stringify({ username: { $ne: null }, password: PASSWORD, admin: true }), contentType)
    assertRefused(t, invalid, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', `${label} invalid body`)
    const valid = await rawLogin(app, JSON.stringify(CREDENTIALS), contentType)
    assertRefused(t, valid, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', `${label} valid credentials`)
    t.notMatch(valid.body, /accessToken/, `${label} valid credentials: no access token`)
  }
  // Case differs only in letters the RFC makes case-insensitive: still JSON.
  const upper = await rawLogin(app, JSON.stringify(CREDENTIALS), 'Application/JSON')
  t.equal(upper.statusCode, 200, 'Application/JSON logs in')
})

t.test('a 2 MB body is refused with 413 before parsing', async (t) => {
  let calls = 0
  const app = await build(t, { verifyCredentials: async () => { calls++; return null } })
  const response = await rawLogin(app, JSON.stringify({ username: USERNAME, password: 'p'.repeat(2 * 1024 * 1024) }))
  assertRefused(t, response, 413, 'FST_ERR_CTP_BODY_TOO_LARGE')
  t.equal(calls, 0)
})

t.test('long passwords reach verifyCredentials intact; 1025+ characters are a 400', async (t) => {
  const seen: string[] = []
  const app = await build(t, {
    loginRateLimit: false,
    verifyCredentials: async (username, password) => {
      seen.push(password)
      return username === USERNAME && password.startsWith('x') ? { id: USER_ID } : null
    }
  })
  for (const length of [64, 1000, 1024]) {
    const password = 'x'.repeat(length - 1) + 'Z'
    const response = await postLogin(app, { payload: { username: USERNAME, password } })
    t.equal(response.statusCode, 200, `${length}-character password: 200`)
    t.ok(refreshCookie(response), `${length}-character password: cookie`)
    t.equal(seen.at(-1), password, `${length}-character password passed unchanged`)
  }
  const calls = seen.length
  for (const length of [1025, 5000]) {
    const response = await postLogin(app, { payload: { username: USERNAME, password: 'x'.repeat(length) } })
    assertRefused(t, response, 400, 'FST_ERR_VALIDATION', `${length}-character password`)
  }
  t.equal(seen.length, calls, 'verifyCredentials not called for oversize passwords')
})

t.test('GET /auth/login is 404 and never reads credentials from the query', async (t) => {
  let calls = 0
  const app = await build(t, { verifyCredentials: async () => { calls++; return { id: USER_ID } } })
  const response = await app.inject({ method: 'GET', url: `/auth/login?username=${USERNAME}&password=${PASSWORD}` })
  t.equal(response.statusCode, 404)
  t.equal(response.headers['set-cookie'], undefined)
  t.equal(calls, 0)
  const put = await app.inject({ method: 'PUT', url: '/auth/login', payload: CREDENTIALS })
  t.equal(put.statusCode, 404, 'PUT is 404 too')
})

t.test('login rate limit: the 4th attempt is 429, even with the correct password', async (t) => {
  let calls = 0
  const app = await build(t, {
    loginRateLimit: { max: 3, timeWindow: 60_000 },
    verifyCredentials: async (username, password) => {
      calls++
      return username === USERNAME && password === PASSWORD ? { id: USER_ID } : null
    }
  })
  for (let i = 1; i <= 3; i++) {
    const response = await postLogin(app, { payload: { username: USERNAME, password: `wrong-${i}` } })
    t.equal(response.statusCode, 401, `attempt ${i}: 401`)
    t.equal(response.json().code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
  }
  const throttled = await postLogin(app, { payload: { username: USERNAME, password: 'wrong-4' } })
  assertRefused(t, throttled, 429, 'FST_TOKEN_AUTH_LOGIN_THROTTLED', 'attempt 4')
  t.ok(throttled.headers['retry-after'], 'Retry-After header')
  t.ok(Number(throttled.headers['retry-after']) > 0 && Number(throttled.headers['retry-after']) <= 60, 'Retry-After in seconds within the window')
  t.equal(throttled.headers['cache-control'], 'no-store')

  const correct = await postLogin(app)
  assertRefused(t, correct, 429, 'FST_TOKEN_AUTH_LOGIN_THROTTLED', 'correct password while throttled')
  t.ok(correct.headers['retry-after'])
  t.equal(calls, 3, 'verifyCredentials not called while throttled (no oracle)')
})

t.test('the default rate limit throttles after 10 attempts', async (t) => {
  const app = await build(t)
  for (let i = 0; i < 10; i++) {
    t.equal((await postLogin(app, { payload: { username: USERNAME, password: 'nope' } })).statusCode, 401)
  }
  const response = await postLogin(app)
  assertRefused(t, response, 429, 'FST_TOKEN_AUTH_LOGIN_THROTTLED')
  t.ok(response.headers['retry-after'])
})

t.test('loginRateLimit: false and accountRateLimit: false never throttle', async (t) => {
  const app = await build(t, { loginRateLimit: false, accountRateLimit: false })
  const statuses = new Set<number>()
  for (let i = 0; i < 30; i++) {
    statuses.add((await postLogin(app, { payload: { username: USERNAME, password: 'nope' } })).statusCode)
  }
  t.same([...statuses], [401], 'thirty failures, no 429')
  const ok = await postLogin(app)
  t.equal(ok.statusCode, 200)
  t.equal(ok.headers['x-ratelimit-limit'], undefined, 'no rate-limit headers')
})

t.test('login and loginFailed events carry client info and never secrets', async (t) => {
  const app = await build(t)
  const logins: LoginEvent[] = []
  const failures: LoginFailedEvent[] = []
  app.tokenAuth.events.on('login', (event) => logins.push(event))
  app.tokenAuth.events.on('loginFailed', (event) => failures.push(event))

  const ok = await postLogin(app, { headers: { 'user-agent': 'LoginTest/1.0' } })
  t.equal(ok.statusCode, 200)
  t.equal(logins.length, 1)
  const sid = decodePayload(ok.json().accessToken).sid
  t.same(logins[0], { userId: USER_ID, sessionId: sid, ip: '127.0.0.1', userAgent: 'LoginTest/1.0' })

  const failed = await postLogin(app, { payload: { username: 'mallory', password: 'guess-123' }, headers: { 'user-agent': 'Attacker/2.0' } })
  t.equal(failed.statusCode, 401)
  t.equal(failures.length, 1)
  t.same(failures[0], { username: 'mallory', ip: '127.0.0.1', userAgent: 'Attacker/2.0' })
  t.equal(logins.length, 1, 'no login event for a failure')

  const serialized = JSON.stringify([logins, failures])
  t.notOk(serialized.includes(PASSWORD), 'no password in events')
  t.notOk(serialized.includes('guess-123'), 'no failed password in events')
  t.notOk(serialized.includes(ok.json().accessToken), 'no access token in events')
  t.notOk(serialized.includes(refreshCookie(ok)!.value), 'no refresh token in events')
  t.notOk(serialized.includes('eyJ'), 'no JWT at all in events')
  for (const event of [...logins, ...failures]) t.notOk('password' in event, 'no password field')
})

t.test('a renamed login route', async (t) => {
  const app = await build(t, { routes: { login: { path: '/signin' } } })
  const response = await postLogin(app, {}, '/auth/signin')
  t.equal(response.statusCode, 200)
  t.equal(refreshCookie(response)!.path, '/auth')
  t.equal((await postLogin(app)).statusCode, 404, 'the default path is gone')
  // The other routes keep their defaults.
  const rotated = await refresh(app, refreshCookie(response)!.value)
  t.equal(rotated.statusCode, 200)
})

t.test('a custom prefix: routes and cookie Path follow it', async (t) => {
  const app = await build(t, { prefix: '/api/auth' })
  const response = await postLogin(app, {}, '/api/auth/login')
  t.equal(response.statusCode, 200)
  const cookie = refreshCookie(response)!
  t.equal(cookie.path, '/api/auth', 'cookie Path=/api/auth')
  t.equal((await postLogin(app)).statusCode, 404, '/auth/login is gone')
  const rotated = await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: cookie.value } })
  t.equal(rotated.statusCode, 200)
  t.equal(refreshCookie(rotated)!.path, '/api/auth')
})

t.test('routes: { login: false } removes the route and does not need verifyCredentials', async (t) => {
  const app = await build(t, { routes: { login: false }, verifyCredentials: undefined })
  const response = await postLogin(app)
  t.equal(response.statusCode, 404)
  t.equal(response.headers['set-cookie'], undefined)
  // The other routes stay.
  const tokens = await app.tokenAuth.issueSession({ id: USER_ID })
  const rotated = await refresh(app, tokens.refreshToken)
  t.equal(rotated.statusCode, 200, 'refresh route still there')
})

t.test('verifyCredentials is required while the login route is enabled', async (t) => {
  await t.rejects(build(t, { verifyCredentials: undefined }), { code: 'FST_TOKEN_AUTH_INVALID_OPTION' })
})

t.test('cookie.hostPrefix names the cookie __Host-refresh_token with Path=/ and Secure', async (t) => {
  const app = await build(t, { cookie: { hostPrefix: true } })
  const response = await postLogin(app)
  t.equal(response.statusCode, 200)
  t.equal(refreshCookie(response), undefined, 'no plain refresh_token cookie')
  const cookie = refreshCookie(response, '__Host-refresh_token')
  t.ok(cookie, '__Host-refresh_token set')
  t.equal(cookie!.path, '/')
  t.equal(cookie!.secure, true)
  t.equal(cookie!.httpOnly, true)
  t.equal(cookie!.domain, undefined, 'no Domain')
  t.match(response.headers['set-cookie'] as string, /^__Host-refresh_token=/)
  const rotated = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { '__Host-refresh_token': cookie!.value } })
  t.equal(rotated.statusCode, 200, 'the prefixed cookie is read back')
  t.ok(refreshCookie(rotated, '__Host-refresh_token'))
})

t.test('cookie options are reflected in Set-Cookie', async (t) => {
  const app = await build(t, { cookie: { secure: false, sameSite: 'lax', domain: 'example.com', name: 'rt' } })
  const response = await postLogin(app)
  t.equal(response.statusCode, 200)
  const header = response.headers['set-cookie'] as string
  t.match(header, /^rt=/)
  t.notMatch(header, /;\s*Secure/i, 'no Secure')
  t.match(header, /;\s*SameSite=Lax/)
  t.match(header, /;\s*Domain=example\.com/)
  t.match(header, /;\s*HttpOnly/)
  const cookie = refreshCookie(response, 'rt')!
  t.equal(cookie.secure, undefined)
  t.equal(cookie.sameSite, 'Lax')
  t.equal(cookie.domain, 'example.com')
})

t.test('cross-site login attempts are refused with 403', async (t) => {
  let calls = 0
  const app = await build(t, {
    loginRateLimit: false,
    allowedOrigins: ['https://app.example.com'],
    verifyCredentials: async (username, password) => {
      calls++
      return username === USERNAME && password === PASSWORD ? { id: USER_ID } : null
    }
  })
  const refused: Array<[string, Record<string, string>]> = [
    ['evil Origin', { origin: 'https://evil.example' }],
    ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Origin: null', { origin: 'null' }],
    ['own host on another scheme', { origin: 'https://localhost:80' }],
    ['allowed origin but Sec-Fetch-Site cross-site', { origin: 'https://app.example.com', 'sec-fetch-site': 'cross-site' }],
    ['allowed origin with a trailing slash', { origin: 'https://app.example.com/' }]
  ]
  for (const [label, headers] of refused) {
    const response = await postLogin(app, { headers })
    assertRefused(t, response, 403, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST', label)
  }
  t.equal(calls, 0, 'credentials never checked on a cross-site request')

  const allowed: Array<[string, Record<string, string>]> = [
    ['own origin', { origin: 'http://localhost:80' }],
    ['allow-listed origin', { origin: 'https://app.example.com' }],
    ['no Origin', {}],
    ['Sec-Fetch-Site: same-origin', { 'sec-fetch-site': 'same-origin' }],
    ['own origin and same-origin', { origin: 'http://localhost:80', 'sec-fetch-site': 'same-origin' }]
  ]
  for (const [label, headers] of allowed) {
    const response = await postLogin(app, { headers })
    t.equal(response.statusCode, 200, `${label}: 200`)
    t.ok(refreshCookie(response), `${label}: cookie set`)
  }
})

t.test("refreshTokenTransport 'body': the refresh token is in the body, no cookie", async (t) => {
  const app = await build(t, { refreshTokenTransport: 'body' })
  const response = await postLogin(app)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['set-cookie'], undefined, 'no Set-Cookie')
  const body = response.json()
  t.same(Object.keys(body).sort(), ['accessToken', 'expiresIn', 'refreshToken', 'tokenType'])
  t.type(body.refreshToken, 'string')
  t.equal(response.headers['cache-control'], 'no-store')
  const rotated = await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: body.refreshToken } })
  t.equal(rotated.statusCode, 200, 'the body token refreshes')
})

t.test("refreshTokenTransport 'both': the login request chooses", async (t) => {
  const app = await build(t, { refreshTokenTransport: 'both', loginRateLimit: false })
  const byDefault = await postLogin(app)
  t.equal(byDefault.statusCode, 200)
  t.ok(refreshCookie(byDefault), 'cookie by default')
  t.same(Object.keys(byDefault.json()).sort(), ['accessToken', 'expiresIn', 'tokenType'], 'no refresh token in the body by default')

  const asCookie = await postLogin(app, { payload: { ...CREDENTIALS, refreshTokenTransport: 'cookie' } })
  t.equal(asCookie.statusCode, 200)
  t.ok(refreshCookie(asCookie), "explicit 'cookie': cookie")
  t.equal(asCookie.json().refreshToken, undefined)

  const inBody = await postLogin(app, { payload: { ...CREDENTIALS, refreshTokenTransport: 'body' } })
  t.equal(inBody.statusCode, 200)
  t.equal(inBody.headers['set-cookie'], undefined, "'body': no cookie")
  t.type(inBody.json().refreshToken, 'string', "'body': token in the body")

  assertRefused(t, await postLogin(app, { payload: { ...CREDENTIALS, refreshTokenTransport: 'header' } }),
    400, 'FST_ERR_VALIDATION', 'unknown transport')
})

t.test("with transport 'cookie' the refreshTokenTransport field is an extra field: 400", async (t) => {
  const app = await build(t)
  const response = await postLogin(app, { payload: { ...CREDENTIALS, refreshTokenTransport: 'body' } })
  assertRefused(t, response, 400, 'FST_ERR_VALIDATION')
})

t.test('verifyCredentials receives the request and its claims reach the access token', async (t) => {
  let seenUrl = ''
  const app = await build(t, {
    verifyCredentials: async (_username, _password, request): Promise<AuthUser> => {
      seenUrl = request.url
      return { id: 'user-42', claims: { role: 'editor', sub: 'forged', sid: 'forged' } }
    }
  })
  const response = await postLogin(app)
  t.equal(response.statusCode, 200)
  t.equal(seenUrl, '/auth/login')
  const claims = decodePayload(response.json().accessToken)
  t.equal(claims.role, 'editor')
  t.equal(claims.sub, 'user-42', 'reserved claims cannot be overridden')
  t.not(claims.sid, 'forged')
})
