import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'
import { MemoryStore } from '../lib/stores/memory.js'
import type { TokenStore } from '../lib/stores/types.js'
import { baseOptions, INVALID_TOKEN, logCapture, login, me, pollOnly, sleep } from './helpers.js'

/** One "instance" of an app: the plugin and GET /me, over a store shared with other instances. */
async function instance (t: Test, store: TokenStore, overrides: Partial<TokenAuthOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ store, ...overrides }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

async function waitForStatus (app: FastifyInstance, token: string, status: number, timeout: number): Promise<number> {
  const started = Date.now()
  while ((await me(app, token)).statusCode !== status) {
    if (Date.now() - started > timeout) throw new Error(`no ${status} within ${timeout} ms`)
    await sleep(10)
  }
  return Date.now() - started
}

t.test('a logout on one instance is refused at once on another (pushed revocation)', async (t) => {
  const store = new MemoryStore()
  const a = await instance(t, store)
  const b = await instance(t, store)
  const { accessToken, refreshToken } = await login(a)
  t.equal((await me(b, accessToken)).statusCode, 200, 'B accepts A\'s access token')
  const logout = await b.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
  t.equal(logout.statusCode, 204)
  const refused = await me(a, accessToken)
  t.equal(refused.statusCode, 401, 'A refuses it on the very next request')
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  t.equal(refused.headers['www-authenticate'], INVALID_TOKEN)
})

t.test('without push, the poll carries a revocation to another instance within revocationPollInterval', async (t) => {
  const shared = new MemoryStore()
  const a = await instance(t, pollOnly(shared), { revocationPollInterval: 200 })
  const b = await instance(t, pollOnly(shared), { revocationPollInterval: 200 })
  const { accessToken } = await login(a)
  const revokedOnB = await b.tokenAuth.revokeUserSessions('user-1')
  t.equal(revokedOnB.length, 1)
  t.equal((await me(b, accessToken)).statusCode, 401, 'the revoking instance refuses at once')
  t.equal((await me(a, accessToken)).statusCode, 200, 'the other has not polled yet')
  const waited = await waitForStatus(a, accessToken, 401, 2000)
  t.ok(waited <= 1000, `A refused the token ${waited} ms after the revocation (poll interval 200 ms)`)
  t.equal((await me(a, accessToken)).json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
})

t.test('theft detected on one instance ends the session\'s access tokens on the others', async (t) => {
  const store = new MemoryStore()
  const a = await instance(t, store, { reuseGrace: 0 })
  const b = await instance(t, store, { reuseGrace: 0 })
  const { accessToken, refreshToken } = await login(a)
  const rotated = await b.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken } })
  t.equal(rotated.statusCode, 200, 'refresh on B')
  // Using the successor too is what makes the first token theft (an unused one is recovered).
  const used = await b.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: rotated.cookies.find((c) => c.name === 'refresh_token')!.value } })
  t.equal(used.statusCode, 200, 'B rotates its own successor')
  const replay = await a.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken } })
  t.equal(replay.statusCode, 401, 'the first token replayed on A')
  t.equal(replay.json().code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED')
  for (const app of [a, b]) {
    t.equal((await me(app, accessToken)).statusCode, 401, 'the first access token is refused everywhere')
    t.equal((await me(app, rotated.json().accessToken)).statusCode, 401, 'and so are the ones B issued')
    t.equal((await me(app, used.json().accessToken)).statusCode, 401, 'the newest one too')
  }
})

t.test('an instance started after a revocation still refuses that session\'s tokens (catch-up at boot)', async (t) => {
  const shared = new MemoryStore()
  const a = await instance(t, pollOnly(shared))
  const { accessToken, refreshToken } = await login(a)
  await a.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
  const late = await instance(t, pollOnly(shared))
  const refused = await me(late, accessToken)
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
})

t.test('a feed that fails is logged and retried; it never stops the app', async (t) => {
  const shared = new MemoryStore()
  let down = true
  const flaky: TokenStore = {
    ...pollOnly(shared),
    revokedSince: async (since) => {
      if (down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
      return await shared.revokedSince(since)
    },
    subscribeRevocations: async () => { throw new Error('connect ECONNREFUSED 127.0.0.1:6379') }
  }
  const logs = logCapture()
  const app = Fastify({ logger: { level: 'warn', stream: logs.stream } })
  await app.register(tokenAuth, baseOptions({ store: flaky, revocationPollInterval: 100 }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub }))
  t.teardown(() => app.close())
  await app.ready()
  const [incident, ...more] = logs.lines.filter((line) => line.level >= 50)
  t.match(incident?.msg, /token store unavailable/, 'the failed boot read opens a store incident')
  t.match((incident?.err as { message: string }).message, /ECONNREFUSED/, 'logged with its cause')
  t.same(more, [], 'the subscription failing meanwhile is part of it, not another line')

  const other = await instance(t, pollOnly(shared))
  const { accessToken } = await login(app)
  await other.tokenAuth.revokeUserSessions('user-1')
  await sleep(250)
  t.equal((await me(app, accessToken)).statusCode, 200, 'while the feed is down, the revocation has not arrived')
  down = false
  await waitForStatus(app, accessToken, 401, 2000)
  t.pass('after recovery the poll catches up without a restart')
  t.ok(logs.lines.some((line) => /token store available again/.test(line.msg)), 'the end of the incident is logged')
})

t.test('a push subscription that failed at boot is retried with the poll', async (t) => {
  const shared = new MemoryStore()
  let attempts = 0
  const store: TokenStore = {
    ...pollOnly(shared),
    subscribeRevocations: async (listener) => {
      if (++attempts === 1) throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
      return await shared.subscribeRevocations(listener)
    }
  }
  // The retry rides on the poll (100 ms); the check below runs right after the revocation,
  // before any poll could carry it, so a 401 there means the retried subscription pushed it.
  const app = await instance(t, store, { revocationPollInterval: 100 })
  await waitFor(() => attempts >= 2)
  const other = await instance(t, pollOnly(shared), { revocationPollInterval: 60_000 })
  const { accessToken } = await login(app)
  await other.tokenAuth.revokeUserSessions('user-1')
  t.equal((await me(app, accessToken)).statusCode, 401, 'pushed at once once the retry subscribed')
  t.equal(attempts, 2, 'no more attempts once subscribed')
})

t.test('closing while a subscription is being made lets it go at once', async (t) => {
  const shared = new MemoryStore()
  let attempts = 0
  let release: () => void = () => {}
  let unsubscribed = 0
  const store: TokenStore = {
    ...pollOnly(shared),
    subscribeRevocations: async () => {
      if (++attempts === 1) throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
      await new Promise<void>((resolve) => { release = resolve })
      return async () => { unsubscribed++ }
    }
  }
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ store, revocationPollInterval: 100 }))
  await app.ready()
  await waitFor(() => attempts >= 2)
  await app.close()
  t.equal(unsubscribed, 0, 'the subscription is still pending')
  release()
  await waitFor(() => unsubscribed === 1)
  t.equal(unsubscribed, 1, 'and is released as soon as it arrives')
})

async function waitFor (condition: () => boolean, timeout = 3000): Promise<void> {
  const started = Date.now()
  while (!condition()) {
    if (Date.now() - started > timeout) throw new Error('condition not met in time')
    await sleep(10)
  }
}
