import Fastify from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import { ACCESS_SECRET, baseOptions, PASSWORD, REFRESH_SECRET, refreshCookie, USERNAME } from './helpers.js'

type Options = Record<string, unknown>

function escape (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** Registers the plugin on a fresh app with the given options; `ready()` must fail naming `option`. */
async function bootFails (t: Test, options: Options, option: string, label: string): Promise<void> {
  const app = Fastify()
  app.register(tokenAuth, options as unknown as TokenAuthOptions)
  const error = await app.ready().then(() => null, (e: unknown) => e as Error & { code?: string, statusCode?: number })
  t.ok(error, `${label}: ready() rejects`)
  t.equal(error?.code, 'FST_TOKEN_AUTH_INVALID_OPTION', `${label}: coded error`)
  t.match(error?.message, new RegExp(`^Invalid option "${escape(option)}": `), `${label}: names ${option}`)
  await app.close()
}

function withOverrides (overrides: Options): Options {
  return { ...baseOptions(), ...overrides }
}

function without (key: string): Options {
  const options: Options = { ...baseOptions() }
  delete options[key]
  return options
}

const noop = async () => null

t.test('each invalid option fails ready() with FST_TOKEN_AUTH_INVALID_OPTION naming it', async (t) => {
  const cases: Array<[label: string, options: Options, option: string]> = [
    ['missing accessTokenSecret', without('accessTokenSecret'), 'accessTokenSecret'],
    ['missing refreshTokenSecret', without('refreshTokenSecret'), 'refreshTokenSecret'],
    ['empty accessTokenSecret', withOverrides({ accessTokenSecret: '' }), 'accessTokenSecret'],
    ['accessTokenSecret of 31 bytes', withOverrides({ accessTokenSecret: 'x'.repeat(31) }), 'accessTokenSecret'],
    ['refreshTokenSecret of 31 bytes', withOverrides({ refreshTokenSecret: Buffer.alloc(31, 1) }), 'refreshTokenSecret'],
    ['non-string accessTokenSecret', withOverrides({ accessTokenSecret: 1234567890 }), 'accessTokenSecret'],
    ['object accessTokenSecret', withOverrides({ accessTokenSecret: { key: ACCESS_SECRET } }), 'accessTokenSecret'],
    ['equal secrets', withOverrides({ refreshTokenSecret: ACCESS_SECRET }), 'refreshTokenSecret'],
    ['equal secrets, one a Buffer', withOverrides({ refreshTokenSecret: Buffer.from(ACCESS_SECRET) }), 'refreshTokenSecret'],
    ['accessTokenTtl 0', withOverrides({ accessTokenTtl: 0 }), 'accessTokenTtl'],
    ['accessTokenTtl -1', withOverrides({ accessTokenTtl: -1 }), 'accessTokenTtl'],
    ['accessTokenTtl 1.5', withOverrides({ accessTokenTtl: 1.5 }), 'accessTokenTtl'],
    ["accessTokenTtl '10'", withOverrides({ accessTokenTtl: '10' }), 'accessTokenTtl'],
    ['accessTokenTtl a BigInt (not JSON-describable)', withOverrides({ accessTokenTtl: 10n }), 'accessTokenTtl'],
    ['accessTokenTtl over 400 days', withOverrides({ accessTokenTtl: 400 * 86400 + 1 }), 'accessTokenTtl'],
    ['refreshTokenTtl 0', withOverrides({ refreshTokenTtl: 0 }), 'refreshTokenTtl'],
    ['sessionMaxAge < refreshTokenTtl', withOverrides({ refreshTokenTtl: 3600, sessionMaxAge: 3599 }), 'sessionMaxAge'],
    ['reuseGrace -1', withOverrides({ reuseGrace: -1 }), 'reuseGrace'],
    ['reuseGraceLimit 0.5', withOverrides({ reuseGraceLimit: 0.5 }), 'reuseGraceLimit'],
    ['clockTolerance 301', withOverrides({ clockTolerance: 301 }), 'clockTolerance'],
    ['unknown option (typo)', withOverrides({ accesTokenTtl: 60 }), 'accesTokenTtl'],
    ["refreshTokenTransport 'header'", withOverrides({ refreshTokenTransport: 'header' }), 'refreshTokenTransport'],
    ["cookie.sameSite 'none'", withOverrides({ cookie: { sameSite: 'none' } }), 'cookie.sameSite'],
    ['cookie.hostPrefix with secure: false', withOverrides({ cookie: { hostPrefix: true, secure: false } }), 'cookie.secure'],
    ['cookie.hostPrefix with a domain', withOverrides({ cookie: { hostPrefix: true, domain: 'example.com' } }), 'cookie.domain'],
    ["cookie.hostPrefix with path '/x'", withOverrides({ cookie: { hostPrefix: true, path: '/x' } }), 'cookie.path'],
    ["cookie.hostPrefix 'yes'", withOverrides({ cookie: { hostPrefix: 'yes' } }), 'cookie.hostPrefix'],
    ['cookie.name with a space', withOverrides({ cookie: { name: 'refresh token' } }), 'cookie.name'],
    ['cookie.name with a semicolon', withOverrides({ cookie: { name: 'a;b' } }), 'cookie.name'],
    ["cookie.secure 'false'", withOverrides({ cookie: { secure: 'false' } }), 'cookie.secure'],
    ['cookie.path without a slash', withOverrides({ cookie: { path: 'auth' } }), 'cookie.path'],
    ['cookie.domain empty', withOverrides({ cookie: { domain: '' } }), 'cookie.domain'],
    ['cookie not an object', withOverrides({ cookie: 'refresh_token' }), 'cookie'],
    ['cookie null', withOverrides({ cookie: null }), 'cookie'],
    ['routes.unknown', withOverrides({ routes: { unknown: { path: '/x' } } }), 'routes.unknown'],
    ["routes.login 'x'", withOverrides({ routes: { login: 'x' } }), 'routes.login'],
    ["routes 'x'", withOverrides({ routes: 'x' }), 'routes'],
    ['routes true', withOverrides({ routes: true }), 'routes'],
    ['routes.login.path without a leading slash', withOverrides({ routes: { login: { path: 'login' } } }), 'routes.login.path'],
    ['routes.refresh.path with a space', withOverrides({ routes: { refresh: { path: '/re fresh' } } }), 'routes.refresh.path'],
    ["prefix 'auth'", withOverrides({ prefix: 'auth' }), 'prefix'],
    ['allowedOrigins not an array', withOverrides({ allowedOrigins: 'https://a.com' }), 'allowedOrigins'],
    ['allowedOrigins with a path', withOverrides({ allowedOrigins: ['https://a.com/x'] }), 'allowedOrigins'],
    ['allowedOrigins with a trailing slash', withOverrides({ allowedOrigins: ['https://a.com/'] }), 'allowedOrigins'],
    ['allowedOrigins garbage', withOverrides({ allowedOrigins: ['not a url'] }), 'allowedOrigins'],
    ['allowedOrigins non-string', withOverrides({ allowedOrigins: [42] }), 'allowedOrigins'],
    ['loginRateLimit { max: 0 }', withOverrides({ loginRateLimit: { max: 0 } }), 'loginRateLimit.max'],
    ['loginRateLimit { timeWindow: 0 }', withOverrides({ loginRateLimit: { max: 5, timeWindow: 0 } }), 'loginRateLimit.timeWindow'],
    ["loginRateLimit 'x'", withOverrides({ loginRateLimit: 'x' }), 'loginRateLimit'],
    ['loginRateLimit true', withOverrides({ loginRateLimit: true }), 'loginRateLimit'],
    ['storeTimeout 0', withOverrides({ storeTimeout: 0 }), 'storeTimeout'],
    ['sweepInterval 10', withOverrides({ sweepInterval: 10 }), 'sweepInterval'],
    ['verifyCacheSize -1', withOverrides({ verifyCacheSize: -1 }), 'verifyCacheSize'],
    ['store missing methods', withOverrides({ store: { createSession: noop, rotate: noop } }), 'store'],
    ['store null', withOverrides({ store: null }), 'store'],
    ['verifyCredentials missing while login is enabled', without('verifyCredentials'), 'verifyCredentials'],
    ['verifyCredentials not a function', withOverrides({ verifyCredentials: 'yes' }), 'verifyCredentials'],
    ['loadUser not a function', withOverrides({ loadUser: {} }), 'loadUser'],
    ["issuer ''", withOverrides({ issuer: '' }), 'issuer'],
    ['audience a number', withOverrides({ audience: 7 }), 'audience']
  ]
  for (const [label, options, option] of cases) {
    await bootFails(t, options, option, label)
  }
})

t.test('error messages say what is wrong', async (t) => {
  const app = Fastify()
  app.register(tokenAuth, { ...baseOptions(), accessTokenSecret: 'short' })
  await t.rejects(async () => { await app.ready() }, { message: /at least 32 bytes, got 5/ })
  await app.close()

  const typo = Fastify()
  typo.register(tokenAuth, { ...baseOptions(), refreshTokenTTL: 60 } as unknown as TokenAuthOptions)
  await t.rejects(async () => { await typo.ready() }, { message: /unknown option; valid options are .*refreshTokenTtl/ })
  await typo.close()

  const store = Fastify()
  store.register(tokenAuth, { ...baseOptions(), store: { createSession: noop } } as unknown as TokenAuthOptions)
  await t.rejects(async () => { await store.ready() }, { message: /missing getSession, rotate, revokeSession, revokeUserSessions, listUserSessions, updateUserClaims, revokedSince, sweep, close/ })
  await store.close()

  const big = Fastify()
  big.register(tokenAuth, { ...baseOptions(), accessTokenTtl: 10n } as unknown as TokenAuthOptions)
  await t.rejects(async () => { await big.ready() }, { message: /got 10$/ }, 'a value JSON cannot describe is still named')
  await big.close()

  const secret = Fastify()
  secret.register(tokenAuth, { ...baseOptions(), accessTokenSecret: 'x'.repeat(31) })
  const error = await secret.ready().then(() => null, (e: Error) => e)
  t.notOk(error?.message.includes('x'.repeat(31)), 'the message never echoes a secret')
  await secret.close()
})

t.test('verifyCredentials may be left out when routes.login is false', async (t) => {
  for (const routes of [{ login: false }, false] as const) {
    const app = Fastify()
    const options = without('verifyCredentials')
    app.register(tokenAuth, { ...options, routes } as unknown as TokenAuthOptions)
    await t.resolves(async () => { await app.ready() }, `routes: ${JSON.stringify(routes)}`)
    const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
    t.equal(login.statusCode, 404, 'no login route')
    const refresh = await app.inject({ method: 'POST', url: '/auth/refresh' })
    t.equal(refresh.statusCode, routes === false ? 404 : 401, 'refresh route present unless every route is off')
    if (routes === false) t.equal(refresh.json().error, 'Not Found')
    else t.equal(refresh.json().code, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN')
    await app.close()
  }
})

t.test('every option set to a valid value', async (t) => {
  const store = new MemoryStore()
  const app = Fastify()
  await app.register(tokenAuth, {
    accessTokenSecret: ACCESS_SECRET,
    refreshTokenSecret: REFRESH_SECRET,
    accessTokenTtl: 300,
    refreshTokenTtl: 3600,
    sessionMaxAge: 7200,
    reuseGrace: 0,
    reuseGraceLimit: 1,
    issuer: 'https://issuer.example',
    audience: 'api',
    clockTolerance: 300,
    verifyCredentials: baseOptions().verifyCredentials,
    loadUser: async (id) => ({ id }),
    store,
    prefix: '/api/auth/',
    routes: { login: { path: '/sign-in' }, refresh: { path: '/token' }, logout: { path: '/sign-out' }, sessions: false },
    refreshTokenTransport: 'both',
    cookie: { name: 'rt', secure: true, sameSite: 'lax', hostPrefix: true, path: '/' },
    allowedOrigins: ['https://app.example.com', 'http://localhost:3000'],
    loginRateLimit: { max: 3, timeWindow: 1000 },
    storeTimeout: 100,
    sweepInterval: 1000,
    verifyCacheSize: 0
  })
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ sub: request.user.sub, iss: request.user.iss, aud: request.user.aud }))
  await t.resolves(async () => { await app.ready() })
  t.equal(app.tokenAuth.store, store, 'the store passed in is used')

  const login = await app.inject({ method: 'POST', url: '/api/auth/sign-in', headers: { origin: 'https://app.example.com' }, payload: { username: USERNAME, password: PASSWORD } })
  t.equal(login.statusCode, 200)
  t.equal(login.json().expiresIn, 300)
  const cookie = refreshCookie(login, '__Host-rt')
  t.ok(cookie, 'the cookie is named __Host-rt')
  t.equal(cookie?.path, '/')
  t.equal(cookie?.sameSite, 'Lax')
  t.equal(cookie?.secure, true)
  t.equal(cookie?.httpOnly, true)
  t.equal(cookie?.domain, undefined)
  t.ok((cookie?.maxAge as number) >= 3599 && (cookie?.maxAge as number) <= 3600, 'Max-Age is the refresh lifetime (floored to whole seconds)')
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${login.json().accessToken}` } })
  t.equal(me.statusCode, 200)
  t.same(me.json(), { sub: 'user-1', iss: 'https://issuer.example', aud: 'api' })
  const refresh = await app.inject({ method: 'POST', url: '/api/auth/token', payload: { refreshToken: cookie?.value } })
  t.equal(refresh.statusCode, 200, 'body transport works under the renamed route')
  t.type(refresh.json().refreshToken, 'string')
  const logout = await app.inject({ method: 'POST', url: '/api/auth/sign-out', payload: { refreshToken: refresh.json().refreshToken } })
  t.equal(logout.statusCode, 204)
  t.equal((await app.inject({ method: 'GET', url: '/api/auth/sessions' })).statusCode, 404, 'sessions route left out')
  await app.close()
})

t.test('Buffer secrets work', async (t) => {
  const app = Fastify()
  await app.register(tokenAuth, { ...baseOptions(), accessTokenSecret: Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7)), refreshTokenSecret: Buffer.from(Array.from({ length: 48 }, (_, i) => i * 5)) })
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ sub: request.user.sub }))
  await t.resolves(async () => { await app.ready() })
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(login.statusCode, 200)
  const token = refreshCookie(login)?.value as string
  t.ok(token)
  const me = await app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${login.json().accessToken}` } })
  t.equal(me.statusCode, 200)
  t.same(me.json(), { sub: 'user-1' })
  const refresh = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: token } })
  t.equal(refresh.statusCode, 200)
  t.ok(refreshCookie(refresh)?.value)
  await app.close()
})

