import assert from 'node:assert/strict'
import type { CreateResult, RevocationRecord, RotateResult, SessionLimit, SessionRecord, TokenStore } from '../stores/types.js'
import { GRACE, hash, IDLE, KEEP, MINUTE, type RecordFactory, renewed, rotationRequest as rotation, waitFor } from './fixtures.js'

/** Registers one check of the conformance kit on a fresh store (see ../testing.ts). */
export type Check = (name: string, body: (store: TokenStore, record: RecordFactory) => Promise<void>) => void

/**
 * The kit's checks of session policy (docs/design.md, «Session policy»): what a session
 * remembers of its first client and its authentication, `getSession`, session caps enforced
 * atomically, claims that change under live sessions.
 */
export function definePolicyChecks (check: Check, concurrency: number): void {
  check('getSession: a live session exactly, first client and authentication included; null once expired, revoked or unknown', async (store, record) => {
    const session = record({
      firstUserAgent: 'first-agent/1',
      firstIp: '203.0.113.9',
      authentication: { time: Date.UTC(2029, 11, 31), acr: 'mfa', amr: ['pwd', 'otp'] }
    })
    await store.createSession(session)
    assert.deepEqual(await store.getSession(session.id, session.createdAt), session)
    assert.equal(await store.getSession(session.id, session.expiresAt), null, 'expired at its idle expiry')
    assert.equal(await store.getSession('no-such-session', session.createdAt), null)
    await store.revokeSession(session.id, undefined, { now: session.createdAt, keepFor: KEEP })
    assert.equal(await store.getSession(session.id, session.createdAt), null, 'revoked')
  })

  check('rotate: the first client and the authentication stay; `authentication` replaces it on `rotated`, not on `grace`', async (store, record) => {
    const session = record({ authentication: { time: Date.UTC(2029, 11, 31), acr: 'pwd' } })
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    const client = { userAgent: 'agent/2', ip: '198.51.100.2' }
    const moved = await store.rotate(rotation(session, session.tokenHash, hash('2'), now, client))
    assert.deepEqual(moved, { outcome: 'rotated', session: renewed(session, hash('2'), now, client) }, 'only the current client moves')
    const stepUp = { time: now + 1000, acr: 'mfa', amr: ['pwd', 'otp'] }
    const graced = await store.rotate(rotation(session, session.tokenHash, hash('3'), now + 1000, { authentication: stepUp }))
    assert.equal(graced.outcome, 'grace')
    assert.deepEqual(graced.outcome === 'grace' && graced.session.authentication, session.authentication, 'a grace answer re-authenticates nothing')
    const upgraded = await store.rotate(rotation(session, hash('2'), hash('3'), now + 2000, { ...client, authentication: stepUp }))
    assert.deepEqual(rotatedRecord(upgraded).authentication, stepUp)
    const later = rotatedRecord(await store.rotate(rotation(session, hash('3'), hash('4'), now + 3000, client)))
    assert.deepEqual(later.authentication, stepUp, 'kept by the next rotation')
    assert.deepEqual(await store.getSession(session.id, now + 3000), later)
  })

  check('rotate: `absoluteExpiresAt` shortens the session, never lengthens it', async (store, record) => {
    const session = record()
    await store.createSession(session)
    const now = session.createdAt + MINUTE
    const longer = await store.rotate(rotation(session, session.tokenHash, hash('2'), now, { absoluteExpiresAt: session.absoluteExpiresAt + MINUTE }))
    assert.equal(rotatedRecord(longer).absoluteExpiresAt, session.absoluteExpiresAt, 'a later end is ignored')
    const cut = now + 2 * MINUTE + GRACE
    const shorter = rotatedRecord(await store.rotate(rotation(session, hash('2'), hash('3'), now + GRACE + 1, { absoluteExpiresAt: cut })))
    assert.equal(shorter.absoluteExpiresAt, cut)
    assert.equal(shorter.expiresAt, cut, 'the idle expiry never passes the new end')
    assert.ok(cut < now + GRACE + 1 + IDLE)
    assert.equal((await store.rotate(rotation(session, hash('3'), hash('4'), cut))).outcome, 'expired', 'the session ends at the new end')
  })

  const limit = (max: number, policy: SessionLimit['policy']): SessionLimit => ({ max, policy, keepRevocationFor: KEEP })

  check('createSession with a limit, `end-least-recent`: the least recently used live sessions end and are fed as revoked', async (store, record) => {
    const base = Date.UTC(2030, 0, 1)
    const oldest = record({ createdAt: base, lastUsedAt: base })
    const used = record({ createdAt: base + 1, lastUsedAt: base + 1 })
    const middle = record({ createdAt: base + 2, lastUsedAt: base + 2 })
    const expired = record({ createdAt: base - 1, lastUsedAt: base - 1, expiresAt: base + 10 })
    const foreign = record({ userId: 'user-b', createdAt: base, lastUsedAt: base })
    for (const session of [oldest, used, middle, expired, foreign]) assert.deepEqual(await store.createSession(session), { outcome: 'created', ended: [] })
    const now = base + MINUTE
    const touched = await store.rotate(rotation(used, used.tokenHash, hash('used-2'), now))
    assert.equal(touched.outcome, 'rotated', 'the second-oldest becomes the most recently used')
    const newest = record({ createdAt: now + 1, lastUsedAt: now + 1 })
    const result = await store.createSession(newest, { sessionLimit: limit(2, 'end-least-recent') })
    assert.deepEqual(result, { outcome: 'created', ended: [oldest, middle] }, 'ended oldest used first; an expired session counts for nothing')
    assert.deepEqual((await store.listUserSessions(newest.userId, now + 1)).map((s) => s.id), [used.id, newest.id])
    assert.deepEqual((await store.revokedSince(now + 1)).map((r) => r.sessionId).sort(), [oldest.id, middle.id].sort())
    assert.deepEqual(await store.listUserSessions(foreign.userId, now), [foreign], 'another user keeps everything')
  })

  check('createSession with a limit, `refuse`: nothing stored at the limit, stored under it', async (store, record) => {
    const first = record()
    assert.deepEqual(await store.createSession(first, { sessionLimit: limit(1, 'refuse') }), { outcome: 'created', ended: [] })
    const second = record({ createdAt: first.createdAt + 1 })
    assert.deepEqual(await store.createSession(second, { sessionLimit: limit(1, 'refuse') }), { outcome: 'refused' })
    assert.deepEqual(await store.listUserSessions(first.userId, first.createdAt + 1), [first])
    assert.equal(await store.getSession(second.id, first.createdAt + 1), null)
    assert.deepEqual(await store.revokedSince(0), [], 'a refusal revokes nothing')
    assert.deepEqual(await store.createSession(second, { sessionLimit: limit(2, 'refuse') }), { outcome: 'created', ended: [] })
  })

  check(`createSession with a limit: ${concurrency} concurrent logins of one user never leave more than the limit`, async (store, record) => {
    const base = Date.UTC(2030, 0, 1)
    const sessions = Array.from({ length: concurrency }, (_, i) => record({ createdAt: base + i, lastUsedAt: base + i }))
    const refused = await Promise.all(sessions.map(async (session) => await store.createSession(session, { sessionLimit: limit(3, 'refuse') })))
    assert.equal(refused.filter((r) => r.outcome === 'created').length, 3, 'exactly three logins stored')
    assert.equal((await store.listUserSessions('user-a', base + concurrency)).length, 3)
    const others = Array.from({ length: concurrency }, (_, i) => record({ userId: 'user-c', createdAt: base + i, lastUsedAt: base + i }))
    const ending = await Promise.all(others.map(async (session) => await store.createSession(session, { sessionLimit: limit(3, 'end-least-recent') })))
    const ended = ending.flatMap((r) => endedBy(r).map((s) => s.id))
    const live = await store.listUserSessions('user-c', base + concurrency)
    assert.equal(live.length, 3, 'and the user is left with exactly three')
    assert.equal(new Set(ended).size, concurrency - 3, 'every other session ended exactly once')
    assert.deepEqual([...ended, ...live.map((s) => s.id)].sort(), others.map((s) => s.id).sort())
  })

  check('updateUserClaims: every live session of the user takes the claims and the next version, fed once each; no one else\'s', async (store, record) => {
    const first = record({ claims: { role: 'admin' } })
    const second = record({ claims: { role: 'admin' }, createdAt: first.createdAt + 1 })
    const foreign = record({ userId: 'user-b', claims: { role: 'admin' } })
    for (const session of [first, second, foreign]) await store.createSession(session)
    const now = first.createdAt + MINUTE
    const entries = await store.updateUserClaims(first.userId, { role: 'user' }, { now, keepFor: KEEP })
    const expected: RevocationRecord[] = [first, second].map((s) => ({ sessionId: s.id, revokedAt: now, claimsVersion: 1 }))
    assert.deepEqual(sortById(entries), sortById(expected))
    assert.deepEqual(sortById(await store.revokedSince(now)), sortById(expected))
    assert.deepEqual(await store.listUserSessions(first.userId, now), [first, second].map((s) => ({ ...s, claims: { role: 'user' }, claimsVersion: 1 })))
    assert.deepEqual(await store.listUserSessions(foreign.userId, now), [foreign])
    const again = await store.updateUserClaims(first.userId, { role: 'guest' }, { now: now + 1, keepFor: KEEP })
    assert.deepEqual(again.map((e) => e.claimsVersion), [2, 2])
    const rotated = rotatedRecord(await store.rotate(rotation(first, first.tokenHash, hash('2'), now + 2, { claims: { role: 'reloaded' } })))
    assert.equal(rotated.claimsVersion, 2, 'rotation keeps the version, even when it replaces the claims')
    assert.deepEqual(await store.updateUserClaims('nobody', {}, { now, keepFor: KEEP }), [])
  })

  check('subscribeRevocations (when implemented): a claims change is pushed with its version', async (store, record) => {
    if (store.subscribeRevocations === undefined) return
    const heard: RevocationRecord[] = []
    const unsubscribe = await store.subscribeRevocations((entry) => heard.push(entry))
    try {
      const session = record()
      await store.createSession(session)
      const now = session.createdAt + 1
      await store.updateUserClaims(session.userId, { role: 'user' }, { now, keepFor: KEEP })
      await waitFor(() => heard.length >= 1)
      assert.deepEqual(heard, [{ sessionId: session.id, revokedAt: now, claimsVersion: 1 }])
    } finally {
      await unsubscribe()
    }
  })
}

/** The record of a `rotated` answer; any other outcome fails the check. */
function rotatedRecord (result: RotateResult): SessionRecord {
  assert.equal(result.outcome, 'rotated')
  return (result as { session: SessionRecord }).session
}

/** The sessions a `created` answer ended; a refusal fails the check. */
function endedBy (result: CreateResult): SessionRecord[] {
  assert.equal(result.outcome, 'created', 'with end-least-recent every login is stored')
  return (result as { ended: SessionRecord[] }).ended
}

function sortById<T extends { sessionId: string }> (entries: T[]): T[] {
  return [...entries].sort((a, b) => a.sessionId < b.sessionId ? -1 : 1)
}
