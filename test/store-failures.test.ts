import Fastify, { type FastifyError, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { collectMetrics } from '../lib/index.js'
import { MemoryStore } from '../lib/stores/memory.js'
import type {
  CreateOptions, CreateResult, RevocationContext, RevocationRecord, RotateRequest, RotateResult, SessionRecord
} from '../lib/stores/types.js'
import { baseOptions, build, logCapture, login, me, PASSWORD, refresh, refreshCookie, USERNAME } from './helpers.js'

const OUTAGE = 'connect ECONNREFUSED 127.0.0.1:6379'

/** A MemoryStore behind a switch: `down` rejects every call, `hang` never answers. */
class FlakyStore extends MemoryStore {
  down = false
  hang = false
  calls = 0

  async #gate (): Promise<void> {
    this.calls++
    if (this.hang) await new Promise<never>(() => {})
    if (this.down) throw new Error(OUTAGE)
  }

  override async createSession (session: SessionRecord, options?: CreateOptions): Promise<CreateResult> {
    await this.#gate()
    return await super.createSession(session, options)
  }

  override async getSession (sessionId: string, now: number): Promise<SessionRecord | null> {
    await this.#gate()
    return await super.getSession(sessionId, now)
  }

  override async updateUserClaims (userId: string, claims: Record<string, unknown>, context: RevocationContext): Promise<RevocationRecord[]> {
    await this.#gate()
    return await super.updateUserClaims(userId, claims, context)
  }

  override async rotate (request: RotateRequest): Promise<RotateResult> {
    await this.#gate()
    return await super.rotate(request)
  }

  override async revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null> {
    await this.#gate()
    return await super.revokeSession(sessionId, userId, context)
  }

  override async revokeUserSessions (userId: string, context: RevocationContext): Promise<string[]> {
    await this.#gate()
    return await super.revokeUserSessions(userId, context)
  }

  override async revokedSince (since: number): Promise<RevocationRecord[]> {
    await this.#gate()
    return await super.revokedSince(since)
  }

  override async listUserSessions (userId: string, now: number): Promise<SessionRecord[]> {
    await this.#gate()
    return await super.listUserSessions(userId, now)
  }

  override async sweep (now: number): Promise<number> {
    await this.#gate()
    return await super.sweep(now)
  }

  override async close (): Promise<void> {
    await this.#gate()
    return await super.close()
  }
}

/** 503, coded, Retry-After, no Set-Cookie at all, no internals in the body. */
function assertUnavailable (t: Test, response: LightMyRequestResponse, label: string): void {
  t.equal(response.statusCode, 503, `${label}: 503`)
  t.equal(response.json().code, 'FST_TOKEN_AUTH_STORE_UNAVAILABLE', `${label}: coded`)
  t.equal(response.json().message, 'Token store unavailable, retry later', `${label}: generic message`)
  t.equal(response.headers['retry-after'], '1', `${label}: Retry-After`)
  t.equal(response.headers['set-cookie'], undefined, `${label}: no Set-Cookie (nothing issued, nothing cleared)`)
  t.notOk(response.body.includes('ECONNREFUSED'), `${label}: the store error is not leaked`)
  t.notOk(response.body.includes('6379'), `${label}: nor its address`)
  t.notOk(response.body.includes('stack'), `${label}: no stack`)
}

t.test('login during an outage: 503, nothing issued; works again after recovery', async (t) => {
  const store = new FlakyStore()
  const app = await build(t, { store })
  store.down = true
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  assertUnavailable(t, response, 'login')
  t.equal(response.json().accessToken, undefined, 'no access token')
  t.equal(response.headers['cache-control'], 'no-store')
  t.equal(store.size, 0)

  store.down = false
  const { response: recovered, accessToken } = await login(app)
  t.equal(recovered.statusCode, 200, 'no restart needed')
  t.ok(refreshCookie(recovered)?.value)
  t.equal((await me(app, accessToken)).statusCode, 200)
})

t.test('refresh during an outage keeps the cookie; the same token refreshes after recovery', async (t) => {
  const store = new FlakyStore()
  const app = await build(t, { store })
  const { refreshToken } = await login(app)
  store.down = true
  const failed = await refresh(app, refreshToken)
  assertUnavailable(t, failed, 'refresh')

  const again = await refresh(app, refreshToken)
  assertUnavailable(t, again, 'refresh retried during the outage')

  store.down = false
  const recovered = await refresh(app, refreshToken)
  t.equal(recovered.statusCode, 200, 'the very same refresh token works once the store is back')
  const rotated = refreshCookie(recovered)
  t.ok(rotated?.value)
  t.not(rotated?.value, refreshToken, 'and it was rotated, not replayed')
  t.equal(rotated?.httpOnly, true)
  t.equal((await me(app, recovered.json().accessToken)).statusCode, 200)
  const next = await refresh(app, rotated?.value as string)
  t.equal(next.statusCode, 200, 'the session carries on normally')
})

