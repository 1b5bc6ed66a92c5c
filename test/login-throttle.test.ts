// Login throttling: per client IP (loginRateLimit) and per account name (accountRateLimit), both
// counted before the password is checked, with one indistinguishable 429; the presets; and an
// app whose own global @fastify/rate-limit must not switch ours off.
import fastifyRateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { loginThrottlePresets, type TokenAuthOptions } from '../lib/index.js'
import { assertBootFails, baseOptions, BOB, BOB_PASSWORD, build, PASSWORD, USERNAME } from './helpers.js'

const THROTTLED = 'FST_TOKEN_AUTH_LOGIN_THROTTLED'
const MINUTE = 60_000

function attempt (app: FastifyInstance, ip: string, username = USERNAME, password = 'wrong-password') {
  return app.inject({ method: 'POST', url: '/auth/login', remoteAddress: ip, payload: { username, password } })
}

/** An app whose verifyCredentials counts its calls: a throttled attempt must never reach it. */
async function counted (t: Test, overrides: Partial<TokenAuthOptions>): Promise<{ app: FastifyInstance, calls: () => number }> {
  let calls = 0
  const check = baseOptions().verifyCredentials!
  const app = await build(t, { ...overrides, verifyCredentials: async (username, password, request) => { calls++; return await check(username, password, request) } })
  return { app, calls: () => calls }
}

/** 429 LOGIN_THROTTLED with Retry-After within the window, no token, no rate-limit headers telling which limit. */
function assertThrottled (t: Test, response: LightMyRequestResponse, windowSeconds: number, label: string): void {
  t.equal(response.statusCode, 429, `${label}: 429`)
  t.equal(response.json().code, THROTTLED, `${label}: ${THROTTLED}`)
  const retryAfter = Number(response.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= windowSeconds, `${label}: Retry-After ${retryAfter} within the ${windowSeconds} s window`)
  t.equal(response.json().message, `Too many login attempts, retry in ${retryAfter} seconds`)
  t.equal(response.headers['set-cookie'], undefined, `${label}: no cookie`)
  t.equal(response.headers['x-ratelimit-limit'], undefined, `${label}: no x-ratelimit-* headers`)
  t.equal(response.headers['cache-control'], 'no-store')
}

/** The statuses of attempts made one after the other (from each address, as a user), in order. */
async function statuses (app: FastifyInstance, attempts: Array<[ip: string, username?: string]>): Promise<number[]> {
  const done: number[] = []
  for (const [ip, username] of attempts) done.push((await attempt(app, ip, username)).statusCode)
  return done
}

t.test('per IP: the attempt after max is 429 from that address only', async (t) => {
  const { app, calls } = await counted(t, { loginRateLimit: { max: 3, timeWindow: MINUTE }, accountRateLimit: false })
  t.strictSame(await statuses(app, [['10.0.0.1'], ['10.0.0.1'], ['10.0.0.1']]), [401, 401, 401])
  assertThrottled(t, await attempt(app, '10.0.0.1', 'bob'), 60, 'a 4th attempt, another account')
  assertThrottled(t, await attempt(app, '10.0.0.1', USERNAME, PASSWORD), 60, 'the right password while throttled')
  t.equal(calls(), 3, 'verifyCredentials never ran while throttled')
  t.equal((await attempt(app, '10.0.0.2', USERNAME, PASSWORD)).statusCode, 200, 'another address logs in')
})

t.test('per account: the attempt after max is 429 whatever the address, for that account only', async (t) => {
  const { app, calls } = await counted(t, { loginRateLimit: false, accountRateLimit: { max: 3, timeWindow: 15 * MINUTE } })
  t.strictSame(await statuses(app, [['10.0.0.1'], ['10.0.0.2'], ['10.0.0.3']]), [401, 401, 401])
  assertThrottled(t, await attempt(app, '10.0.0.4'), 900, 'a 4th address')
  assertThrottled(t, await attempt(app, '10.0.0.5', USERNAME, PASSWORD), 900, 'the right password from a 5th address')
  t.equal(calls(), 3, 'verifyCredentials never ran while throttled')
  t.equal((await attempt(app, '10.0.0.4', BOB, BOB_PASSWORD)).statusCode, 200, 'another account from the same address logs in')
})

