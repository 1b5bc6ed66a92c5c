import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp, configFromEnv } from '../examples/app.js'
import { REFRESH_SECRET as REFRESH_TOKEN_SECRET } from './helpers.js'
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
