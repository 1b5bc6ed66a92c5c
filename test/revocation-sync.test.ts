import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { TokenAuthEvents } from '../lib/events.js'
import { type RevocationSync, type RevocationSyncOptions, type RevocationSyncSessions, startRevocationSync } from '../lib/revocation-sync.js'
import { RevocationList } from '../lib/revocations.js'
import { SessionService } from '../lib/sessions.js'
import type { RevocationRecord, TokenStore } from '../lib/stores/types.js'
import type { TokenCodec } from '../lib/tokens.js'

const POLL = 20
const SWEEP = 20

/** A promise settled from outside: stands in for a store call still on its way. */
function deferred<T> (): { promise: Promise<T>, resolve: (value: T) => void, reject: (error: unknown) => void } {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  return { promise, resolve, reject }
}

async function until (condition: () => boolean, timeout = 2000): Promise<void> {
  const started = Date.now()
  while (!condition()) {
    if (Date.now() - started > timeout) throw new Error(`condition not met within ${timeout} ms`)
    await sleep(5)
  }
}

/** An in-memory revocation feed with push, whose calls are counted and can be made to fail. */
class FeedStore implements TokenStore {
  readonly feed: RevocationRecord[] = []
  readonly listeners = new Set<(record: RevocationRecord) => void>()
  readonly calls = { revokedSince: 0, sweep: 0, subscribe: 0, unsubscribe: 0, close: 0 }
  /** Every call fails while set. */
  down = false
  /** Only subscriptions fail while set: polls answer, so no outage is known. */
  subscribeDown = false
  /** When set, the next subscription waits for it. */
  subscribeGate: Promise<void> | undefined

  revoke (sessionId: string): void {
    const record = { sessionId, revokedAt: Date.now() }
    this.feed.push(record)
    for (const listener of this.listeners) listener(record)
  }

  async revokedSince (since: number): Promise<RevocationRecord[]> {
    this.calls.revokedSince++
    if (this.down) throw new Error('store down')
    return this.feed.filter((record) => record.revokedAt >= since)
  }

  async subscribeRevocations (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    this.calls.subscribe++
    const gate = this.subscribeGate
    this.subscribeGate = undefined
    await gate
    if (this.down || this.subscribeDown) throw new Error('store down')
    this.listeners.add(listener)
    return async () => {
      this.calls.unsubscribe++
      this.listeners.delete(listener)
    }
  }

  async sweep (): Promise<number> {
    this.calls.sweep++
    if (this.down) throw new Error('store down')
    return 0
  }

  async close (): Promise<void> { this.calls.close++ }

  createSession (): never { throw new Error('not used') }
  rotate (): never { throw new Error('not used') }
  revokeSession (): never { throw new Error('not used') }
  revokeUserSessions (): never { throw new Error('not used') }
  listUserSessions (): never { throw new Error('not used') }
  getSession (): never { throw new Error('not used') }
  updateUserClaims (): never { throw new Error('not used') }
}

/** The same feed without push: `subscribeRevocations` is absent. */
function pollOnlyStore (store: FeedStore): TokenStore {
  return {
    revokedSince: (since) => store.revokedSince(since),
    sweep: () => store.sweep(),
    close: () => store.close(),
    createSession: () => store.createSession(),
    rotate: () => store.rotate(),
    revokeSession: () => store.revokeSession(),
    revokeUserSessions: () => store.revokeUserSessions(),
    listUserSessions: () => store.listUserSessions(),
    getSession: () => store.getSession(),
    updateUserClaims: () => store.updateUserClaims()
  }
}

/** A real SessionService (its denylist and store health) over `store`; no token is signed here. */
function sessionsOver (store: TokenStore): { sessions: SessionService, revocations: RevocationList } {
  const revocations = new RevocationList(60_000)
  const sessions = new SessionService({
    store,
    codec: {} as TokenCodec,
    events: new TokenAuthEvents(() => {}),
    revocations,
    refreshTokenTtl: 3600,
    sessionMaxAge: 86_400,
    reuseGrace: 0,
    reuseGraceLimit: 0,
    storeTimeout: 1000,
    revocationTtl: 60_000
  })
  return { sessions, revocations }
}

type Warning = { what: string, error: unknown }

