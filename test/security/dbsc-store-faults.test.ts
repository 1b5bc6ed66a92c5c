// Checklist group DBH: DBSC under store faults, under concurrent traffic (docs/design.md, «Device
// Bound Session Credentials (DBSC)»: a registration and a device refresh each spend their
// challenge through the store's `useOnce`; a registration then rotates the refresh token). The
// example app runs with DBSC=on on TOKEN_STORE=redis through a TcpProxy the cases switch between
// forward, blackhole (Redis hangs) and mute (commands run, replies lost). The browsers are the
// scripted, spec-following browser of test/dbsc-client.ts. What must hold: while the store cannot
// answer, every registration and device refresh gets 503 with Retry-After: never a 500, never a
// 200 that skipped the replay check, never a 4xx (on which a browser drops its DBSC session or its
// registration attempt for good), no cookie set or cleared; afterwards nothing is lost: every
// browser renews its device cookie and refreshes, and every session that tried to register does
// (offered again at its next refresh, its refresh cookie kept); the process lives on.
import t, { type Test } from 'tap'
import { type BrowserSession, dbscKey, dbscProof, ScriptedBrowser, sfString } from '../dbsc-client.js'
import { redisAvailable } from '../services.js'
import { alive, COOKIE, cookieOf, noIncidents, PASSWORD, type Reply, send, sleep, startExample, STORE_UNAVAILABLE, USERNAME } from './harness.js'
import { proxiedRedis } from './proxied-redis.js'

const CONCURRENT = 40
/**
 * The store deadline: short, so a fault costs the test little, yet long enough that honest traffic
 * on a slow machine (40 requests at once, each signing and verifying) never meets it.
 */
const STORE_TIMEOUT = 1000
const DEVICE = 'device_session'
const REGISTRATION = '/auth/dbsc/registration'

