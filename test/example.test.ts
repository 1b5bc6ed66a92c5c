import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { buildApp, configFromEnv } from '../examples/app.js'
import { decodePayload, REFRESH_SECRET as REFRESH_TOKEN_SECRET, sleep } from './helpers.js'
import { claimsOf, forgeAsymmetric, generateKeys, headerOf, thumbprint } from './security/forge.js'

const PASSWORD = 'correct-horse-battery-staple'

/** Collects every log line the app writes. */
function logCollector () {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      lines.push(...chunk.toString().split('\n').filter(Boolean))
      callback()
    }
  })
  return { lines, stream }
}

function cookieValue (setCookie: string | null): string {
  const match = /refresh_token=([^;]*)/.exec(setCookie ?? '')
  return match?.[1] ?? ''
}

t.test('configFromEnv reads DESIGN §4 variables with their defaults', async (t) => {
  const config = configFromEnv({})
  t.equal(config.logLevel, 'info')
  t.equal(config.accessTokenTtl, 900)
  t.equal(config.reuseGrace, 5)
  t.equal(config.loginRateLimit, 10)
  t.equal(config.username, 'alice')
  t.equal(config.password, PASSWORD)
  t.equal(config.generatedSecrets, true)
  t.equal(config.secureCookies, false)
  t.ok(Buffer.byteLength(config.accessTokenSecret) >= 32)
  t.not(config.accessTokenSecret, config.refreshTokenSecret)

  const custom = configFromEnv({
    LOG_LEVEL: 'debug',
    ACCESS_TOKEN_TTL: '60',
    REFRESH_TOKEN_TTL: '3600',
    REFRESH_REUSE_GRACE: '0',
    LOGIN_RATE_LIMIT: '3',
    DEMO_USERNAME: 'carol',
    DEMO_PASSWORD: 'pw',
    ACCESS_TOKEN_SECRET: 'x'.repeat(32),
    REFRESH_TOKEN_SECRET: 'y'.repeat(32),
    NODE_ENV: 'production'
  })
  t.match(custom, { logLevel: 'debug', accessTokenTtl: 60, refreshTokenTtl: 3600, reuseGrace: 0, loginRateLimit: 3, username: 'carol', generatedSecrets: false, secureCookies: true })
  t.throws(() => configFromEnv({ ACCESS_TOKEN_TTL: '1.5' }), /ACCESS_TOKEN_TTL must be a whole number/)
  t.throws(() => configFromEnv({ LOGIN_RATE_LIMIT: '0' }), /LOGIN_RATE_LIMIT/)
  t.throws(() => configFromEnv({ TOKEN_STORE: 'mongo' }), /TOKEN_STORE must be memory, redis or postgres, got "mongo"/)
  t.match(configFromEnv({ TOKEN_STORE: 'redis', REDIS_URL: 'redis://h:1' }), { tokenStore: 'redis', redisUrl: 'redis://h:1' })
  t.match(configFromEnv({ TOKEN_STORE: 'postgres' }), { tokenStore: 'postgres', databaseUrl: 'postgres://postgres@127.0.0.1:5432/test' })
})

t.test('configFromEnv: the session policy variables', async (t) => {
  t.match(configFromEnv({}), { stepUpMaxAge: 300, maxSessions: undefined, sessionLimitPolicy: 'end-least-recent', refreshPolicy: 'any' })
  t.match(configFromEnv({ STEP_UP_MAX_AGE: '60', MAX_SESSIONS: '3', SESSION_LIMIT_POLICY: 'refuse', REFRESH_POLICY: 'same-device' }),
    { stepUpMaxAge: 60, maxSessions: 3, sessionLimitPolicy: 'refuse', refreshPolicy: 'same-device' })
  t.throws(() => configFromEnv({ STEP_UP_MAX_AGE: '0' }), /STEP_UP_MAX_AGE must be a whole number >= 1, got "0"/)
  t.throws(() => configFromEnv({ MAX_SESSIONS: '0' }), /MAX_SESSIONS must be a whole number >= 1, got "0"/)
  t.throws(() => configFromEnv({ SESSION_LIMIT_POLICY: 'oldest' }), /SESSION_LIMIT_POLICY must be end-least-recent or refuse, got "oldest"/)
  t.throws(() => configFromEnv({ REFRESH_POLICY: 'strict' }), /REFRESH_POLICY must be any or same-device, got "strict"/)
})