function start (
  t: Test, options: Partial<RevocationSyncOptions> & Pick<RevocationSyncOptions, 'sessions' | 'store'>
): { sync: RevocationSync, warnings: Warning[] } {
  const warnings: Warning[] = []
  const sync = startRevocationSync({
    pollInterval: POLL,
    sweepInterval: SWEEP,
    warn: (what, error) => { warnings.push({ what, error }) },
    ownsStore: false,
    ...options
  })
  t.teardown(() => sync.close())
  return { sync, warnings }
}

t.test('ready reads the feed into the denylist, and so does every poll', async (t) => {
  const store = new FeedStore()
  const { sessions, revocations } = sessionsOver(pollOnlyStore(store))
  store.revoke('before-ready')
  const { sync, warnings } = start(t, { sessions, store: pollOnlyStore(store) })
  await sync.ready()
  t.ok(revocations.has('before-ready'), 'the first read happens in ready()')
  store.revoke('after-ready')
  t.notOk(revocations.has('after-ready'), 'no push without subscribeRevocations')
  await until(() => revocations.has('after-ready'))
  t.ok(store.calls.revokedSince >= 2, 'the poll reads the feed again')
  t.equal(store.calls.subscribe, 0, 'a store that cannot push is never subscribed to')
  t.same(warnings, [])
})

t.test('pushed revocations reach the denylist at once; close unsubscribes', async (t) => {
  const store = new FeedStore()
  const { sessions, revocations } = sessionsOver(store)
  const { sync } = start(t, { sessions, store, pollInterval: 60_000 })
  await sync.ready()
  await until(() => store.listeners.size === 1)
  store.revoke('pushed')
  t.ok(revocations.has('pushed'), 'no poll needed')
  await sync.close()
  t.equal(store.calls.unsubscribe, 1)
  t.equal(store.listeners.size, 0)
})

t.test('boot does not wait for the subscription', async (t) => {
  const store = new FeedStore()
  const gate = deferred<void>()
  store.subscribeGate = gate.promise
  const { sessions } = sessionsOver(store)
  const { sync } = start(t, { sessions, store, pollInterval: 60_000 })
  await sync.ready()
  t.equal(store.calls.subscribe, 1, 'the subscription was started')
  t.equal(store.listeners.size, 0, 'and is still pending')
  gate.resolve()
  await until(() => store.listeners.size === 1)
})

t.test('a failed subscription is warned about and retried on the next poll, one attempt at a time', async (t) => {
  const store = new FeedStore()
  store.subscribeDown = true
  const { sessions, revocations } = sessionsOver(store)
  const { sync, warnings } = start(t, { sessions, store })
  await sync.ready()
  await until(() => warnings.length === 1)
  t.equal(warnings[0]?.what, 'subscribing to revocations')
  t.match(warnings[0]?.error, { message: 'store down' })
  await until(() => store.calls.subscribe >= 2)
  t.equal(store.listeners.size, 0)

  // The next attempt hangs: polls meanwhile start no other.
  const gate = deferred<void>()
  store.subscribeGate = gate.promise
  store.subscribeDown = false
  const attempts = store.calls.subscribe
  await until(() => store.calls.subscribe === attempts + 1)
  const polls = store.calls.revokedSince
  await until(() => store.calls.revokedSince >= polls + 3)
  t.equal(store.calls.subscribe, attempts + 1, 'no second attempt while one is pending')
  gate.resolve()
  await until(() => store.listeners.size === 1)
  const subscribed = store.calls.subscribe
  await until(() => store.calls.revokedSince >= polls + 6)
  t.equal(store.calls.subscribe, subscribed, 'a live subscription is not renewed')
  store.revoke('pushed')
  t.ok(revocations.has('pushed'))
})

t.test('close while a subscription is pending releases it when it arrives', async (t) => {
  const store = new FeedStore()
  const gate = deferred<void>()
  store.subscribeGate = gate.promise
  const { sessions } = sessionsOver(store)
  const { sync, warnings } = start(t, { sessions, store })
  await sync.ready()
  await sync.close()
  t.equal(store.calls.unsubscribe, 0, 'nothing to end yet')
  gate.resolve()
  await until(() => store.calls.unsubscribe === 1)
  t.equal(store.listeners.size, 0, 'the late subscription was let go at once')
  await sleep(POLL * 3)
  t.equal(store.calls.subscribe, 1, 'and not retried')
  t.same(warnings, [])
})

