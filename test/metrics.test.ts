import Fastify, { type FastifyInstance, type InjectOptions } from 'fastify'
import t, { type Test } from 'tap'
import { type MetricsRouteOptions, registerMetricsRoute } from '../examples/metrics.js'
import tokenAuth, { type AuthUser, collectMetrics, PROMETHEUS_CONTENT_TYPE } from '../lib/index.js'
import { baseOptions, BOB, BOB_PASSWORD, build, decodePayload, DEMO_CLAIMS, login, me, PASSWORD, refresh, refreshCookie, USER_ID, USERNAME } from './helpers.js'

const P = 'fastify_token_auth_'
const USER_AGENT = 'metrics-test-agent/1.0'

/** Every series at 0: the exposition lists each known label value from the start. */
const ZERO = {
  [`${P}logins_total`]: 0,
  [`${P}login_failures_total`]: 0,
  [`${P}refreshes_total{grace="false"}`]: 0,
  [`${P}refreshes_total{grace="true"}`]: 0,
  [`${P}refresh_recoveries_total`]: 0,
  [`${P}reuse_detections_total`]: 0,
  [`${P}revocations_total{reason="logout"}`]: 0,
  [`${P}revocations_total{reason="logout-all"}`]: 0,
  [`${P}revocations_total{reason="reuse"}`]: 0,
  [`${P}revocations_total{reason="revoked"}`]: 0,
  [`${P}revocations_total{reason="user-unavailable"}`]: 0,
  [`${P}revocations_total{reason="session-limit"}`]: 0,
  [`${P}revocations_total{reason="refresh-denied"}`]: 0,
  [`${P}revocations_total{reason="other"}`]: 0,
  [`${P}unavailable_responses_total{route="login"}`]: 0,
  [`${P}unavailable_responses_total{route="refresh"}`]: 0,
  [`${P}unavailable_responses_total{route="reauthenticate"}`]: 0,
  [`${P}unavailable_responses_total{route="logout"}`]: 0,
  [`${P}unavailable_responses_total{route="revoke"}`]: 0,
  [`${P}unavailable_responses_total{route="introspect"}`]: 0,
  [`${P}unavailable_responses_total{route="sessions"}`]: 0,
  [`${P}unavailable_responses_total{route="dbscRegistration"}`]: 0,
  [`${P}unavailable_responses_total{route="dbscRefresh"}`]: 0
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"'
/** A sample line of format 0.0.4: name, optional labels, a value (no timestamps here). */
const SAMPLE = new RegExp(`^(${NAME})((?:\\{${LABEL}(?:,${LABEL})*\\})?) (-?\\d+(?:\\.\\d+)?(?:[eE][+-]?\\d+)?|NaN|[+-]Inf)$`)

/**
 * Parses Prometheus text exposition 0.0.4 strictly, asserting its rules on the way: every line
 * is a HELP, TYPE or sample line; HELP and TYPE appear once per metric, before its samples; a
 * metric's samples are contiguous; counters end in `_total`; the text ends with a newline.
 * Returns the samples keyed like `snapshot()`.
 */
function parseExposition (t: Test, text: string): Record<string, number> {
  t.ok(text.endsWith('\n'), 'the exposition ends with a newline')
  const help = new Set<string>()
  const type = new Map<string, string>()
  const finished = new Set<string>()
  const samples: Record<string, number> = {}
  let current: string | undefined
  for (const line of text.slice(0, -1).split('\n')) {
    const comment = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line)
    if (comment !== null) {
      const [, kind, name, rest] = comment as unknown as [string, string, string, string]
      t.match(name, new RegExp(`^${NAME}$`), `${kind} names a valid metric: ${line}`)
      if (kind === 'HELP') {
        t.notOk(help.has(name), `one HELP for ${name}`)
        help.add(name)
      } else {
        t.notOk(type.has(name), `one TYPE for ${name}`)
        t.equal(rest, 'counter', `${name} is a counter`)
        t.match(name, /_total$/, `counter ${name} ends in _total`)
        type.set(name, rest)
      }
      continue
    }
    const sample = SAMPLE.exec(line)
    if (sample === null) {
      t.fail(`not a valid exposition line: ${JSON.stringify(line)}`)
      continue
    }
    const [, name, labels, value] = sample as unknown as [string, string, string, string]
    t.ok(help.has(name) && type.has(name), `HELP and TYPE come before the samples of ${name}`)
    if (current !== name) {
      t.notOk(finished.has(name), `the samples of ${name} are contiguous`)
      if (current !== undefined) finished.add(current)
      current = name
    }
    const key = name + labels
    t.notOk(key in samples, `one sample per series: ${key}`)
    samples[key] = Number(value)
  }
  t.same([...help].sort(), [...type.keys()].sort(), 'every metric has both HELP and TYPE')
  return samples
}