t.test('configFromEnv: second user, access-token algorithm and keys, issuer, limits, lifetimes, cookie prefix', async (t) => {
  const defaults = configFromEnv({})
  t.match(defaults, { secondPassword: 'bob-password-1234', accessTokenAlg: 'HS256', accessTokenPrivateKey: undefined, issuer: undefined })
  t.match(defaults, { accountRateLimit: undefined, storeTimeout: undefined, rateLimitWindow: 60, sessionMaxAge: 30 * 24 * 3600, cookieHostPrefix: false })

  const keys = generateKeys('ES256')
  const custom = configFromEnv({
    DEMO_SECOND_PASSWORD: 'another-password',
    ACCESS_TOKEN_ALG: 'ES256',
    // One env line: the PEM's newlines written as a literal "\n".
    ACCESS_TOKEN_PRIVATE_KEY: keys.privatePem.replaceAll('\n', '\\n'),
    REFRESH_TOKEN_SECRET: 'y'.repeat(32),
    TOKEN_ISSUER: 'https://issuer.example',
    ACCOUNT_RATE_LIMIT: '5',
    RATE_LIMIT_WINDOW: '2',
    STORE_TIMEOUT_MS: '250',
    REFRESH_TOKEN_TTL: '60',
    SESSION_MAX_AGE: '120',
    COOKIE_HOST_PREFIX: 'true'
  })
  t.match(custom, {
    secondPassword: 'another-password',
    accessTokenAlg: 'ES256',
    accessTokenPrivateKey: keys.privatePem,
    issuer: 'https://issuer.example',
    accountRateLimit: 5,
    rateLimitWindow: 2,
    storeTimeout: 250,
    sessionMaxAge: 120,
    cookieHostPrefix: true,
    secureCookies: true,
    generatedSecrets: false
  })
  // An asymmetric algorithm without a key: one is generated, with the same warning as secrets.
  const generated = configFromEnv({ ACCESS_TOKEN_ALG: 'EdDSA', REFRESH_TOKEN_SECRET: 'y'.repeat(32) })
  t.match(generated.accessTokenPrivateKey, /^-----BEGIN PRIVATE KEY-----\n/)
  t.equal(generated.generatedSecrets, true)
  t.throws(() => configFromEnv({ ACCESS_TOKEN_ALG: 'none' }), /ACCESS_TOKEN_ALG must be one of HS256, EdDSA, ES256, RS256, got "none"/)
  t.throws(() => configFromEnv({ ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY: keys.publicPem }), /ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY needs an asymmetric ACCESS_TOKEN_ALG/)
  t.throws(() => configFromEnv({ STORE_TIMEOUT_MS: '0' }), /STORE_TIMEOUT_MS/)
})