const skip = await redisAvailable()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const { proxy, url } = await proxiedRedis(t, 12)
  const example = await startExample(t, {
    TOKEN_STORE: 'redis',
    REDIS_URL: url,
    STORE_TIMEOUT_MS: String(STORE_TIMEOUT),
    DBSC: 'on'
  })

  const loginBody = JSON.stringify({ username: USERNAME, password: PASSWORD })

  interface Bound { browser: ScriptedBrowser, session: BrowserSession }

  /** A DBSC browser logs in and registers by itself. */
  async function boundBrowser (): Promise<Bound> {
    const browser = new ScriptedBrowser(example.base)
    const login = await browser.fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: loginBody })
    const session = [...browser.sessions.values()][0]
    if (login.status !== 200 || session === undefined) throw new Error(`login or registration failed: ${login.status} ${JSON.stringify(browser.events)}`)
    return { browser, session }
  }

  interface Registering { browser: ScriptedBrowser, challenge: string }

  /**
   * A DBSC browser whose login answer (with its offer) came in just before the fault: its jar holds
   * the bearer refresh cookie, and its registration request is the one the fault meets.
   */
  async function registeringBrowser (): Promise<Registering> {
    const reply = await send(example, 'POST', '/auth/login', { headers: { 'content-type': 'application/json' }, body: loginBody })
    const challenge = /challenge="([^"]+)"/.exec(reply.headers['secure-session-registration'] ?? '')?.[1]
    const token = cookieOf(reply)?.value
    if (reply.status !== 200 || challenge === undefined || token === undefined) throw new Error(`login: ${reply.status} ${reply.text}`)
    const browser = new ScriptedBrowser(example.base)
    browser.jar.set(COOKIE, { value: token, path: '/auth', expiresAt: Number.POSITIVE_INFINITY })
    return { browser, challenge }
  }

  /** The registration the browser sends on the offer: its cookies, a proof of a new key over the offer's challenge, its Origin. */
  async function register ({ browser, challenge }: Registering): Promise<Reply> {
    const proof = await dbscProof(await dbscKey(), challenge, { registration: true })
    return await send(example, 'POST', REGISTRATION, {
      headers: [['origin', example.base], ['cookie', `${COOKIE}=${browser.jar.get(COOKIE)?.value as string}`], ['secure-session-response', sfString(proof)]]
    })
  }

  /** A browser's device refresh (what it does when the device cookie expires): the outcome and the answers it got. */
  async function deviceRefresh ({ browser, session }: Bound): Promise<{ outcome: string, replies: Reply[] }> {
    const before = browser.events.length
    const outcome = await browser.refreshSession(session)
    const replies = browser.events.slice(before).map((event): Reply => ({
      status: event.status,
      headers: Object.fromEntries([...event.headers.entries()].filter(([name]) => name !== 'set-cookie')),
      setCookies: event.headers.getSetCookie(),
      text: JSON.stringify(event.body ?? ''),
      json: event.body
    }))
    return { outcome, replies }
  }

  /** Every reply a 503 that kept everything: code, Retry-After, no cookie set or cleared, no token, no DBSC header. */
  function allUnavailable (t: Test, replies: Reply[], what: string): void {
    t.equal(replies.length, CONCURRENT, `${what}: ${CONCURRENT} answers`)
    t.same([...new Set(replies.map((reply) => reply.status))], [503], `${what}: every one 503`)
    t.ok(replies.every((reply) => (reply.json as { code?: string } | undefined)?.code === STORE_UNAVAILABLE), `${what}: ${STORE_UNAVAILABLE}`)
    t.ok(replies.every((reply) => /^\d+$/.test(String(reply.headers['retry-after']))), `${what}: Retry-After`)
    t.ok(replies.every((reply) => reply.setCookies.length === 0), `${what}: no cookie set or cleared`)
    t.notOk(replies.some((reply) => reply.text.includes('accessToken') || reply.text.includes('session_identifier')), `${what}: no token, no session instructions`)
    t.notOk(replies.some((reply) => 'secure-session-challenge' in reply.headers || 'secure-session-registration' in reply.headers), `${what}: no challenge, no offer`)
  }

  /** Waits (at most 15 s) until the store answers again: a login passes. The client reconnects by itself. */
  async function recovered (): Promise<void> {
    const until = Date.now() + 15_000
    for (;;) {
      const probe = await send(example, 'POST', '/auth/login', { headers: { 'content-type': 'application/json' }, body: loginBody })
      if (probe.status === 200 || Date.now() > until) return
      await sleep(200)
    }
  }

  /**
   * CONCURRENT of `make`, a few at a time: the logins before the fault hash a password each, and
   * 40 at once would outlast the short store deadline this file sets.
   */
  async function inBatches<T> (make: () => Promise<T>, size = 5): Promise<T[]> {
    const made: T[] = []
    while (made.length < CONCURRENT) made.push(...await Promise.all(Array.from({ length: Math.min(size, CONCURRENT - made.length) }, make)))
    return made
  }

  /** The fault, then: 40 device refreshes and 40 registrations at once, all 503; then recovery, nothing lost. */
  async function underFault (t: Test, fault: () => void, label: string): Promise<void> {
    const bound = await inBatches(boundBrowser)
    const registering = await inBatches(registeringBrowser)
    const devicesBefore = bound.map(({ browser }) => browser.jar.get(DEVICE)?.value)
    const tokensBefore = registering.map(({ browser }) => browser.jar.get(COOKIE)?.value)

    fault()
    const [refreshes, registrations] = await Promise.all([
      Promise.all(bound.map(deviceRefresh)),
      Promise.all(registering.map(register))
    ])
    t.same([...new Set(refreshes.map(({ outcome }) => outcome))], ['skipped'], `${label}: every browser skips its refresh (a 5xx), none ends its DBSC session`)
    t.ok(refreshes.every(({ replies }) => replies.length === 1), `${label}: one request each (no 403 round trip)`)
    allUnavailable(t, refreshes.map(({ replies }) => replies[0] as Reply), `${label}, device refreshes`)
    allUnavailable(t, registrations, `${label}, registrations`)
    t.ok(bound.every(({ browser, session }) => browser.sessions.has(session.id)), `${label}: every browser keeps its DBSC session`)
    await alive(t, example)

    proxy.forward()
    await recovered()
    // Each browser renews its device cookie: a challenge the fault spent (mute) is a 403 with a new one, signed and sent again.
    const renewed = await Promise.all(bound.map(deviceRefresh))
    t.same([...new Set(renewed.map(({ outcome }) => outcome))], ['refreshed'], `${label}, afterwards: every browser renews its device cookie`)
    t.ok(renewed.every(({ replies }) => replies.at(-1)?.status === 200 && replies.slice(0, -1).every((reply) => reply.status === 403)),
      `${label}, afterwards: a 200, after at most a 403 for a challenge spent under the fault`)
    t.comment(`${renewed.filter(({ replies }) => replies.length > 1).length} of ${CONCURRENT} challenges were spent under the fault`)
    t.ok(bound.every(({ browser }, index) => browser.jar.get(DEVICE)?.value !== devicesBefore[index]), `${label}, afterwards: new device cookies`)
    const refreshed = await Promise.all(bound.map(async ({ browser }) => await browser.fetch('/auth/refresh', { method: 'POST' })))
    t.same([...new Set(refreshed.map((response) => response.status))], [200], `${label}, afterwards: every browser refreshes`)
    t.ok(bound.every(({ browser, session }) => browser.jar.get(COOKIE)?.value.includes(`.dbsc-${session.key.jkt}.`)), `${label}, afterwards: still bound to each browser's key`)

    // Each registering session kept its bearer refresh cookie: its next refresh is offered DBSC again, and its browser registers.
    t.ok(registering.every(({ browser }, index) => browser.jar.get(COOKIE)?.value === tokensBefore[index]), `${label}: the registering browsers' refresh cookies were kept`)
    const offered = await Promise.all(registering.map(async ({ browser }) => await browser.fetch('/auth/refresh', { method: 'POST' })))
    t.same([...new Set(offered.map((response) => response.status))], [200], `${label}, afterwards: every registering session refreshes`)
    t.ok(registering.every(({ browser }) => browser.events.length === 1 && browser.events[0]?.kind === 'registration' && browser.events[0]?.status === 200),
      `${label}, afterwards: every registering browser registers on the new offer`)
    t.ok(registering.every(({ browser }) => browser.sessions.size === 1 && browser.jar.has(DEVICE)), `${label}, afterwards: a DBSC session and a device cookie each`)
    t.ok(registering.every(({ browser }) => /\.dbsc-[A-Za-z0-9_-]{43}\./.test(browser.jar.get(COOKIE)?.value ?? '')), `${label}, afterwards: DBSC-bound refresh cookies`)
    const boundRefresh = await Promise.all(registering.map(async ({ browser }) => await browser.fetch('/auth/refresh', { method: 'POST' })))
    t.same([...new Set(boundRefresh.map((response) => response.status))], [200], `${label}, afterwards: and refresh as bound sessions`)
    await alive(t, example)
  }

  t.test('DBH1 Redis black-holed under concurrent DBSC traffic: 40 device refreshes and 40 registrations answer 503 with Retry-After, then all renew and register', async (t) => {
    await underFault(t, () => proxy.blackhole(), 'black-holed')
  })

  t.test('DBH2 replies lost (mute): challenges may be spent, the requests are 503, and afterwards every browser renews (after a 403 if need be) and registers', async (t) => {
    await underFault(t, () => proxy.mute(), 'muted')
  })

  t.test('DBH3 nothing escaped: no unhandled rejection, no crash', async (t) => {
    noIncidents(t, example)
  })
}