t.test('an unknown account name is counted exactly like a known one', async (t) => {
  const app = await build(t, { accountRateLimit: { max: 2, timeWindow: MINUTE } })
  const answers = async (username: string): Promise<LightMyRequestResponse[]> =>
    [await attempt(app, '10.0.1.1', username), await attempt(app, '10.0.1.2', username), await attempt(app, '10.0.1.3', username)]
  const [known, unknown] = [await answers(USERNAME), await answers('mallory')]
  t.strictSame(known.map((r) => r.statusCode), [401, 401, 429])
  t.strictSame(unknown.map((r) => r.statusCode), [401, 401, 429], 'the same statuses for a name that does not exist')
  for (let i = 0; i < 3; i++) {
    const [a, b] = [known[i] as LightMyRequestResponse, unknown[i] as LightMyRequestResponse]
    // Retry-After (and the message with it) counts down: compared without it.
    const body = (r: LightMyRequestResponse) => ({ ...r.json(), message: String(r.json().message).replace(/\d+/, 'N') })
    t.strictSame(body(b), body(a), `attempt ${i + 1}: the same body`)
    t.strictSame(Object.keys(b.headers).sort(), Object.keys(a.headers).sort(), `attempt ${i + 1}: the same header names`)
  }
})

t.test('the account name is normalised: case and compatibility forms share one bucket', async (t) => {
  const app = await build(t, { loginRateLimit: false, accountRateLimit: { max: 3, timeWindow: MINUTE } })
  t.strictSame(await statuses(app, [['10.0.2.1', 'Alice'], ['10.0.2.2', 'ALICE'], ['10.0.2.3', '\uff41lice']]), [401, 401, 401])
  assertThrottled(t, await attempt(app, '10.0.2.4', USERNAME, PASSWORD), 60, '"alice" after "Alice", "ALICE" and fullwidth "ａlice"')
  t.equal((await attempt(app, '10.0.2.4', 'alice2')).statusCode, 401, 'a different name has its own bucket')
})

t.test('both limits at once: whichever is hit first answers the same 429', async (t) => {
  const app = await build(t, { loginRateLimit: { max: 2, timeWindow: MINUTE }, accountRateLimit: { max: 3, timeWindow: MINUTE } })
  t.strictSame(await statuses(app, [['10.0.3.1'], ['10.0.3.1']]), [401, 401])
  const byIp = await attempt(app, '10.0.3.1', 'bob')
  assertThrottled(t, byIp, 60, 'the IP limit')
  t.equal((await attempt(app, '10.0.3.2')).statusCode, 401, 'the 3rd attempt on alice, from another address')
  const byAccount = await attempt(app, '10.0.3.3')
  assertThrottled(t, byAccount, 60, 'the account limit')
  t.strictSame(Object.keys(byAccount.headers).sort(), Object.keys(byIp.headers).sort(), 'the same header names')
  t.equal(byAccount.json().code, byIp.json().code)
})

t.test('the defaults are the balanced preset: 10 per minute per IP, 20 per 15 minutes per account', async (t) => {
  const app = await build(t)
  // 10 from each of two addresses: the 21st attempt on the account is refused, from a fresh address.
  const first = await statuses(app, Array(10).fill(['10.0.4.1']))
  const second = await statuses(app, Array(10).fill(['10.0.4.2']))
  t.strictSame([...first, ...second], Array(20).fill(401))
  assertThrottled(t, await attempt(app, '10.0.4.3'), 900, 'the 21st attempt on one account')
  assertThrottled(t, await attempt(app, '10.0.4.1', 'bob'), 60, 'the 11th attempt from one address')
})