t.test('an asymmetric example: ES256 tokens with a kid and iss, the JWKS route, a retired EdDSA key still verifying', async (t) => {
  const current = generateKeys('ES256')
  const retired = generateKeys('EdDSA')
  const config = configFromEnv({
    LOG_LEVEL: 'silent',
    ACCESS_TOKEN_ALG: 'ES256',
    ACCESS_TOKEN_PRIVATE_KEY: current.privatePem,
    ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY: retired.publicPem.replaceAll('\n', '\\n'),
    REFRESH_TOKEN_SECRET,
    TOKEN_ISSUER: 'https://issuer.example'
  })
  const app = await buildApp(config)
  t.teardown(() => app.close())

  const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(jwks.statusCode, 200)
  t.equal(jwks.headers['cache-control'], 'public, max-age=300')
  const published = jwks.json().keys as Array<Record<string, string>>
  t.same(published.map((key) => [key.kty, key.alg, key.kid, key.use]), [
    ['EC', 'ES256', thumbprint(current.publicKey), 'sig'],
    ['OKP', 'EdDSA', thumbprint(retired.publicKey), 'sig']
  ])
  t.notOk(published.some((key) => 'd' in key), 'no private key material')

  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'alice', password: PASSWORD } })
  t.equal(login.statusCode, 200)
  const { accessToken } = login.json()
  t.match(headerOf(accessToken), { alg: 'ES256', typ: 'at+jwt', kid: thumbprint(current.publicKey) })
  const claims = claimsOf(accessToken)
  t.match(claims, { iss: 'https://issuer.example', sub: 'user-1', username: 'alice', role: 'admin' })
  const me = (token: string) => app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } })
  t.equal((await me(accessToken)).statusCode, 200)
  // Signed before the rotation, by the retired key: still accepted until it is removed.
  const older = forgeAsymmetric({ alg: 'EdDSA', typ: 'at+jwt', kid: thumbprint(retired.publicKey) }, { ...claims, jti: 'older-token' }, retired.privateKey, 'EdDSA')
  t.equal((await me(older)).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/admin', headers: { authorization: `Bearer ${accessToken}` } })).statusCode, 200, 'alice is the admin')
})

t.test('a too-short secret is a boot error', async (t) => {
  const config = configFromEnv({ ACCESS_TOKEN_SECRET: 'short', REFRESH_TOKEN_SECRET: 'y'.repeat(32), LOG_LEVEL: 'silent' })
  await t.rejects(buildApp(config), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', message: /accessTokenSecret/ })
})

t.test('GET /metrics: the plugin counters in Prometheus text, for loopback scrapers only', async (t) => {
  const app = await buildApp(configFromEnv({ LOG_LEVEL: 'silent' }))
  t.teardown(() => app.close())
  await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'alice', password: PASSWORD } })
  await app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'alice', password: 'wrong-password' } })
  const local = await app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })
  t.equal(local.statusCode, 200)
  t.match(local.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(local.body, /^fastify_token_auth_logins_total 1$/m)
  t.match(local.body, /^fastify_token_auth_login_failures_total 1$/m)
  const remote = await app.inject({ url: '/metrics', remoteAddress: '203.0.113.9' })
  t.equal(remote.statusCode, 404)
  t.equal(remote.json().code, 'NOT_FOUND')
})