t.test('a 32-byte secret is enough; counted in bytes, not characters', async (t) => {
  const ok = Fastify()
  ok.register(tokenAuth, { ...baseOptions(), accessTokenSecret: 'éàüöñçøåæœßðþ¿¡ú' })
  await t.resolves(async () => { await ok.ready() }, '16 two-byte characters are 32 bytes')
  await ok.close()
})

t.test('path options: empty prefix, empty route path, a route given without a path', async (t) => {
  await bootFails(t, withOverrides({ routes: { login: { path: '' } } }), 'routes.login.path', 'empty route path')
  await bootFails(t, withOverrides({ prefix: 3 }), 'prefix', 'numeric prefix')
  await bootFails(t, withOverrides({ issuer: () => 'x' }), 'issuer', 'a function where a string belongs')
  await bootFails(t, withOverrides({ audience: Buffer.from('x') }), 'audience', 'a Buffer where a string belongs')
  await bootFails(t, withOverrides({ cookie: { name: Symbol('x') } }), 'cookie.name', 'a value JSON cannot show')

  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(tokenAuth, { ...baseOptions(), prefix: '', routes: { login: {} } } as TokenAuthOptions)
  const response = await app.inject({ method: 'POST', url: '/login', payload: { username: 'alice', password: 'correct-horse-battery-staple' } })
  t.equal(response.statusCode, 200, 'routes at the root with prefix ""; login keeps its default path')
  t.match(response.headers['set-cookie'], /Path=\/;/, 'the cookie path falls back to "/"')
})

t.test('error messages show the offending value', async (t) => {
  const messageOf = async (options: Options): Promise<string> => {
    const app = Fastify()
    app.register(tokenAuth, options as unknown as TokenAuthOptions)
    const error = await app.ready().then(() => null, (e: Error) => e)
    await app.close()
    return error?.message ?? ''
  }
  t.match(await messageOf(withOverrides({ issuer: () => 'x' })), /got a function/)
  t.match(await messageOf(withOverrides({ audience: Buffer.from('x') })), /got a Buffer/)
  t.match(await messageOf(withOverrides({ cookie: { name: Symbol('x') } })), /got Symbol\(x\)/)
  t.match(await messageOf(withOverrides({ accessTokenTtl: 10n })), /got 10/)
})