t.test('a late subscription that fails to end is warned about', async (t) => {
  const gate = deferred<void>()
  const failure = new Error('unsubscribe failed')
  const sessions: RevocationSyncSessions = {
    pollRevocations: async () => 0,
    sweep: async () => 0,
    subscribeRevocations: async () => { await gate.promise; return async () => { throw failure } },
    health: { down: false }
  }
  const { sync, warnings } = start(t, { sessions, store: new FeedStore() })
  await sync.ready()
  await sync.close()
  gate.resolve()
  await until(() => warnings.length === 1)
  t.same(warnings, [{ what: 'subscribing to revocations', error: failure }])
})

t.test('close stops polling and sweeping; the store is closed only when owned', async (t) => {
  for (const ownsStore of [false, true]) {
    const store = new FeedStore()
    const { sessions } = sessionsOver(store)
    const { sync } = start(t, { sessions, store, ownsStore })
    await sync.ready()
    await until(() => store.calls.sweep >= 2 && store.calls.revokedSince >= 3)
    await sync.close()
    const { revokedSince, sweep } = store.calls
    await sleep(Math.max(POLL, SWEEP) * 4)
    t.equal(store.calls.revokedSince, revokedSince, `no poll after close (ownsStore: ${ownsStore})`)
    t.equal(store.calls.sweep, sweep, `no sweep after close (ownsStore: ${ownsStore})`)
    t.equal(store.calls.close, ownsStore ? 1 : 0, ownsStore ? 'an owned store is closed' : 'the app\'s store is left open')
  }
})

t.test('the timers never hold the process open', async (t) => {
  const created: NodeJS.Timeout[] = []
  const original = globalThis.setInterval
  globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
    const timer = original(...args)
    created.push(timer)
    return timer
  }) as typeof setInterval
  const store = new FeedStore()
  try {
    start(t, { sessions: sessionsOver(store).sessions, store })
  } finally {
    globalThis.setInterval = original
  }
  t.equal(created.length, 2, 'a poller and a sweeper')
  t.ok(created.every((timer) => !timer.hasRef()), 'both unref\'d')
})

t.test('background failures go to warn and never throw', async (t) => {
  const health = { down: false }
  const fail = (message: string) => async (): Promise<never> => { throw new Error(message) }
  const sessions: RevocationSyncSessions = {
    pollRevocations: fail('poll'),
    sweep: fail('sweep'),
    subscribeRevocations: fail('subscribe'),
    health
  }
  const { sync, warnings } = start(t, { sessions, store: new FeedStore() })
  await t.resolves(sync.ready(), 'ready() does not reject')
  const seen = (what: string): boolean => warnings.some((warning) => warning.what === what)
  await until(() => seen('reading the revocation feed') && seen('sweeping expired sessions') && seen('subscribing to revocations'))
  t.match(warnings.find((warning) => warning.what === 'sweeping expired sessions'), { error: { message: 'sweep' } })
  t.match(warnings.find((warning) => warning.what === 'reading the revocation feed'), { error: { message: 'poll' } })
  t.match(warnings.find((warning) => warning.what === 'subscribing to revocations'), { error: { message: 'subscribe' } })

  // A known outage is reported as one incident elsewhere: background failures stay silent.
  health.down = true
  await sleep(POLL)
  const count = warnings.length
  await sleep(Math.max(POLL, SWEEP) * 4)
  t.equal(warnings.length, count, 'silent while the store is down')
  health.down = false
  await until(() => warnings.length > count)
  await t.resolves(sync.close())
})

t.test('through a real SessionService, a store outage fails silently and the feed catches up after it', async (t) => {
  const store = new FeedStore()
  const { sessions, revocations } = sessionsOver(pollOnlyStore(store))
  store.down = true
  const { sync, warnings } = start(t, { sessions, store: pollOnlyStore(store) })
  await t.resolves(sync.ready())
  t.ok(sessions.health.down, 'the outage is known')
  store.revoke('during-outage')
  await until(() => store.calls.revokedSince >= 3 && store.calls.sweep >= 2)
  t.same(warnings, [], 'reported once, as an incident, not per failed call')
  store.down = false
  await until(() => revocations.has('during-outage'))
  t.notOk(sessions.health.down)
})
