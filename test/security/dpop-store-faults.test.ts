// Checklist group DH: DPoP under store faults, under concurrent traffic (docs/design.md,
// «Sender-constrained sessions (DPoP)»: a bound token's protected request and every proof spend a
// `useOnce` store call). The example app runs with DPOP=optional on TOKEN_STORE=redis through a
// TcpProxy the cases switch between forward, blackhole (Redis hangs) and mute (commands run,
// replies lost). What must hold: while the store cannot answer, every request that needs it gets
// 503 with Retry-After, never a 500 and never a pass without the replay check; nothing is lost
// (the refresh token still rotates afterwards, with a new proof); the process lives on.
import t, { type Test } from 'tap'
import { type DpopKey, dpopKey, proof } from '../dpop-helpers.js'
import { alive, COOKIE, cookieOf, noIncidents, PASSWORD, type Reply, send, sleep, startExample, STORE_UNAVAILABLE, USERNAME } from './harness.js'
import { redisAvailable } from '../services.js'
import { proxiedRedis } from './proxied-redis.js'

const CONCURRENT = 40
/**
 * The store deadline: short, so a fault costs the test little, yet long enough that honest traffic
 * on a slow machine (40 requests at once, each signing and verifying) never meets it.
 */
const STORE_TIMEOUT = 1000

const skip = await redisAvailable()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  const { proxy, url } = await proxiedRedis(t, 11)
  const example = await startExample(t, {
    TOKEN_STORE: 'redis',
    REDIS_URL: url,
    STORE_TIMEOUT_MS: String(STORE_TIMEOUT),
    DPOP: 'optional'
  })

  const signed = async (key: DpopKey, method: string, path: string, accessToken?: string): Promise<string> =>
    await proof(key, method, `${example.base}${path}`, accessToken === undefined ? {} : { accessToken })

  interface Bound { key: DpopKey, accessToken: string, refreshToken: string }

  async function boundLogin (): Promise<Bound> {
    const key = await dpopKey()
    const reply = await send(example, 'POST', '/auth/login', {
      headers: { 'content-type': 'application/json', dpop: await signed(key, 'POST', '/auth/login') },
      body: JSON.stringify({ username: USERNAME, password: PASSWORD })
    })
    if (reply.status !== 200) throw new Error(`login: ${reply.status} ${reply.text}`)
    return { key, accessToken: (reply.json as { accessToken: string }).accessToken, refreshToken: cookieOf(reply)?.value as string }
  }

  const me = async (session: Bound): Promise<Reply> => await send(example, 'GET', '/me', {
    headers: { authorization: `DPoP ${session.accessToken}`, dpop: await signed(session.key, 'GET', '/me', session.accessToken) }
  })
  const refresh = async (session: Bound): Promise<Reply> => await send(example, 'POST', '/auth/refresh', {
    headers: { cookie: `${COOKIE}=${session.refreshToken}`, dpop: await signed(session.key, 'POST', '/auth/refresh') }
  })

  /** The replies of `requests`, sent again every 200 ms while any is a 503, for at most 10 s (the store's client reconnects by itself). */
  async function onceAnswered (requests: () => Array<Promise<Reply>>): Promise<Reply[]> {
    const until = Date.now() + 10_000
    let replies: Reply[]
    do {
      await sleep(200)
      replies = await Promise.all(requests())
    } while (replies.some((reply) => reply.status === 503) && Date.now() < until)
    return replies
  }

  /** Every reply a 503 that kept everything: code, Retry-After, no cookie set or cleared, no token issued. */
  function allUnavailable (t: Test, replies: Reply[], what: string): void {
    t.same([...new Set(replies.map((reply) => reply.status))], [503], `${what}: every one 503`)
    t.ok(replies.every((reply) => (reply.json as { code?: string }).code === STORE_UNAVAILABLE), `${what}: ${STORE_UNAVAILABLE}`)
    t.ok(replies.every((reply) => /^\d+$/.test(String(reply.headers['retry-after']))), `${what}: Retry-After`)
    t.ok(replies.every((reply) => cookieOf(reply) === undefined), `${what}: no refresh cookie set or cleared`)
    t.notOk(replies.some((reply) => reply.text.includes('accessToken')), `${what}: no token issued`)
  }

  t.test('DH1 Redis black-holed under concurrent DPoP traffic: protected requests and refreshes answer 503 in bounded time, then all works again', async (t) => {
    const sessions = await Promise.all(Array.from({ length: CONCURRENT / 2 }, async () => await boundLogin()))
    t.ok((await Promise.all(sessions.map(me))).every((reply) => reply.status === 200), 'all bound sessions work before the fault')
    proxy.blackhole()
    const startedAt = Date.now()
    const during = await Promise.all([...sessions.map(me), ...sessions.map(refresh)])
    const elapsed = Date.now() - startedAt
    allUnavailable(t, during, 'black-holed')
    t.ok(elapsed < STORE_TIMEOUT + 3000, `answered within the store timeout and some slack (${elapsed} ms)`)
    await alive(t, example)
    proxy.forward()
    // Nothing was spent: each session's refresh token rotates with a new proof once Redis answers.
    const rotated = await onceAnswered(() => sessions.map(refresh))
    t.same([...new Set(rotated.map((reply) => reply.status))], [200], 'every refresh token rotates afterwards')
    t.ok(rotated.every((reply) => (reply.json as { tokenType?: string }).tokenType === 'DPoP'), 'still bound')
  })

  t.test('DH2 replies lost (mute): the proof may be spent, the request is 503, and a retry with a new proof passes', async (t) => {
    const sessions = await Promise.all(Array.from({ length: CONCURRENT / 2 }, async () => await boundLogin()))
    proxy.mute()
    allUnavailable(t, await Promise.all([...sessions.map(me), ...sessions.map(refresh)]), 'muted')
    proxy.forward()
    // A mute connection may have lost its replies for good; the client reconnects by itself.
    const retried = await onceAnswered(() => sessions.map(me))
    t.same([...new Set(retried.map((reply) => reply.status))], [200], 'protected requests pass again with new proofs')
    const refreshed = await Promise.all(sessions.map(refresh))
    t.same([...new Set(refreshed.map((reply) => reply.status))], [200], 'and refreshes: nothing was lost, nothing taken for theft')
    await alive(t, example)
  })

  t.test('DH3 nothing escaped: no unhandled rejection, no crash', async (t) => {
    noIncidents(t, example)
  })
}