t.test('the example over real HTTP: login, /me, refresh, logout; no secret in any log line', async (t) => {
  const { lines, stream } = logCollector()
  const config = { ...configFromEnv({ LOG_LEVEL: 'debug' }), loginRateLimit: 100 }
  const app = await buildApp(config, { logger: { level: 'debug', stream } } as never)
  t.teardown(() => app.close())
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const json = { 'content-type': 'application/json' }

  const health = await fetch(`${base}/health`)
  t.equal(health.status, 200)

  const wrong = await fetch(`${base}/auth/login`, { method: 'POST', headers: json, body: JSON.stringify({ username: 'alice', password: 'wrong-password' }) })
  t.equal(wrong.status, 401)
  t.equal((await wrong.json()).code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
  const unknown = await fetch(`${base}/auth/login`, { method: 'POST', headers: json, body: JSON.stringify({ username: 'mallory', password: 'wrong-password' }) })
  t.equal(unknown.status, 401)
  t.equal((await unknown.json()).code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')

  const login = await fetch(`${base}/auth/login`, { method: 'POST', headers: json, body: JSON.stringify({ username: 'alice', password: PASSWORD }) })
  t.equal(login.status, 200)
  t.equal(login.headers.get('cache-control'), 'no-store')
  const setCookie = login.headers.get('set-cookie')
  t.match(setCookie, /HttpOnly/)
  t.match(setCookie, /SameSite=Strict/)
  t.match(setCookie, /Path=\/auth/)
  const { accessToken } = await login.json()
  const refreshToken = cookieValue(setCookie)
  t.match(refreshToken, /^[\w-]+\.[\w-]+\.[\w-]{44}$/, 'an opaque refresh token')

  const me = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(me.status, 200)
  t.same(await me.json(), { id: 'user-1', username: 'alice' })

  const refreshed = await fetch(`${base}/auth/refresh`, { method: 'POST', headers: { cookie: `refresh_token=${refreshToken}` } })
  t.equal(refreshed.status, 200)
  const next = cookieValue(refreshed.headers.get('set-cookie'))
  t.not(next, refreshToken)
  const { accessToken: secondAccess } = await refreshed.json()

  const logout = await fetch(`${base}/auth/logout`, { method: 'POST', headers: { cookie: `refresh_token=${next}` } })
  t.equal(logout.status, 204)
  t.match(logout.headers.get('set-cookie'), /refresh_token=;/)

  const after = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${secondAccess}` } })
  t.equal(after.status, 401)
  t.equal(after.headers.get('www-authenticate'), 'Bearer error="invalid_token"')
  t.equal((await after.json()).code, 'FST_TOKEN_AUTH_SESSION_REVOKED')

  const secrets = [PASSWORD, 'wrong-password', accessToken, secondAccess, refreshToken, next, config.accessTokenSecret, config.refreshTokenSecret]
  t.ok(lines.length > 10, 'the app logged every request')
  for (const secret of secrets) {
    t.notOk(lines.some((line) => line.includes(secret)), 'no log line contains a password, token or secret')
  }
})

t.test('`npm run example` starts the server: log in and call /me over a real socket', async (t) => {
  // No coverage from this child: tap would merge its tsx-compiled report of lib/ over the
  // test run's own (different line maps), and lib/ is covered in process anyway.
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/server.ts'], {
    env: { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { child.kill('SIGTERM') })
  let output = ''
  let base = ''
  child.stdout.setEncoding('utf8')
  while (base === '') {
    const [chunk] = await once(child.stdout, 'data') as [string]
    output += chunk
    base = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1] ?? ''
  }
  t.match(output, /using random secrets/, 'warns that the secrets were generated')
  const login = await fetch(`${base}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: PASSWORD })
  })
  t.equal(login.status, 200)
  const { accessToken } = await login.json()
  const me = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(me.status, 200)
  t.same(await me.json(), { id: 'user-1', username: 'alice' })
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'SIGTERM closes the server cleanly')
})

// The session policy (examples/policy.ts) over real HTTP.

const JSON_HEADERS = { 'content-type': 'application/json' }
const BOB_PASSWORD = 'bob-password-1234'

/** The example with `env` on 127.0.0.1:0, its JSON log lines collected. */
async function startExample (t: Test, env: Record<string, string> = {}) {
  const { lines, stream } = logCollector()
  const config = configFromEnv({ LOG_LEVEL: 'info', LOGIN_RATE_LIMIT: '100', ...env })
  const app = await buildApp(config, { logger: { level: 'info', stream } } as never)
  t.teardown(() => app.close())
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const logs = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  return { app, base, logs }
}

interface Session { accessToken: string, refreshToken: string, sid: string }

/** Logs in; the response, and the tokens when it succeeded. */
async function signIn (base: string, username = 'alice', password = username === 'bob' ? BOB_PASSWORD : PASSWORD, userAgent = 'DemoBrowser/1.0') {
  const response = await fetch(`${base}/auth/login`, { method: 'POST', headers: { ...JSON_HEADERS, 'user-agent': userAgent }, body: JSON.stringify({ username, password }) })
  if (response.status !== 200) return { response, session: undefined }
  const { accessToken } = await response.json()
  const session: Session = { accessToken, refreshToken: cookieValue(response.headers.get('set-cookie')), sid: decodePayload(accessToken).sid as string }
  return { response, session }
}

async function mustSignIn (base: string, username?: string, password?: string, userAgent?: string): Promise<Session> {
  const { response, session } = await signIn(base, username, password, userAgent)
  if (session === undefined) throw new Error(`login failed: ${response.status} ${await response.text()}`)
  return session
}