t.test('loginThrottlePresets: the documented values, usable as options', async (t) => {
  t.strictSame(loginThrottlePresets, {
    strict: { loginRateLimit: { max: 5, timeWindow: 60_000 }, accountRateLimit: { max: 5, timeWindow: 900_000 } },
    balanced: { loginRateLimit: { max: 10, timeWindow: 60_000 }, accountRateLimit: { max: 20, timeWindow: 900_000 } },
    relaxed: { loginRateLimit: { max: 60, timeWindow: 60_000 }, accountRateLimit: { max: 30, timeWindow: 900_000 } }
  })
  const app = await build(t, loginThrottlePresets.strict)
  t.strictSame(await statuses(app, [['10.0.5.1'], ['10.0.5.1'], ['10.0.5.1'], ['10.0.5.2'], ['10.0.5.2']]), [401, 401, 401, 401, 401])
  assertThrottled(t, await attempt(app, '10.0.5.3'), 900, 'strict: the 6th attempt on the account')
  t.equal((await attempt(app, '10.0.5.1', 'bob')).statusCode, 401, 'strict: the 4th from 10.0.5.1 is still allowed')
  t.equal((await attempt(app, '10.0.5.1', 'bob')).statusCode, 401)
  assertThrottled(t, await attempt(app, '10.0.5.1', 'bob'), 60, 'strict: the 6th from one address')
})

t.test('an app with its own global @fastify/rate-limit, registered first, still gets our login limits', async (t) => {
  const app = Fastify()
  await app.register(fastifyRateLimit, { global: true, max: 1000, timeWindow: MINUTE, allowList: ['10.9.9.9'] })
  await app.register(tokenAuth, baseOptions({ loginRateLimit: { max: 2, timeWindow: MINUTE }, accountRateLimit: { max: 3, timeWindow: MINUTE } }))
  t.teardown(() => app.close())
  await app.ready()

  const first = await attempt(app, '10.0.6.1')
  t.equal(first.statusCode, 401)
  t.equal(first.headers['x-ratelimit-limit'], '1000', 'the app\'s limiter ran on the login route')
  t.equal((await attempt(app, '10.0.6.1')).statusCode, 401)
  const byIp = await attempt(app, '10.0.6.1', 'bob')
  t.equal(byIp.statusCode, 429, 'our per-IP limit, although the app\'s limiter already ran')
  t.equal(byIp.json().code, THROTTLED)
  t.equal((await attempt(app, '10.0.6.2')).statusCode, 401, 'the 3rd attempt on alice')
  const byAccount = await attempt(app, '10.0.6.3', USERNAME, PASSWORD)
  t.equal(byAccount.statusCode, 429, 'our per-account limit too')
  t.equal(byAccount.json().code, THROTTLED)
  t.ok(Number(byAccount.headers['retry-after']) > 0)
  // Our limiters key by their own names, so the app's allowList (a list of addresses) does not
  // exempt anyone from login throttling, and an app limiter sharing a store never shares counts.
  t.strictSame(await statuses(app, Array(3).fill(['10.9.9.9', 'carol'])), [401, 401, 429], 'the per-IP limit applies to an address the app allow-lists')
})

t.test('accountRateLimit: invalid values fail the boot, naming the option', async (t) => {
  const cases: Array<[value: unknown, option: string]> = [
    [null, 'accountRateLimit'], [true, 'accountRateLimit'], [20, 'accountRateLimit'], ['strict', 'accountRateLimit'],
    [{ max: 0, timeWindow: MINUTE }, 'accountRateLimit.max'], [{ max: 1.5, timeWindow: MINUTE }, 'accountRateLimit.max'],
    [{ max: '5', timeWindow: MINUTE }, 'accountRateLimit.max'], [{ max: 5, timeWindow: 0 }, 'accountRateLimit.timeWindow'],
    [{ max: 5, timeWindow: '15m' }, 'accountRateLimit.timeWindow'], [{ max: 5, timeWindow: -1 }, 'accountRateLimit.timeWindow']
  ]
  for (const [value, option] of cases) await assertBootFails(t, { accountRateLimit: value }, option, `accountRateLimit: ${JSON.stringify(value)}`)
})

t.test('accountRateLimit: a missing member takes its default', async (t) => {
  // { max } alone keeps the 15-minute window: Retry-After well beyond a minute.
  const app = await build(t, { loginRateLimit: false, accountRateLimit: { max: 1 } as never })
  t.equal((await attempt(app, '10.0.7.1')).statusCode, 401)
  const throttled = await attempt(app, '10.0.7.2')
  assertThrottled(t, throttled, 900, '{ max: 1 }')
  t.ok(Number(throttled.headers['retry-after']) > 60, 'the default 15-minute window')
})
