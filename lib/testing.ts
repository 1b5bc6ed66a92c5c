import assert from 'node:assert/strict'
import { type RevocationRecord, StoreDeadlineError, type TokenStore } from './stores/types.js'
import {
  count, GRACE, hash, KEEP, MAX_AGE, MINUTE, type RecordFactory, recordFactory, renewed, rotatedSession, rotationRequest, sessionRecord, waitFor
} from './testing/fixtures.js'
import { definePolicyChecks } from './testing/policy-checks.js'
import { defineProofChecks } from './testing/proof-checks.js'

export { rotationRequest, sessionRecord }

/**
 * The store conformance kit: one suite every TokenStore must pass, whatever it is built on.
 * Framework-agnostic: pass your runner's test registrar (tap `t.test`, node:test `test`,
 * vitest `it`); failures are thrown by `node:assert`.
 *
 * ```ts
 * import t from 'tap'
 * import { defineStoreConformance } from 'fastify-token-auth/testing'
 * defineStoreConformance({ test: t.test.bind(t), createStore: () => new MyStore({ prefix: unique() }) })
 * ```
 */
export interface StoreConformanceOptions {
  /** Registers one named async test. */
  test: (name: string, fn: () => Promise<void>) => unknown
  /** A store over empty (or private) data, for one test. */
  createStore: () => TokenStore | Promise<TokenStore>
  /** Releases a store after its test. @default store.close() */
  destroyStore?: (store: TokenStore) => Promise<void>
  /**
   * Parallel rotations of one token in the race tests.
   * @default 100
   */
  concurrency?: number
}

/**
 * Registers every conformance test. Those of an optional method (`subscribeRevocations`,
 * `useOnce`) pass at once on a store without it; the `useOnce` expiry check waits 200 ms.
 */