/** POST /auth/refresh with the session's cookie; on success the session holds the new tokens. */
async function refreshSession (base: string, session: Session, userAgent = 'DemoBrowser/1.0'): Promise<Response> {
  const response = await fetch(`${base}/auth/refresh`, { method: 'POST', headers: { cookie: `refresh_token=${session.refreshToken}`, 'user-agent': userAgent } })
  if (response.status === 200) {
    session.accessToken = (await response.clone().json()).accessToken
    session.refreshToken = cookieValue(response.headers.get('set-cookie'))
  }
  return response
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function changeEmail (base: string, token: string, email = 'alice@example.com'): Promise<Response> {
  return await fetch(`${base}/account/email`, { method: 'POST', headers: { ...JSON_HEADERS, ...bearer(token) }, body: JSON.stringify({ email }) })
}

async function assertError (t: Test, response: Response, status: number, code: string, label: string): Promise<void> {
  t.equal(response.status, status, `${label}: ${status}`)
  t.equal((await response.json()).code, code, `${label}: ${code}`)
}

t.test('step-up: past STEP_UP_MAX_AGE the RFC 9470 challenge; re-authentication clears it in the same session', async (t) => {
  const { app, base } = await startExample(t, { STEP_UP_MAX_AGE: '1' })
  const alice = await mustSignIn(base)
  const fresh = await changeEmail(base, alice.accessToken)
  t.equal(fresh.status, 200, 'a fresh sign-in passes')
  t.same(await fresh.json(), { email: 'alice@example.com' })
  // auth_time is in whole seconds and a sign-in is too old once now - auth_time > max_age.
  await sleep(2100)

  const old = await changeEmail(base, alice.accessToken)
  t.match(old.headers.get('www-authenticate'), /^Bearer error="insufficient_user_authentication", error_description="[^"]*", max_age=1$/, 'the RFC 9470 challenge')
  await assertError(t, old, 401, 'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION', 'a sign-in older than 1 s')
  const me = await fetch(`${base}/me`, { headers: bearer(alice.accessToken) })
  t.equal(me.status, 200, 'the access token itself is still good for the other routes')

  const reauthenticate = async (username: string, password: string) => await fetch(`${base}/auth/reauthenticate`, {
    method: 'POST', headers: { ...JSON_HEADERS, cookie: `refresh_token=${alice.refreshToken}` }, body: JSON.stringify({ username, password })
  })
  await assertError(t, await reauthenticate('alice', 'wrong-password'), 401, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS', 'a wrong password')
  await assertError(t, await reauthenticate('bob', BOB_PASSWORD), 403, 'FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH', "another user's credentials")
  const renewed = await reauthenticate('alice', PASSWORD)
  t.equal(renewed.status, 200, 'the right password: 200')
  t.equal(renewed.headers.get('cache-control'), 'no-store')
  const setCookie = renewed.headers.get('set-cookie')
  t.match(setCookie, /HttpOnly/)
  t.match(setCookie, /Path=\/auth/)
  const refreshToken = cookieValue(setCookie)
  t.not(refreshToken, alice.refreshToken, 'a new refresh token')
  const { accessToken } = await renewed.json()
  const claims = decodePayload(accessToken)
  t.equal(claims.sid, alice.sid, 'the same session id')
  t.ok((claims.auth_time as number) > (decodePayload(alice.accessToken).auth_time as number), 'a later auth_time')
  t.same((await app.tokenAuth.listSessions('user-1')).map((session) => session.id), [alice.sid], 'still the one session')

  const passed = await changeEmail(base, accessToken, 'alice@example.org')
  t.equal(passed.status, 200, 'the step-up route passes now')
  t.same(await passed.json(), { email: 'alice@example.org' })
})

t.test('a role change reaches live sessions: the old access token is refused, the next refresh carries the new role', async (t) => {
  const { base } = await startExample(t)
  const alice = await mustSignIn(base)
  const bob = await mustSignIn(base, 'bob')
  t.match(decodePayload(bob.accessToken), { role: 'user' })
  t.notOk('cv' in decodePayload(bob.accessToken), 'no claims version before any change')
  await assertError(t, await fetch(`${base}/admin`, { headers: bearer(bob.accessToken) }), 403, 'FORBIDDEN', 'bob is not an admin')

  const setRole = async (token: string, id: string, role: string) => await fetch(`${base}/admin/users/${id}/role`, {
    method: 'POST', headers: { ...JSON_HEADERS, ...bearer(token) }, body: JSON.stringify({ role })
  })
  await assertError(t, await setRole(bob.accessToken, 'user-2', 'admin'), 403, 'FORBIDDEN', 'bob cannot promote himself')
  await assertError(t, await setRole(alice.accessToken, 'user-9', 'admin'), 404, 'USER_NOT_FOUND', 'an unknown user')
  t.equal((await setRole(alice.accessToken, 'user-2', 'root')).status, 400, 'an unknown role')
  const promoted = await setRole(alice.accessToken, 'user-2', 'admin')
  t.equal(promoted.status, 200)
  t.same(await promoted.json(), { id: 'user-2', role: 'admin', sessionsUpdated: 1 })

  const stale = await fetch(`${base}/me`, { headers: bearer(bob.accessToken) })
  t.equal(stale.headers.get('www-authenticate'), 'Bearer error="invalid_token", error_description="the claims of this token have changed; refresh it"')
  await assertError(t, stale, 401, 'FST_TOKEN_AUTH_CLAIMS_CHANGED', "bob's access token from before the change")
  t.equal((await fetch(`${base}/me`, { headers: bearer(alice.accessToken) })).status, 200, "alice's session is not touched")

  const refreshed = await refreshSession(base, bob)
  t.equal(refreshed.status, 200, 'the refresh succeeds')
  t.match(decodePayload(bob.accessToken), { sid: bob.sid, role: 'admin', cv: 1 }, 'the new role and the claims version, same session')
  const admin = await fetch(`${base}/admin`, { headers: bearer(bob.accessToken) })
  t.equal(admin.status, 200, 'bob is an admin now')
  t.same(await admin.json(), { admin: 'bob' })
})

t.test('MAX_SESSIONS: a login over the cap ends the least recently used session', async (t) => {
  const { app, base, logs } = await startExample(t, { MAX_SESSIONS: '2' })
  const first = await mustSignIn(base)
  await sleep(5)
  const second = await mustSignIn(base)
  await sleep(5)
  // Used after the second one: the second is now the least recently used.
  t.equal((await refreshSession(base, first)).status, 200)
  await sleep(5)
  const third = await mustSignIn(base, 'alice', PASSWORD, 'OtherBrowser/2.0')

  t.same((await app.tokenAuth.listSessions('user-1')).map((session) => session.id).sort(), [first.sid, third.sid].sort(), 'the second session was ended')
  await assertError(t, await fetch(`${base}/me`, { headers: bearer(second.accessToken) }), 401, 'FST_TOKEN_AUTH_SESSION_REVOKED', "the ended session's access token, at once")
  const refused = await refreshSession(base, second)
  t.match(refused.headers.get('set-cookie'), /^refresh_token=;/, 'the cookie is cleared')
  await assertError(t, refused, 401, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', "the ended session's refresh token")
  t.equal((await fetch(`${base}/me`, { headers: bearer(first.accessToken) })).status, 200, 'the recently used session lives on')

  // newSession: knownUserAgent says whether another live session has this User-Agent.
  const known = logs().filter((line) => line.msg === 'new session' || line.msg === 'new session from a new User-Agent')
  t.same(known.map((line) => [line.sessionId, line.knownUserAgent]), [[first.sid, false], [second.sid, true], [third.sid, false]])
  t.match(known[2], { userId: 'user-1', ip: '127.0.0.1', msg: 'new session from a new User-Agent' })
})

t.test('MAX_SESSIONS with SESSION_LIMIT_POLICY=refuse: the login over the cap is refused 403', async (t) => {
  const { app, base } = await startExample(t, { MAX_SESSIONS: '1', SESSION_LIMIT_POLICY: 'refuse' })
  const first = await mustSignIn(base)
  const { response } = await signIn(base)
  t.equal(response.headers.get('set-cookie'), null, 'no cookie')
  await assertError(t, response, 403, 'FST_TOKEN_AUTH_SESSION_LIMIT_REACHED', 'a second session')
  t.same((await app.tokenAuth.listSessions('user-1')).map((session) => session.id), [first.sid], 'the first session is untouched')
  t.equal((await fetch(`${base}/me`, { headers: bearer(first.accessToken) })).status, 200)
  t.match(await mustSignIn(base, 'bob'), { sid: /./ }, 'the cap is per user: bob signs in')

  const logout = await fetch(`${base}/auth/logout`, { method: 'POST', headers: { cookie: `refresh_token=${first.refreshToken}` } })
  t.equal(logout.status, 204)
  const again = await signIn(base)
  t.equal(again.response.status, 200, 'after a logout there is room again')
})

t.test('REFRESH_POLICY=same-device: a refresh from another User-Agent ends the session', async (t) => {
  const { app, base, logs } = await startExample(t, { REFRESH_POLICY: 'same-device' })
  const alice = await mustSignIn(base, 'alice', PASSWORD, 'DemoBrowser/1.0')
  t.equal((await refreshSession(base, alice, 'DemoBrowser/1.0')).status, 200, 'the same browser refreshes')
  const accessToken = alice.accessToken

  const denied = await refreshSession(base, alice, 'curl/8.5.0')
  t.match(denied.headers.get('set-cookie'), /^refresh_token=;/, 'the cookie is cleared')
  await assertError(t, denied, 401, 'FST_TOKEN_AUTH_REFRESH_DENIED', 'another User-Agent')
  t.same(await app.tokenAuth.listSessions('user-1'), [], 'the session is ended')
  await assertError(t, await fetch(`${base}/me`, { headers: bearer(accessToken) }), 401, 'FST_TOKEN_AUTH_SESSION_REVOKED', 'its access token, at once')
  await assertError(t, await refreshSession(base, alice, 'DemoBrowser/1.0'), 401, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'its refresh token, even from the first browser')
  t.match(logs().find((line) => line.msg === 'refresh denied: session ended'), {
    level: 40, userId: 'user-1', sessionId: alice.sid, reason: 'the refresh came from another User-Agent than the sign-in'
  })
})

t.test('introspection says active:false right after logout; revoking a refresh token ends its session', async (t) => {
  const client = { id: 'resource-server', secret: 'rS4kQ9wE2tY7uI1oP6aZ3xC8vB5nM0lKj' }
  const { base } = await startExample(t, { INTROSPECTION_CLIENT_ID: client.id, INTROSPECTION_CLIENT_SECRET: client.secret })
  const introspect = async (token: string) => {
    const response = await fetch(`${base}/auth/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` },
      body: new URLSearchParams({ token })
    })
    t.equal(response.status, 200)
    t.equal(response.headers.get('cache-control'), 'no-store')
    return await response.json() as Record<string, unknown>
  }
  const alice = await mustSignIn(base)
  t.match(await introspect(alice.accessToken), { active: true, sub: 'user-1', sid: alice.sid })
  const logout = await fetch(`${base}/auth/logout`, { method: 'POST', headers: { cookie: `refresh_token=${alice.refreshToken}` } })
  t.equal(logout.status, 204)
  t.same(await introspect(alice.accessToken), { active: false }, 'the access token, right after logout')
  t.same(await introspect(alice.refreshToken), { active: false }, 'the refresh token too')

  const next = await mustSignIn(base)
  t.match(await introspect(next.refreshToken), { active: true, token_type: 'refresh_token', sid: next.sid })
  const revoked = await fetch(`${base}/auth/revoke`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ token: next.refreshToken }) })
  t.equal(revoked.status, 200, 'RFC 7009: 200')
  t.same(await introspect(next.refreshToken), { active: false }, 'the revoked refresh token')
  t.same(await introspect(next.accessToken), { active: false }, "its session's access token")
  await assertError(t, await fetch(`${base}/me`, { headers: bearer(next.accessToken) }), 401, 'FST_TOKEN_AUTH_SESSION_REVOKED', 'the access token at /me')
  await assertError(t, await refreshSession(base, next), 401, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'the revoked refresh token at /refresh')
})
