import t from 'tap'
import { MemoryStore } from '../lib/stores/memory.js'
import type { RevocationRecord, RotateRequest, RotateResult } from '../lib/stores/types.js'
import { defineStoreConformance, type StoreConformanceOptions } from '../lib/testing.js'
import { pollOnly } from './helpers.js'

/** Runs the kit with a plain registrar (as a third party's runner would) and reports each test's fate. */
async function runKit (createStore: StoreConformanceOptions['createStore']): Promise<Map<string, Error | null>> {
  const tests: Array<[string, () => Promise<void>]> = []
  defineStoreConformance({ test: (name, fn) => tests.push([name, fn]), createStore, concurrency: 20 })
  const results = new Map<string, Error | null>()
  for (const [name, fn] of tests) results.set(name, await fn().then(() => null, (error: Error) => error))
  return results
}

function failed (results: Map<string, Error | null>): string[] {
  return [...results].filter(([, error]) => error !== null).map(([name]) => name)
}

t.test('the kit passes a correct store', async (t) => {
  const results = await runKit(() => new MemoryStore())
  t.ok(results.size >= 18, `${results.size} conformance tests`)
  t.same(failed(results), [])
})

/** Reads, yields, then writes: the check-and-set is not atomic. */
class RacyStore extends MemoryStore {
  override async rotate (request: RotateRequest): Promise<RotateResult> {
    const [before] = await this.listUserSessions('user-a', request.now)
    await new Promise((resolve) => setImmediate(resolve))
    if (before?.tokenHash === request.presentedHash) {
      // Pretend the presented token is still current, whatever happened meanwhile.
      const result = await super.rotate(request)
      if (result.outcome !== 'rotated' && result.outcome !== 'missing') return { outcome: 'rotated', session: result.session }
      return result
    }
    return await super.rotate(request)
  }
}

t.test('the kit catches a rotation that is not atomic', async (t) => {
  const results = await runKit(() => new RacyStore())
  t.match(failed(results), [/concurrent rotations of one token, grace 0: exactly one winner/])
  t.match(results.get(failed(results)[0] as string)?.message, /one rotated/)
})

/** Claims to push revocations but never does. */
class SilentStore extends MemoryStore {
  override async subscribeRevocations (_listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    return async () => {}
  }
}

t.test('the kit catches a push that never arrives', async (t) => {
  const results = await runKit(() => new SilentStore())
  t.same(failed(results), [
    'subscribeRevocations (when implemented): each revocation is pushed once; unsubscribe stops it',
    'subscribeRevocations (when implemented): a claims change is pushed with its version'
  ])
  t.match(results.get(failed(results)[0] as string)?.message, /did not arrive within 2 s/)
})

/** Forgets the grace window: a replay inside it counts as theft. */
class GracelessStore extends MemoryStore {
  override async rotate (request: RotateRequest): Promise<RotateResult> {
    return await super.rotate({ ...request, grace: 0 })
  }
}

t.test('the kit catches a store that ignores the grace window', async (t) => {
  const results = await runKit(() => new GracelessStore())
  t.ok(failed(results).some((name) => name.includes('inside the grace window gets `grace`')))
  t.ok(failed(results).some((name) => name.includes('with grace: one winner, the rest grace or superseded')))
})

/** Applies whatever reaches it, however late: the plugin has answered 503 by then. */
class DeadlineBlindStore extends MemoryStore {
  override async createSession (...[session, options]: Parameters<MemoryStore['createSession']>): ReturnType<MemoryStore['createSession']> {
    const { deadline, ...blind } = options ?? {}
    return await super.createSession(session, blind)
  }

  override async rotate (request: RotateRequest): Promise<RotateResult> {
    return await super.rotate({ ...request, deadline: undefined })
  }
}

t.test('the kit catches a store that applies changes after their deadline', async (t) => {
  const results = await runKit(() => new DeadlineBlindStore())
  t.same(failed(results), [
    'rotate: a deadline already past changes nothing and rejects; the retry rotates',
    'createSession: a deadline already past stores nothing and rejects'
  ])
})

/** The old rule: a predecessor outside the grace window is theft, even when its successor was never used. */
class UnforgivingStore extends MemoryStore {
  override async rotate (request: RotateRequest): Promise<RotateResult> {
    const result = await super.rotate(request)
    if (result.outcome !== 'recovered') return result
    await this.revokeSession(request.sessionId, undefined, { now: request.now, keepFor: request.keepRevocationFor })
    return { outcome: 'reused', session: result.session }
  }
}

t.test('the kit catches a store that ends a session whose client never received its successor', async (t) => {
  const results = await runKit(() => new UnforgivingStore())
  const names = failed(results)
  t.ok(names.some((name) => name.startsWith('rotate: a lost response')), names.join('\n'))
  t.ok(names.some((name) => name.startsWith('rotate: with grace 0 the predecessor is `recovered`')), names.join('\n'))
  t.ok(names.some((name) => name.includes('concurrent retries of one predecessor')), names.join('\n'))
})

t.test('a store without push passes: the push test has nothing to check', async (t) => {
  const results = await runKit(() => pollOnly(new MemoryStore()))
  t.same(failed(results), [])
})

/** A replay cache that looks, yields, then records: two concurrent uses both see the key new. */
class RacyReplayStore extends MemoryStore {
  readonly #used = new Map<string, number>()
  override async useOnce (key: string, expiresAt: number, now: number): Promise<boolean> {
    const until = this.#used.get(key)
    await new Promise((resolve) => setImmediate(resolve))
    if (until !== undefined && now < until) return false
    this.#used.set(key, expiresAt)
    return true
  }
}

t.test('the kit catches a replay cache that is not atomic', async (t) => {
  const results = await runKit(() => new RacyReplayStore())
  t.same(failed(results), ['useOnce (when implemented): 20 concurrent uses of one key: exactly one true'])
  t.match(results.get(failed(results)[0] as string)?.message, /one true, the rest false/)
})

/** Keeps a key through the millisecond of its expiry (`now > expiresAt`), or forgets it a ms early. */
class OffByOneReplayStore extends MemoryStore {
  constructor (readonly shift: number) { super() }
  override async useOnce (key: string, expiresAt: number, now: number): Promise<boolean> {
    return await super.useOnce(key, expiresAt + this.shift, now)
  }
}

t.test('the kit catches a replay cache whose expiry is off by a millisecond', async (t) => {
  const expiry = 'useOnce (when implemented): a key is expired at `now >= expiresAt`: live a ms before, new at it and after it'
  const late = await runKit(() => new OffByOneReplayStore(1))
  t.same(failed(late), [expiry])
  t.match(late.get(expiry)?.message, /expired at its expiresAt: used anew/)
  const early = await runKit(() => new OffByOneReplayStore(-1))
  t.same(failed(early), [expiry])
  t.match(early.get(expiry)?.message, /live a ms before its expiresAt/)
})