function post (app: FastifyInstance, url: string, options: Partial<InjectOptions> = {}) {
  return app.inject({ method: 'POST', url, headers: { 'user-agent': USER_AGENT, ...options.headers }, ...options } as InjectOptions)
}

async function loginWithAgent (app: FastifyInstance, username = USERNAME, password = PASSWORD) {
  const response = await post(app, '/auth/login', { payload: { username, password } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  const accessToken = response.json().accessToken as string
  return { accessToken, refreshToken: refreshCookie(response)!.value, sid: decodePayload(accessToken).sid as string }
}

/** An app whose `loadUser` refuses the ids in `disabled`, to reach the user-unavailable revocation. */
async function buildWithLoadUser (t: Test, disabled: Set<string>) {
  return await build(t, { loadUser: async (id): Promise<AuthUser | null> => disabled.has(id) ? null : { id, claims: DEMO_CLAIMS[id] ?? {} } })
}

t.test('every flow through the routes counts exactly once, and nothing else counts', async (t) => {
  const disabled = new Set<string>()
  const app = await buildWithLoadUser(t, disabled)
  const increments: Array<[string, Record<string, string>, number]> = []
  const metrics = collectMetrics(app.tokenAuth.events, { onIncrement: (...args) => { increments.push(args) } })
  t.teardown(() => metrics.close())
  t.same(metrics.snapshot(), ZERO, 'every series starts at 0')

  // Six sessions: four of alice, two of bob.
  const a1 = await loginWithAgent(app)
  const a2 = await loginWithAgent(app)
  const a3 = await loginWithAgent(app)
  const a4 = await loginWithAgent(app)
  const b1 = await loginWithAgent(app, BOB, BOB_PASSWORD)
  const b2 = await loginWithAgent(app, BOB, BOB_PASSWORD)

  // Two refused logins: a wrong password and an unknown user.
  for (const payload of [{ username: USERNAME, password: 'wrong-password' }, { username: 'mallory', password: PASSWORD }]) {
    const refused = await post(app, '/auth/login', { payload })
    t.equal(refused.statusCode, 401, `${payload.username}: 401`)
    t.equal(refused.json().code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
  }
  // Refused before any credential check: not a login failure.
  const invalid = await post(app, '/auth/login', { payload: { username: USERNAME } })
  t.equal(invalid.statusCode, 400, 'a body without password: 400')
  t.equal(invalid.json().code, 'FST_ERR_VALIDATION')

  // a1: rotated, the predecessor answered again in the grace window, rotated again, then the
  // first token presented again: two generations old, so theft.
  const r1 = await refresh(app, a1.refreshToken)
  t.equal(r1.statusCode, 200, 'first refresh: rotated')
  const again = await refresh(app, a1.refreshToken)
  t.equal(again.statusCode, 200, 'the predecessor inside the grace window: answered')
  t.equal(refreshCookie(again)?.value, refreshCookie(r1)?.value, 'with the same successor')
  const r2 = await refresh(app, refreshCookie(r1)!.value)
  t.equal(r2.statusCode, 200, 'the successor: rotated')
  const stolen = await refresh(app, a1.refreshToken)
  t.equal(stolen.statusCode, 401, 'two generations old: 401')
  t.equal(stolen.json().code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED')
  t.equal((await me(app, r2.json().accessToken)).json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED', 'the session ended')

  // Refused refresh tokens that end nothing: no count.
  const garbage = await refresh(app, 'garbage')
  t.equal(garbage.statusCode, 401)
  t.equal(garbage.json().code, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN')
  const missing = await post(app, '/auth/refresh')
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN')

  // a2 logs out with its cookie; a second logout ends nothing.
  for (const label of ['logout', 'repeated logout']) {
    const loggedOut = await post(app, '/auth/logout', { cookies: { refresh_token: a2.refreshToken } })
    t.equal(loggedOut.statusCode, 204, `${label}: 204`)
    t.equal(refreshCookie(loggedOut)?.value, '', `${label}: cookie cleared`)
  }

  // a3 ends a4 by id; an unknown id ends nothing.
  const bearer = { authorization: `Bearer ${a3.accessToken}` }
  const deleted = await app.inject({ method: 'DELETE', url: `/auth/sessions/${a4.sid}`, headers: bearer })
  t.equal(deleted.statusCode, 204, 'DELETE /auth/sessions/:id: 204')
  const unknown = await app.inject({ method: 'DELETE', url: '/auth/sessions/no-such-session', headers: bearer })
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().code, 'FST_TOKEN_AUTH_SESSION_NOT_FOUND')

  // Alice logs out everywhere: a3 is her last live session.
  const all = await post(app, '/auth/logout?all=true', { headers: bearer })
  t.equal(all.statusCode, 204, 'logout ?all=true: 204')
  t.equal(refreshCookie(all)?.value, '', 'cookie cleared')

  // Bob is disabled: his next refresh ends that session; the app then revokes the rest.
  disabled.add('user-2')
  const unavailable = await refresh(app, b1.refreshToken)
  t.equal(unavailable.statusCode, 401, 'refresh of a disabled user: 401')
  t.equal(unavailable.json().code, 'FST_TOKEN_AUTH_USER_UNAVAILABLE')
  t.same(await app.tokenAuth.revokeUserSessions('user-2'), [b2.sid], 'the app revokes his other session')

  t.same(metrics.snapshot(), {
    ...ZERO,
    [`${P}logins_total`]: 6,
    [`${P}login_failures_total`]: 2,
    [`${P}refreshes_total{grace="false"}`]: 2,
    [`${P}refreshes_total{grace="true"}`]: 1,
    [`${P}reuse_detections_total`]: 1,
    [`${P}revocations_total{reason="logout"}`]: 1,
    [`${P}revocations_total{reason="logout-all"}`]: 1,
    [`${P}revocations_total{reason="reuse"}`]: 1,
    [`${P}revocations_total{reason="revoked"}`]: 2,
    [`${P}revocations_total{reason="user-unavailable"}`]: 1
  })

  const text = metrics.prometheus()
  t.same(parseExposition(t, text), metrics.snapshot(), 'the exposition holds exactly the snapshot')
  t.match(text, `# HELP ${P}revocations_total Sessions ended, by reason`, 'HELP text')
  t.match(text, `# TYPE ${P}revocations_total counter\n`, 'TYPE line')
  t.match(text, `\n${P}revocations_total{reason="revoked"} 2\n`, 'a labelled sample')

  // onIncrement saw each increment, in order, with the same names and labels.
  t.equal(increments.length, 6 + 2 + 3 + 1 + 6, 'one callback per increment')
  t.ok(increments.every(([, , value]) => value === 1), 'each adds 1')
  t.same(increments.slice(0, 6).map(([name]) => name), Array(6).fill(`${P}logins_total`))
  t.same(increments.slice(-2), [
    [`${P}revocations_total`, { reason: 'user-unavailable' }, 1],
    [`${P}revocations_total`, { reason: 'revoked' }, 1]
  ])
  const tally: Record<string, number> = {}
  for (const [name, labels] of increments) {
    const key = Object.keys(labels).length === 0 ? name : `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`
    tally[key] = (tally[key] ?? 0) + 1
  }
  t.same({ ...ZERO, ...tally }, metrics.snapshot(), 'the increments add up to the snapshot')

  // Privacy and cardinality: nothing that identifies a user, a session, a client or a token.
  const sessions = [a1, a2, a3, a4, b1, b2]
  const secrets = [
    USERNAME, 'bob', 'mallory', USER_ID, 'user-2', PASSWORD, 'wrong-password', '127.0.0.1', USER_AGENT,
    ...sessions.flatMap((s) => [s.sid, s.accessToken, s.refreshToken])
  ]
  const exported = [text, JSON.stringify(metrics.snapshot()), JSON.stringify(increments)]
  for (const secret of secrets) {
    t.notOk(exported.some((output) => output.includes(secret)), `no metric output contains ${secret.slice(0, 24)}`)
  }
  const labelNames = new Set(increments.flatMap(([, labels]) => Object.keys(labels)))
  t.same([...labelNames].sort(), ['grace', 'reason'], 'the only label names')
})

t.test('a revocation reason the collector does not know is counted as "other", not as a new series', async (t) => {
  const app = await build(t)
  const metrics = collectMetrics(app.tokenAuth.events)
  t.teardown(() => metrics.close())
  // The events are public: an app may emit them, with anything in them.
  app.tokenAuth.events.emit('sessionRevoked', { userId: 'u', sessionId: 's', reason: 'alice@example.com' as 'revoked' })
  t.same(metrics.snapshot(), { ...ZERO, [`${P}revocations_total{reason="other"}`]: 1 })
  t.notMatch(metrics.prometheus(), 'alice@example.com')
})

t.test('a recovered refresh counts as a refresh and as a recovery', async (t) => {
  const app = await build(t, { reuseGrace: 0 })
  const metrics = collectMetrics(app.tokenAuth.events)
  t.teardown(() => metrics.close())
  const { refreshToken } = await login(app)
  t.equal((await refresh(app, refreshToken)).statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 2))
  // The client never saw that answer: it retries with the token it holds.
  t.equal((await refresh(app, refreshToken)).statusCode, 200)
  t.same(metrics.snapshot(), { ...ZERO, [`${P}logins_total`]: 1, [`${P}refreshes_total{grace="false"}`]: 2, [`${P}refresh_recoveries_total`]: 1 })
})

t.test('a 503 on a route the collector does not know is not counted: no new series from an event', async (t) => {
  const app = await build(t)
  const metrics = collectMetrics(app.tokenAuth.events)
  t.teardown(() => metrics.close())
  app.tokenAuth.events.emit('unavailableResponse', { route: '/api/alice@example.com' as 'login' })
  app.tokenAuth.events.emit('unavailableResponse', { route: 'refresh' })
  t.same(metrics.snapshot(), { ...ZERO, [`${P}unavailable_responses_total{route="refresh"}`]: 1 })
  t.notMatch(metrics.prometheus(), 'alice@example.com')
})

t.test('options: a custom prefix names every metric; a bad prefix or callback is refused', async (t) => {
  const app = await build(t)
  const metrics = collectMetrics(app.tokenAuth.events, { prefix: 'myapp_auth_' })
  t.teardown(() => metrics.close())
  await login(app)
  const samples = parseExposition(t, metrics.prometheus())
  t.equal(samples.myapp_auth_logins_total, 1)
  t.ok(Object.keys(samples).every((key) => key.startsWith('myapp_auth_')), 'every series carries the prefix')
  t.same(metrics.snapshot(), samples)

  const empty = collectMetrics(app.tokenAuth.events, { prefix: '' })
  t.teardown(() => empty.close())
  t.equal(empty.snapshot().logins_total, 0, 'an empty prefix is allowed')

  for (const prefix of ['9lives_', 'my-app_', 'my app', 'x{y}']) {
    t.throws(() => collectMetrics(app.tokenAuth.events, { prefix }), TypeError, `prefix ${JSON.stringify(prefix)} refused`)
  }
  t.throws(() => collectMetrics(app.tokenAuth.events, { onIncrement: 'no' as never }), TypeError, 'onIncrement must be a function')
  t.equal(app.tokenAuth.events.listenerCount('login'), 2, 'a refused collector registered nothing')
})

t.test('an onIncrement that throws is logged and changes no response; the count is kept', async (t) => {
  const logs: Array<{ level: number, msg: string, event?: string, err?: { message: string } }> = []
  const app = Fastify({ logger: { level: 'error', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } } })
  t.teardown(() => app.close())
  await app.register(tokenAuth, baseOptions())
  const metrics = collectMetrics(app.tokenAuth.events, { onIncrement: () => { throw new Error('exporter down') } })
  t.teardown(() => metrics.close())
  const { response } = await login(app)
  t.equal(response.statusCode, 200, 'login still 200')
  t.ok(refreshCookie(response)?.value, 'with its cookie')
  t.equal(metrics.snapshot()[`${P}logins_total`], 1)
  t.match(logs, [{ level: 50, event: 'login', err: { message: 'exporter down' } }], 'the plugin logged the error with the event')
})

t.test('close() removes the listeners: nothing counts afterwards', async (t) => {
  const app = await build(t)
  const events = app.tokenAuth.events
  const names = ['login', 'loginFailed', 'refresh', 'reuseDetected', 'sessionRevoked'] as const
  const before = names.map((name) => events.listenerCount(name))
  const metrics = collectMetrics(events)
  t.same(names.map((name) => events.listenerCount(name)), before.map((n) => n + 1), 'one listener per counted event')
  await login(app)
  metrics.close()
  metrics.close()
  t.same(names.map((name) => events.listenerCount(name)), before, 'all removed, and close() is idempotent')
  const { refreshToken } = await login(app)
  t.equal((await refresh(app, refreshToken)).statusCode, 200)
  t.same(metrics.snapshot(), { ...ZERO, [`${P}logins_total`]: 1 }, 'only the login before close counted')
})

/** An app with the plugin and the example's metrics route, registered before ready as an app does. */
async function buildWithMetricsRoute (t: Test, options: MetricsRouteOptions | ((app: FastifyInstance) => MetricsRouteOptions) = {}) {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(tokenAuth, baseOptions())
  const metrics = registerMetricsRoute(app, typeof options === 'function' ? options(app) : options)
  await app.ready()
  return { app, metrics }
}

t.test('examples/metrics.ts serves GET /metrics and stops counting when the app closes', async (t) => {
  const { app, metrics } = await buildWithMetricsRoute(t)
  await login(app)
  const response = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], PROMETHEUS_CONTENT_TYPE)
  t.equal(response.headers['cache-control'], 'no-store')
  t.same(parseExposition(t, response.body), { ...ZERO, [`${P}logins_total`]: 1 })
  t.same(metrics.snapshot(), { ...ZERO, [`${P}logins_total`]: 1 })

  const events = app.tokenAuth.events
  t.equal(events.listenerCount('login'), 1, 'the route\'s collector listens')
  await app.close()
  t.equal(events.listenerCount('login'), 0, 'closing the app closed the collector')
})

t.test('the example route takes a path, a prefix and a guard', async (t) => {
  const { app } = await buildWithMetricsRoute(t, (app) => ({ path: '/internal/metrics', prefix: 'demo_', onRequest: app.authenticate }))
  const refused = await app.inject({ method: 'GET', url: '/internal/metrics' })
  t.equal(refused.statusCode, 401, 'no token: 401')
  t.equal(refused.json().code, 'FST_TOKEN_AUTH_MISSING_TOKEN')
  const { accessToken } = await login(app)
  const allowed = await app.inject({ method: 'GET', url: '/internal/metrics', headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(allowed.statusCode, 200)
  t.equal(parseExposition(t, allowed.body).demo_logins_total, 1)
})