export function defineStoreConformance (options: StoreConformanceOptions): void {
  const concurrency = options.concurrency ?? 100
  // Each check gets its own record factory, bound to its own store: no state outside the check,
  // so suites (or checks run concurrently) never mix their ids.
  const check = (name: string, body: (store: TokenStore, record: RecordFactory) => Promise<void>): void => {
    options.test(name, async () => {
      const store = await options.createStore()
      try {
        await body(store, recordFactory(store))
      } finally {
        await (options.destroyStore ?? ((s: TokenStore) => s.close()))(store)
      }
    })
  }

  check('createSession stores a record that lists back exactly, JSON values included', async (store, record) => {
    const session = record({
      claims: { username: 'ünïcødé ✓', roles: ['a', 'b'], nested: { n: 1.5, ok: true, none: null } },
      userAgent: null
    })
    await store.createSession(session)
    assert.deepEqual(await store.listUserSessions(session.userId, session.createdAt), [session])
  })

  check('rotate: the current token rotates; the record moves on and idle expiry is renewed', async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    const next = hash('next')
    const result = await store.rotate(rotation(session, session.tokenHash, next, now, { userAgent: 'agent/2', ip: '198.51.100.2' }))
    const expected = renewed(session, next, now, { userAgent: 'agent/2', ip: '198.51.100.2' })
    assert.deepEqual(result, { outcome: 'rotated', session: expected })
    assert.deepEqual(await store.listUserSessions(session.userId, now), [expected])
  })

  check('rotate: claims are replaced when given and kept when not', async (store, record) => {
    const session = record({ claims: { role: 'user' } })
    await store.createSession(session)
    const first = await store.rotate({ ...rotation(session, session.tokenHash, hash('2'), session.createdAt + 1), claims: { role: 'admin' } })
    assert.equal(first.outcome, 'rotated')
    assert.deepEqual(first.outcome === 'rotated' && first.session.claims, { role: 'admin' })
    const second = await store.rotate(rotation(session, hash('2'), hash('3'), session.createdAt + 2))
    assert.deepEqual(second.outcome === 'rotated' && second.session.claims, { role: 'admin' })
  })

  check('rotate: idle expiry never passes the absolute lifetime', async (store, record) => {
    const createdAt = Date.UTC(2030, 0, 1)
    const session = record({ createdAt, expiresAt: createdAt + MAX_AGE })
    await store.createSession(session)
    const now = session.absoluteExpiresAt - MINUTE
    const result = await store.rotate(rotation(session, session.tokenHash, hash('late'), now))
    assert.equal(result.outcome, 'rotated')
    assert.equal(result.outcome === 'rotated' && result.session.expiresAt, session.absoluteExpiresAt)
  })

  check('rotate: the predecessor inside the grace window gets `grace`, up to the limit, then `superseded`', async (store, record) => {
    const { session, rotatedAt } = await rotatedSession(store, record)
    for (let use = 1; use <= 2; use++) {
      const result = await store.rotate(rotation(session, session.tokenHash, hash('2'), rotatedAt + GRACE, { graceLimit: 2 }))
      assert.equal(result.outcome, 'grace')
      assert.equal(result.outcome === 'grace' && result.session.graceUses, use)
      assert.equal(result.outcome === 'grace' && result.session.tokenHash, hash('2'), 'grace changes nothing but the count')
      assert.equal(result.outcome === 'grace' && result.session.rotatedAt, rotatedAt, 'the window does not slide')
    }
    const over = await store.rotate(rotation(session, session.tokenHash, hash('2'), rotatedAt + GRACE, { graceLimit: 2 }))
    assert.equal(over.outcome, 'superseded')
    const [alive] = await store.listUserSessions(session.userId, rotatedAt + GRACE)
    assert.equal(alive?.tokenHash, hash('2'), 'superseded leaves the session alive and unchanged')
    assert.equal(alive?.graceUses, 2)
    assert.deepEqual(await store.revokedSince(0), [], 'nothing revoked')
  })

  check('rotate: a lost response: the predecessor after the grace window is `recovered`, and the successor it replaces is dead', async (store, record) => {
    // The client never received hash('2'): the response was lost, or the store applied the
    // rotation after the caller had answered 503.
    const { session, rotatedAt } = await rotatedSession(store, record)
    const retry = rotatedAt + GRACE + 1
    const result = await store.rotate(rotation(session, session.tokenHash, hash('2b'), retry, { userAgent: 'agent/3', ip: '198.51.100.3' }))
    const expected = renewed(session, hash('2b'), retry, { userAgent: 'agent/3', ip: '198.51.100.3' })
    assert.deepEqual(result, { outcome: 'recovered', session: expected })
    assert.deepEqual(await store.listUserSessions(session.userId, retry), [expected])
    assert.deepEqual(await store.revokedSince(0), [], 'nothing revoked')
    const stolen = await store.rotate(rotation(session, hash('2'), hash('3'), retry + 1))
    assert.equal(stolen.outcome, 'reused', 'whoever holds the replaced successor is a thief: the session ends')
    assert.deepEqual(await store.revokedSince(retry + 1), [{ sessionId: session.id, revokedAt: retry + 1 }])
  })

  check('rotate: with grace 0 the predecessor is `recovered` a millisecond later, `superseded` in the same one', async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    await store.rotate(rotation(session, session.tokenHash, hash('2'), now, { grace: 0 }))
    const same = await store.rotate(rotation(session, session.tokenHash, hash('2'), now, { grace: 0 }))
    assert.equal(same.outcome, 'superseded', 'no successor different from the current one can be minted in the same ms')
    assert.equal(same.outcome === 'superseded' && same.session.tokenHash, hash('2'), 'superseded changes nothing')
    const behind = await store.rotate(rotation(session, session.tokenHash, hash('0'), now - 1, { grace: 0 }))
    assert.equal(behind.outcome, 'superseded', 'a caller whose clock is behind the rotation mints nothing')
    const later = await store.rotate(rotation(session, session.tokenHash, hash('2b'), now + 1, { grace: 0 }))
    assert.equal(later.outcome, 'recovered')
    assert.equal(later.outcome === 'recovered' && later.session.tokenHash, hash('2b'))
    assert.equal(later.outcome === 'recovered' && later.session.previousTokenHash, session.tokenHash)
    const again = await store.rotate(rotation(session, session.tokenHash, hash('2c'), now + 2, { grace: 0 }))
    assert.equal(again.outcome, 'recovered', 'a predecessor stays recoverable until its successor is used')
    const used = await store.rotate(rotation(session, hash('2c'), hash('3'), now + 3, { grace: 0 }))
    assert.equal(used.outcome, 'rotated')
    const theft = await store.rotate(rotation(session, session.tokenHash, hash('x'), now + 4, { grace: 0 }))
    assert.equal(theft.outcome, 'reused', 'once its successor was used, the predecessor is theft')
    assert.deepEqual(await store.listUserSessions(session.userId, now + 4), [])
  })

  check('rotate: a recovered successor has its own grace window; the predecessor is answered with it', async (store, record) => {
    const { session, rotatedAt } = await rotatedSession(store, record)
    const recoveredAt = rotatedAt + GRACE + 1
    await store.rotate(rotation(session, session.tokenHash, hash('2b'), recoveredAt))
    const result = await store.rotate(rotation(session, session.tokenHash, hash('2c'), recoveredAt + GRACE))
    assert.equal(result.outcome, 'grace')
    assert.equal(result.outcome === 'grace' && result.session.tokenHash, hash('2b'))
    assert.equal(result.outcome === 'grace' && result.session.rotatedAt, recoveredAt)
  })

  check('rotate: a deadline already past changes nothing and rejects; the retry rotates', async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    // A store that stalled past its caller's deadline (who has answered 503 meanwhile).
    await assert.rejects(store.rotate(rotation(session, session.tokenHash, hash('2'), now, { deadline: Date.now() - 1000 })), StoreDeadlineError)
    assert.deepEqual(await store.listUserSessions(session.userId, now), [session], 'nothing changed')
    await assert.rejects(store.rotate(rotation(session, session.tokenHash, hash('2'), session.expiresAt, { deadline: Date.now() - 1000 })), StoreDeadlineError)
    assert.deepEqual(await store.listUserSessions(session.userId, now), [session], 'a late call deletes nothing either')
    const retry = await store.rotate(rotation(session, session.tokenHash, hash('2'), now + 1))
    assert.equal(retry.outcome, 'rotated')
  })

  check('createSession: a deadline already past stores nothing and rejects', async (store, record) => {
    const session = record()
    await assert.rejects(store.createSession(session, { deadline: Date.now() - 1000 }), StoreDeadlineError)
    assert.deepEqual(await store.listUserSessions(session.userId, session.createdAt), [])
    assert.deepEqual(await store.rotate(rotation(session, session.tokenHash, hash('2'), session.createdAt + 1)), { outcome: 'missing' })
    await store.createSession(session, { deadline: Date.now() + MINUTE })
    assert.deepEqual(await store.listUserSessions(session.userId, session.createdAt), [session])
  })

  check('rotate: an older generation is reuse even inside the grace window', async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    await store.rotate(rotation(session, session.tokenHash, hash('2'), now))
    await store.rotate(rotation(session, hash('2'), hash('3'), now + 1))
    const result = await store.rotate(rotation(session, session.tokenHash, hash('2'), now + 2))
    assert.equal(result.outcome, 'reused')
    assert.deepEqual(await store.listUserSessions(session.userId, now + 2), [])
  })

  check('rotate: a hash the session never had is reuse (it carries a valid signature for this session)', async (store, record) => {
    const session = record()
    await store.createSession(session)
    const result = await store.rotate(rotation(session, hash('never'), hash('x'), session.createdAt + 1))
    assert.equal(result.outcome, 'reused')
  })

  check('rotate: idle expiry and absolute expiry give `expired` and delete the session', async (store, record) => {
    const idle = record()
    await store.createSession(idle)
    assert.equal((await store.rotate(rotation(idle, idle.tokenHash, hash('2'), idle.expiresAt))).outcome, 'expired')
    assert.deepEqual(await store.rotate(rotation(idle, idle.tokenHash, hash('2'), idle.expiresAt + 1)), { outcome: 'missing' })

    const absolute = record({ expiresAt: Date.UTC(2030, 0, 1, 1), absoluteExpiresAt: Date.UTC(2030, 0, 1, 1) })
    await store.createSession(absolute)
    const result = await store.rotate(rotation(absolute, absolute.tokenHash, hash('2'), absolute.absoluteExpiresAt + 1))
    assert.equal(result.outcome, 'expired')
    assert.deepEqual(await store.revokedSince(0), [], 'expiry is not a revocation')
  })

  check('rotate: an unknown session is `missing`', async (store, record) => {
    const session = record()
    assert.deepEqual(await store.rotate(rotation(session, session.tokenHash, hash('2'), session.createdAt)), { outcome: 'missing' })
  })

  check(`rotate: ${concurrency} concurrent rotations of one token, grace 0: exactly one winner, the rest mint nothing`, async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    const results = await Promise.all(Array.from({ length: concurrency }, (_, i) =>
      store.rotate(rotation(session, session.tokenHash, hash(`next-${i}`), now, { grace: 0 }))))
    const tally = count(results.map((result) => result.outcome))
    assert.deepEqual(tally, { rotated: 1, superseded: concurrency - 1 }, `one rotated, the rest superseded; got ${JSON.stringify(tally)}`)
    const winner = results.find((result) => result.outcome === 'rotated')
    const [alive] = await store.listUserSessions(session.userId, now)
    assert.equal(alive?.tokenHash, winner?.outcome === 'rotated' && winner.session.tokenHash)
  })

  check(`rotate: ${concurrency} concurrent retries of one predecessor, a ms apart, grace 0: each recovery replaces the last`, async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    await store.rotate(rotation(session, session.tokenHash, hash('lost'), now, { grace: 0 }))
    const results = await Promise.all(Array.from({ length: concurrency }, (_, i) =>
      store.rotate(rotation(session, session.tokenHash, hash(`retry-${i}`), now + 1 + i, { grace: 0 }))))
    const tally = JSON.stringify(count(results.map((result) => result.outcome)))
    const recoveries = results.flatMap((result) => result.outcome === 'recovered' ? [result.session] : [])
    const superseded = results.filter((result) => result.outcome === 'superseded')
    assert.equal(recoveries.length + superseded.length, concurrency, tally)
    assert.ok(recoveries.length >= 1, tally)
    const [alive] = await store.listUserSessions(session.userId, now + concurrency)
    const [last] = recoveries.sort((a, b) => (b.rotatedAt as number) - (a.rotatedAt as number))
    assert.equal(alive?.tokenHash, last?.tokenHash, 'one live successor: the latest recovery\'s')
    assert.deepEqual(await store.revokedSince(0), [], 'nothing revoked')
  })

  check(`rotate: ${concurrency} concurrent rotations of one token with grace: one winner, the rest grace or superseded`, async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    const next = hash('next')
    const results = await Promise.all(Array.from({ length: concurrency }, () =>
      store.rotate(rotation(session, session.tokenHash, next, now, { graceLimit: 5 }))))
    const tally = count(results.map((result) => result.outcome))
    assert.deepEqual(tally, { rotated: 1, grace: 5, superseded: concurrency - 6 })
    const [alive] = await store.listUserSessions(session.userId, now)
    assert.equal(alive?.tokenHash, next, 'the session survived with the single successor')
  })

  check('revokeSession: deletes and feeds the revocation; another user\'s id or an unknown id change nothing', async (store, record) => {
    const mine = record()
    const theirs = record({ userId: 'user-b' })
    await store.createSession(mine)
    await store.createSession(theirs)
    const now = mine.createdAt + MINUTE
    assert.equal(await store.revokeSession(theirs.id, mine.userId, { now, keepFor: KEEP }), null)
    assert.equal(await store.revokeSession('no-such-session', undefined, { now, keepFor: KEEP }), null)
    assert.deepEqual(await store.revokedSince(0), [])
    assert.deepEqual(await store.revokeSession(mine.id, mine.userId, { now, keepFor: KEEP }), mine)
    assert.deepEqual(await store.revokeSession(theirs.id, undefined, { now: now + 1, keepFor: KEEP }), theirs)
    assert.deepEqual(await store.listUserSessions(mine.userId, now), [])
    assert.deepEqual(await store.listUserSessions(theirs.userId, now), [])
    assert.deepEqual(await store.revokedSince(now), [{ sessionId: mine.id, revokedAt: now }, { sessionId: theirs.id, revokedAt: now + 1 }])
    assert.equal(await store.revokeSession(mine.id, undefined, { now, keepFor: KEEP }), null, 'revoking twice is a no-op')
  })

  check('revokeUserSessions: every session of the user, no one else\'s', async (store, record) => {
    const first = record()
    const second = record({ createdAt: first.createdAt + 1 })
    const other = record({ userId: 'user-b' })
    for (const session of [first, second, other]) await store.createSession(session)
    const now = first.createdAt + MINUTE
    assert.deepEqual((await store.revokeUserSessions(first.userId, { now, keepFor: KEEP })).sort(), [first.id, second.id].sort())
    assert.deepEqual(await store.listUserSessions(first.userId, now), [])
    assert.deepEqual(await store.listUserSessions(other.userId, now), [other])
    assert.deepEqual((await store.revokedSince(now)).map((r) => r.sessionId).sort(), [first.id, second.id].sort())
    assert.deepEqual(await store.revokeUserSessions('nobody', { now, keepFor: KEEP }), [])
  })

  check('listUserSessions: oldest first, live only, the user\'s only', async (store, record) => {
    const base = Date.UTC(2030, 0, 1)
    const newer = record({ createdAt: base + 2000, lastUsedAt: base + 2000 })
    const older = record({ createdAt: base + 1000, lastUsedAt: base + 1000 })
    const expired = record({ createdAt: base, lastUsedAt: base, expiresAt: base + 5000 })
    const foreign = record({ userId: 'user-b' })
    for (const session of [newer, older, expired, foreign]) await store.createSession(session)
    assert.deepEqual(await store.listUserSessions(newer.userId, base + 5000), [older, newer])
    assert.deepEqual(await store.listUserSessions(newer.userId, base + 4999), [expired, older, newer])
    assert.deepEqual(await store.listUserSessions('nobody', base), [])
  })

  check('revokedSince: entries at or after `since`, oldest first', async (store, record) => {
    const sessions = [record(), record(), record()]
    for (const session of sessions) await store.createSession(session)
    const base = sessions[0]!.createdAt
    for (const [i, session] of sessions.entries()) {
      await store.revokeSession(session.id, undefined, { now: base + i * 1000, keepFor: KEEP })
    }
    const all: RevocationRecord[] = sessions.map((session, i) => ({ sessionId: session.id, revokedAt: base + i * 1000 }))
    assert.deepEqual(await store.revokedSince(base), all)
    assert.deepEqual(await store.revokedSince(base + 1000), all.slice(1))
    assert.deepEqual(await store.revokedSince(base + 2001), [])
  })

  check('sweep: expired sessions and feed entries past their keep time go; the rest stays', async (store, record) => {
    const base = Date.UTC(2030, 0, 1)
    const live = record({ createdAt: base, lastUsedAt: base, expiresAt: base + 10 * MINUTE })
    const dead = record({ createdAt: base, lastUsedAt: base, expiresAt: base + MINUTE })
    const revoked = record()
    for (const session of [live, dead, revoked]) await store.createSession(session)
    await store.revokeSession(revoked.id, undefined, { now: base, keepFor: 2 * MINUTE })
    assert.equal(await store.sweep(base + MINUTE), 1, 'one expired session swept')
    assert.deepEqual(await store.listUserSessions(live.userId, base), [live])
    assert.equal((await store.revokedSince(0)).length, 1, 'the revocation is kept for its keep time')
    assert.equal(await store.sweep(base + 2 * MINUTE), 0)
    assert.deepEqual(await store.revokedSince(0), [], 'and dropped after it')
    assert.equal((await store.rotate(rotation(dead, dead.tokenHash, hash('2'), base))).outcome, 'missing', 'a swept session is gone')
  })

  check('subscribeRevocations (when implemented): each revocation is pushed once; unsubscribe stops it', async (store, record) => {
    if (store.subscribeRevocations === undefined) return
    const heard: RevocationRecord[] = []
    const unsubscribe = await store.subscribeRevocations((record) => heard.push(record))
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + 1
    await store.revokeSession(session.id, undefined, { now, keepFor: KEEP })
    await waitFor(() => heard.length >= 1)
    assert.deepEqual(heard, [{ sessionId: session.id, revokedAt: now }])
    await unsubscribe()
    const later = record()
    await store.createSession(later)
    await store.revokeSession(later.id, undefined, { now: now + 1, keepFor: KEEP })
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(heard.length, 1, 'nothing after unsubscribe')
  })

  definePolicyChecks(check, concurrency)
  defineProofChecks(check)
}

const rotation = rotationRequest
