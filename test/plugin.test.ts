import { EventEmitter } from 'node:events'
import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import fastifyRateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import { baseOptions, logCapture, login, me, PASSWORD, refresh, refreshCookie, sleep, USER_ID, USERNAME } from './helpers.js'

/** A MemoryStore that counts calls and can be made to fail its sweeps. */
class SpyStore extends MemoryStore {
  sweeps = 0
  closes = 0
  failSweep = false
  override async sweep (now: number): Promise<number> {
    this.sweeps++
    if (this.failSweep) throw new Error('sweep exploded')
    return await super.sweep(now)
  }

  override async close (): Promise<void> {
    this.closes++
    await super.close()
  }
}

async function app (t: Test, setup: (app: FastifyInstance) => unknown, logger?: object): Promise<FastifyInstance> {
  const instance = Fastify(logger === undefined ? {} : { logger })
  t.teardown(() => instance.close())
  await setup(instance)
  await instance.ready()
  return instance
}

function protect (instance: FastifyInstance, path = '/me'): void {
  instance.get(path, { onRequest: instance.authenticate }, async (request) => ({ id: request.user.sub, sid: request.user.sid }))
}

t.test('works when the app registered @fastify/cookie first', async (t) => {
  const server = await app(t, async (instance) => {
    await instance.register(fastifyCookie, { secret: 'app-cookie-signing-secret-0123456789' })
    await instance.register(tokenAuth, baseOptions())
    protect(instance)
    instance.get('/app-cookie', async (request, reply) => {
      reply.setCookie('theme', 'dark', { path: '/', signed: true })
      return { seen: request.cookies.prefs ?? null }
    })
  })
  const { response, accessToken, refreshToken } = await login(server)
  const cookie = refreshCookie(response)
  t.equal(response.statusCode, 200)
  t.equal(cookie?.httpOnly, true)
  t.equal(cookie?.path, '/auth')
  t.equal((await me(server, accessToken)).statusCode, 200)
  const rotated = await refresh(server, refreshToken)
  t.equal(rotated.statusCode, 200, 'our refresh route reads the cookie through the app\'s @fastify/cookie')
  t.ok(refreshCookie(rotated)?.value)
  t.not(refreshCookie(rotated)?.value, refreshToken)

  const own = await server.inject({ method: 'GET', url: '/app-cookie', cookies: { prefs: 'compact' } })
  t.equal(own.statusCode, 200)
  t.same(own.json(), { seen: 'compact' }, 'the app still reads its cookies')
  const theme = own.cookies.find((c) => c.name === 'theme')
  t.ok(theme, 'the app still sets its cookies')
  t.same(server.unsignCookie(theme?.value as string), { valid: true, renew: false, value: 'dark' }, 'signed with the app\'s own cookie secret')
})