t.test('logout during an outage: 503, cookie kept; logout works after recovery', async (t) => {
  const store = new FlakyStore()
  const app = await build(t, { store })
  const { refreshToken, accessToken } = await login(app)
  store.down = true
  const failed = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
  assertUnavailable(t, failed, 'logout')
  const all = await app.inject({ method: 'POST', url: '/auth/logout?all=true', headers: { authorization: `Bearer ${accessToken}` } })
  assertUnavailable(t, all, 'logout ?all=true')
  const bearer = await app.inject({ method: 'POST', url: '/auth/logout', headers: { authorization: `Bearer ${accessToken}` } })
  assertUnavailable(t, bearer, 'logout with a bearer token only')
  t.equal((await me(app, accessToken)).statusCode, 200, 'a failed logout revoked nothing')

  store.down = false
  const done = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
  t.equal(done.statusCode, 204)
  const cleared = refreshCookie(done)
  t.equal(cleared?.value, '', 'the cookie is cleared now')
  t.equal(cleared?.path, '/auth')
  const revoked = await me(app, accessToken)
  t.equal(revoked.statusCode, 401)
  t.equal(revoked.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  const dead = await refresh(app, refreshToken)
  t.equal(dead.statusCode, 401)
  t.equal(dead.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
})

t.test('session routes answer 503 during an outage', async (t) => {
  const store = new FlakyStore()
  const app = await build(t, { store })
  const { accessToken } = await login(app)
  const sessionId = (await me(app, accessToken)).json().sid
  store.down = true
  const list = await app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${accessToken}` } })
  assertUnavailable(t, list, 'GET /auth/sessions')
  const remove = await app.inject({ method: 'DELETE', url: `/auth/sessions/${sessionId}`, headers: { authorization: `Bearer ${accessToken}` } })
  assertUnavailable(t, remove, 'DELETE /auth/sessions/:id')

  store.down = false
  const listed = await app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(listed.statusCode, 200)
  t.same(listed.json().sessions.map((s: { id: string, current: boolean }) => [s.id, s.current]), [[sessionId, true]])
})

t.test('protected routes keep answering during an outage (no store on the hot path)', async (t) => {
  const store = new FlakyStore()
  const app = await build(t, { store })
  const { accessToken } = await login(app)
  store.down = true
  const callsBefore = store.calls
  for (let i = 0; i < 3; i++) {
    const response = await me(app, accessToken)
    t.equal(response.statusCode, 200)
    t.equal(response.json().id, 'user-1')
  }
  const bad = await me(app, 'not-a-token')
  t.equal(bad.statusCode, 401, 'bad tokens are still 401, not 503')
  t.equal(bad.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  t.equal(store.calls, callsBefore, 'the store was not called')
})

t.test('a hanging store answers 503 after storeTimeout', async (t) => {
  const store = new FlakyStore()
  const app = await build(t, { store, storeTimeout: 200 })
  const { refreshToken } = await login(app)
  store.hang = true
  const started = Date.now()
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  const elapsed = Date.now() - started
  assertUnavailable(t, response, 'login against a hanging store')
  t.ok(elapsed >= 150, 'the plugin waited for the store')
  // Far from the 5 s default whatever the machine's load: the point is which deadline applied.
  t.ok(elapsed < 2500, `answered well before the 5 s default (${elapsed} ms)`)
  assertUnavailable(t, await refresh(app, refreshToken), 'refresh against a hanging store')
  store.hang = false
  t.equal((await refresh(app, refreshToken)).statusCode, 200, 'the store answers again: the same token works')
})

async function appWithErrorHandler (t: Test, store: FlakyStore) {
  const app = Fastify()
  t.teardown(() => app.close())
  const seen: Array<{ code: string | undefined, statusCode: number | undefined }> = []
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    seen.push({ code: error.code, statusCode: error.statusCode })
    reply.status(error.statusCode ?? 500).send({ custom: true, code: error.code, detail: 'added by the app' })
  })
  await app.register(tokenAuth, baseOptions({ store }))
  await app.ready()
  return { app, seen }
}

t.test('an app error handler registered before the plugin receives our coded errors', async (t) => {
  const store = new FlakyStore()
  const { app, seen } = await appWithErrorHandler(t, store)

  store.down = true
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.same(seen, [{ code: 'FST_TOKEN_AUTH_STORE_UNAVAILABLE', statusCode: 503 }], 'the app handler was called with our coded error')
  t.equal(response.statusCode, 503, 'with the status it chose')
  t.equal(response.json().code, 'FST_TOKEN_AUTH_STORE_UNAVAILABLE')
  t.equal(response.headers['retry-after'], '1', 'Retry-After survives the app handler')
  t.equal(response.headers['set-cookie'], undefined)
  t.notOk(response.body.includes('ECONNREFUSED'))

  store.down = false
  const wrong = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: 'nope' } })
  t.equal(wrong.statusCode, 401)
  t.equal(wrong.json().code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
  t.equal(wrong.headers['retry-after'], undefined, 'no Retry-After on a 401')
  t.same(seen.at(-1), { code: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS', statusCode: 401 })
})

t.test('the body an app error handler sends from our routes reaches the client unchanged', async (t) => {
  const store = new FlakyStore()
  const { app } = await appWithErrorHandler(t, store)
  store.down = true
  const outage = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(outage.statusCode, 503)
  t.same(outage.json(), { custom: true, code: 'FST_TOKEN_AUTH_STORE_UNAVAILABLE', detail: 'added by the app' },
    'our 5xx response schema must not strip the fields the app\'s handler added')
  store.down = false
  const missing = await app.inject({ method: 'POST', url: '/auth/refresh' })
  t.equal(missing.statusCode, 401)
  t.same(missing.json(), { custom: true, code: 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', detail: 'added by the app' },
    'nor does the 4xx one')
})

t.test('an outage under concurrent traffic is logged twice, not once per 503; metrics count the 503s by route', async (t) => {
  const store = new FlakyStore()
  const logs = logCapture()
  const app = Fastify({ logger: { level: 'info', stream: logs.stream } })
  t.teardown(() => app.close())
  // Sixteen logins of one account in a moment: the login limits are not what this test is about.
  await app.register(tokenAuth, baseOptions({ store, loginRateLimit: false, accountRateLimit: false }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub }))
  const metrics = collectMetrics(app.tokenAuth.events)
  const sessions = await Promise.all(Array.from({ length: 8 }, () => login(app)))

  store.down = true
  const answers = await Promise.all([
    ...sessions.map((session) => refresh(app, session.refreshToken)),
    ...sessions.map(() => app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })),
    app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: sessions[0]?.refreshToken as string } }),
    app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${sessions[0]?.accessToken as string}` } })
  ])
  for (const [i, answer] of answers.entries()) assertUnavailable(t, answer, `request ${i}`)
  t.equal((await me(app, sessions[1]?.accessToken as string)).statusCode, 200, 'protected routes still answer')

  const errors = logs.lines.filter((line) => line.level >= 50)
  t.equal(errors.length, 1, 'one error line for the whole outage')
  t.match(errors[0]?.msg, /token store unavailable/)
  t.equal((errors[0]?.err as { message: string }).message, OUTAGE, 'with the cause')
  t.notOk(logs.lines.some((line) => line.level >= 50 && line.msg === 'Token store unavailable, retry later'), 'no error line per 503')

  store.down = false
  t.equal((await refresh(app, sessions[2]?.refreshToken as string)).statusCode, 200, 'the same token refreshes after recovery')
  const recovered = logs.lines.filter((line) => /token store available again/.test(line.msg))
  t.equal(recovered.length, 1, 'one line when it ends')
  t.equal(recovered[0]?.level, 40)
  t.equal(recovered[0]?.unavailableResponses, answers.length, 'with the count of requests answered 503')
  t.ok(typeof recovered[0]?.unavailableMs === 'number' && recovered[0].unavailableMs >= 0)
  t.equal(logs.lines.filter((line) => line.level >= 50).length, 1, 'still one error line')

  const counts = metrics.snapshot()
  t.equal(counts['fastify_token_auth_unavailable_responses_total{route="refresh"}'], 8)
  t.equal(counts['fastify_token_auth_unavailable_responses_total{route="login"}'], 8)
  t.equal(counts['fastify_token_auth_unavailable_responses_total{route="logout"}'], 1)
  t.equal(counts['fastify_token_auth_unavailable_responses_total{route="sessions"}'], 1)
  metrics.close()
})