t.test('works when the app registered its own @fastify/jwt first; neither accepts the other\'s tokens', async (t) => {
  const server = await app(t, async (instance) => {
    await instance.register(fastifyJwt, { secret: 'the-app-own-jwt-secret-0123456789abcdef' })
    await instance.register(tokenAuth, baseOptions())
    protect(instance)
    instance.get('/app-protected', async (request) => {
      await request.jwtVerify()
      return { user: request.user }
    })
  })
  const appToken = server.jwt.sign({ sub: USER_ID, sid: 'x', jti: 'y' })
  t.type(appToken, 'string', 'the app\'s own app.jwt.sign still works')
  const ownRoute = await server.inject({ method: 'GET', url: '/app-protected', headers: { authorization: `Bearer ${appToken}` } })
  t.equal(ownRoute.statusCode, 200)
  t.equal(ownRoute.json().user.sub, USER_ID, 'and its own verification too')

  const { accessToken } = await login(server)
  t.equal((await me(server, accessToken)).statusCode, 200, 'our authenticate works')

  const appTokenToUs = await me(server, appToken)
  t.equal(appTokenToUs.statusCode, 401, 'the app\'s token is refused by our authenticate')
  t.equal(appTokenToUs.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.equal(appTokenToUs.headers['www-authenticate'], 'Bearer error="invalid_token"')

  const ourTokenToApp = await server.inject({ method: 'GET', url: '/app-protected', headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(ourTokenToApp.statusCode, 401, 'our token is refused by the app\'s request.jwtVerify()')
  t.match(ourTokenToApp.json().code, /^FST_JWT_/)
  t.throws(() => server.jwt.verify(accessToken), 'nor does app.jwt.verify accept it')
  t.same(Object.keys(server.jwt).filter((key) => ['access', 'refresh'].includes(key) || key.startsWith('tokenAuth')), [],
    'our signers are not attached to the app\'s app.jwt (they would let any code mint our tokens)')
})

t.test('works when the app registers its own @fastify/jwt after the plugin', async (t) => {
  // Regression: @fastify/jwt decorates `request.user`; when we did too, this order crashed
  // outside avvio's callback and boot hung until the plugin timeout: keep that short.
  const server = Fastify({ pluginTimeout: 1000 })
  t.teardown(() => server.close())
  await server.register(tokenAuth, baseOptions())
  server.register(fastifyJwt, { secret: 'the-app-own-jwt-secret-0123456789abcdef' })
  const booted = await server.ready().then(() => null, (error: Error & { code?: string }) => error)
  t.equal(booted?.code, undefined, 'ready() resolves (no FST_ERR_DEC_ALREADY_PRESENT for request.user)')
  if (booted !== null) return
  const { accessToken } = await login(server)
  t.throws(() => server.jwt.verify(accessToken), 'the app\'s verifier refuses our token')
  t.type(server.jwt.sign({ sub: USER_ID }), 'string')
})

t.test('the login throttle works when the app registered @fastify/rate-limit first', async (t) => {
  const server = await app(t, async (instance) => {
    await instance.register(fastifyRateLimit, { global: false })
    await instance.register(tokenAuth, baseOptions({ loginRateLimit: { max: 2, timeWindow: 60_000 } }))
    instance.get('/unlimited', async () => ({ ok: true }))
  })
  const attempt = () => server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: 'wrong-password' } })
  const first = await attempt()
  t.equal(first.statusCode, 401)
  t.equal(first.json().code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
  t.equal((await attempt()).statusCode, 401)
  const throttled = await attempt()
  t.equal(throttled.statusCode, 429)
  t.equal(throttled.json().code, 'FST_TOKEN_AUTH_LOGIN_THROTTLED')
  t.ok(Number(throttled.headers['retry-after']) > 0, 'Retry-After is set')
  t.equal(refreshCookie(throttled), undefined)
  const right = await server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(right.statusCode, 429, 'the right password is throttled too')
  for (let i = 0; i < 5; i++) t.equal((await server.inject({ method: 'GET', url: '/unlimited' })).statusCode, 200, 'the app\'s routes are not limited')
})

t.test('two instances in sibling encapsulated contexts', async (t) => {
  const server = await app(t, async (instance) => {
    await instance.register(async (child) => {
      await child.register(tokenAuth, baseOptions({ prefix: '/a' }))
      protect(child, '/a/me')
    })
    await instance.register(async (child) => {
      await child.register(tokenAuth, baseOptions({
        prefix: '/b',
        accessTokenSecret: 'second-instance-access-secret-B'.repeat(2),
        refreshTokenSecret: 'second-instance-refresh-secret-C'.repeat(2)
      }))
      protect(child, '/b/me')
    })
  })
  t.equal(server.hasDecorator('tokenAuth'), false, 'the app itself is not decorated')
  const tokens: Record<string, { access: string, refresh: string }> = {}
  for (const name of ['a', 'b']) {
    const response = await server.inject({ method: 'POST', url: `/${name}/login`, payload: { username: USERNAME, password: PASSWORD } })
    t.equal(response.statusCode, 200, `${name}: login`)
    const cookie = refreshCookie(response)
    t.equal(cookie?.path, `/${name}`, `${name}: cookie scoped to its prefix`)
    tokens[name] = { access: response.json().accessToken, refresh: cookie?.value as string }
    const mine = await server.inject({ method: 'GET', url: `/${name}/me`, headers: { authorization: `Bearer ${tokens[name].access}` } })
    t.equal(mine.statusCode, 200, `${name}: protected route`)
    const rotated = await server.inject({ method: 'POST', url: `/${name}/refresh`, cookies: { refresh_token: tokens[name].refresh } })
    t.equal(rotated.statusCode, 200, `${name}: refresh`)
  }
  const cross = await server.inject({ method: 'GET', url: '/b/me', headers: { authorization: `Bearer ${tokens.a?.access}` } })
  t.equal(cross.statusCode, 401, 'an access token of one instance is refused by the other')
  t.equal(cross.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  const crossRefresh = await server.inject({ method: 'POST', url: '/a/refresh', cookies: { refresh_token: tokens.b?.refresh as string } })
  t.equal(crossRefresh.statusCode, 401)
  t.equal(crossRefresh.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
})

t.test('decorators and helpers', async (t) => {
  const server = await app(t, async (instance) => {
    await instance.register(tokenAuth, baseOptions())
    protect(instance)
  })
  t.type(server.authenticate, 'function')
  t.equal(server.hasRequestDecorator('user'), false, 'request.user is assigned by authenticate, so @fastify/jwt can declare it in any order')
  for (const name of ['signAccessToken', 'verifyAccessToken', 'issueSession', 'rotateRefreshToken', 'revokeSession', 'revokeUserSessions', 'listSessions'] as const) {
    t.type(server.tokenAuth[name], 'function', `tokenAuth.${name}`)
  }
  t.type(server.tokenAuth.events, EventEmitter)
  t.type(server.tokenAuth.store, MemoryStore, 'the default store')

  const robot = { username: 'robot-9', role: 'robot' }
  const issued = await server.tokenAuth.issueSession({ id: 'user-9', claims: robot }, { ip: '192.0.2.1' })
  t.equal(issued.userId, 'user-9')
  const claims = server.tokenAuth.verifyAccessToken<any>(issued.accessToken)
  t.equal(claims.role, 'robot')
  t.equal((await me(server, issued.accessToken)).statusCode, 200)
  const signed = server.tokenAuth.signAccessToken('user-9', issued.sessionId, robot)
  t.equal(signed.expiresIn, 900)
  t.equal((await me(server, signed.token)).json().sid, issued.sessionId)
  const rotated = await server.tokenAuth.rotateRefreshToken(issued.refreshToken)
  t.equal(rotated.sessionId, issued.sessionId)
  const list = await server.tokenAuth.listSessions('user-9')
  t.same(list.map((s) => [s.id, s.ip, s.userAgent]), [[issued.sessionId, null, null]], 'the rotation carried no client info')
  t.equal(await server.tokenAuth.revokeSession(issued.sessionId, 'someone-else'), false)
  t.equal(await server.tokenAuth.revokeSession(issued.sessionId), true)
  const revoked = await me(server, rotated.accessToken)
  t.equal(revoked.statusCode, 401)
  t.equal(revoked.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  const again = await server.tokenAuth.issueSession({ id: 'user-9' })
  t.same(await server.tokenAuth.revokeUserSessions('user-9'), [again.sessionId])
})

t.test('NODE_ENV=production', async (t) => {
  const previous = process.env.NODE_ENV
  process.env.NODE_ENV = 'production'
  t.teardown(() => {
    if (previous === undefined) delete process.env.NODE_ENV
    else process.env.NODE_ENV = previous
  })
  const warning = /memory store keeps sessions in this process only/

  const withoutStore = logCapture()
  await app(t, (instance) => instance.register(tokenAuth, baseOptions()), { level: 'warn', stream: withoutStore.stream })
  const warnings = withoutStore.lines.filter((line) => warning.test(line.msg))
  t.equal(warnings.length, 1, 'no store: one warning')
  t.equal(warnings[0]?.level, 40, 'at warn level')

  const withStore = logCapture()
  await app(t, (instance) => instance.register(tokenAuth, baseOptions({ store: new MemoryStore() })), { level: 'warn', stream: withStore.stream })
  t.same(withStore.lines.filter((line) => warning.test(line.msg)), [], 'a store passed in: no warning')

  process.env.NODE_ENV = 'development'
  const development = logCapture()
  await app(t, (instance) => instance.register(tokenAuth, baseOptions()), { level: 'warn', stream: development.stream })
  t.same(development.lines, [], 'outside production: no warning')
})

t.test('an event listener that throws does not break login and is logged', async (t) => {
  const logs = logCapture()
  const server = await app(t, (instance) => instance.register(tokenAuth, baseOptions()), { level: 'warn', stream: logs.stream })
  server.tokenAuth.events.on('login', () => { throw new Error('listener boom') })
  server.tokenAuth.events.on('loginFailed', () => { throw new Error('listener boom 2') })
  const response = await server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(response.statusCode, 200)
  t.type(response.json().accessToken, 'string')
  t.ok(refreshCookie(response)?.value, 'the cookie is still set')
  const failed = await server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: 'nope' } })
  t.equal(failed.statusCode, 401)
  t.equal(failed.json().code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS', 'a throwing loginFailed listener does not turn 401 into 500')
  const errors = logs.lines.filter((line) => line.msg === 'fastify-token-auth: an event listener threw')
  t.equal(errors.length, 2)
  t.same(errors.map((line) => [line.level, line.event, (line.err as { message: string }).message]), [
    [50, 'login', 'listener boom'],
    [50, 'loginFailed', 'listener boom 2']
  ], 'logged at error level with the event name')
})

t.test('app.close() closes the default store, never one the app passed in', async (t) => {
  const defaultApp = Fastify()
  await defaultApp.register(tokenAuth, baseOptions())
  await defaultApp.ready()
  const store = defaultApp.tokenAuth.store
  let closed = 0
  const close = store.close.bind(store)
  store.close = async () => { closed++; await close() }
  await defaultApp.close()
  t.equal(closed, 1, 'the default memory store is closed')

  const passed = new SpyStore()
  const appStore = Fastify()
  await appStore.register(tokenAuth, baseOptions({ store: passed }))
  await appStore.ready()
  t.equal(appStore.tokenAuth.store, passed)
  await appStore.close()
  t.equal(passed.closes, 0, 'the app\'s store is the app\'s to close')
})

t.test('the sweep timer calls store.sweep and onClose clears it', async (t) => {
  const store = new SpyStore()
  const logs = logCapture()
  const server = Fastify({ logger: { level: 'warn', stream: logs.stream } })
  await server.register(tokenAuth, baseOptions({ store, sweepInterval: 1000 }))
  await server.ready()
  const issued = await server.tokenAuth.issueSession({ id: 'user-1' })
  await sleep(1100)
  t.ok(store.sweeps >= 1, 'a sweep after one interval')
  t.equal(store.size, 1, 'a live session survives the sweep')
  t.equal(server.tokenAuth.verifyAccessToken(issued.accessToken).sid, issued.sessionId)
  t.same(logs.lines, [], 'a successful sweep logs nothing')
  await server.close()
  const sweepsAtClose = store.sweeps
  await sleep(1100)
  t.equal(store.sweeps, sweepsAtClose, 'no sweep after close: the timer was cleared')
})

t.test('a failing sweep opens a store incident, logged once at error, not thrown; it ends with the next success', async (t) => {
  const store = new SpyStore()
  store.failSweep = true
  const logs = logCapture()
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  const server = await app(t, (instance) => instance.register(tokenAuth, baseOptions({ store, sweepInterval: 1000 })), { level: 'warn', stream: logs.stream })
  await sleep(2100)
  t.ok(store.sweeps >= 2, 'the sweep ran more than once')
  const incident = logs.lines.filter((line) => /token store unavailable/.test(line.msg as string))
  t.equal(incident.length, 1, 'the outage is logged once, however many sweeps fail')
  t.equal(incident[0]?.level, 50, 'at error level')
  t.match((incident[0]?.err as { message: string }).message, /sweep exploded/, 'with its cause')
  t.same(logs.lines.filter((line) => /sweeping expired sessions failed/.test(line.msg as string)), [], 'no line per failed sweep')
  t.same(unhandled, [], 'no unhandled rejection')
  const response = await server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(response.statusCode, 200, 'the app keeps working')
  const recovered = logs.lines.filter((line) => /token store available again/.test(line.msg as string))
  t.equal(recovered.length, 1, 'the first call that succeeds ends the incident')
  t.equal(recovered[0]?.level, 40)
  t.equal(recovered[0]?.unavailableResponses, 0, 'no request was answered 503')
})

t.test('registering with routes: false still decorates and protects', async (t) => {
  const server = await app(t, async (instance) => {
    await instance.register(tokenAuth, { ...baseOptions(), routes: false } as TokenAuthOptions)
    protect(instance)
  })
  const issued = await server.tokenAuth.issueSession({ id: USER_ID })
  t.equal((await me(server, issued.accessToken)).statusCode, 200)
  const missing = await server.inject({ method: 'GET', url: '/me' })
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN')
  t.equal(missing.headers['www-authenticate'], 'Bearer')
  t.equal((await server.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })).statusCode, 404)
})
