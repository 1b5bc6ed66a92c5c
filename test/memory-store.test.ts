import { createHash, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import t from 'tap'
import { MemoryStore } from '../lib/stores/memory.js'
import { isPackable, packClaims, packIp, stringHash, unpackClaims, unpackIp } from '../lib/stores/memory/codec.js'
import { ProofIds } from '../lib/stores/memory/proof-ids.js'
import type { RotateRequest, SessionRecord } from '../lib/stores/types.js'
import { defineStoreConformance } from '../lib/testing.js'

const T0 = 1_700_000_000_000
/** When revocations happen in these tests, and how long the feed keeps them. */
const CTX = { now: T0, keepFor: 60_000 }
const IDLE = 60_000
const ABSOLUTE = 300_000

let counter = 0
function record (overrides: Partial<SessionRecord> = {}): SessionRecord {
  counter++
  return {
    id: `session-${counter}`,
    userId: 'user-1',
    claims: { role: 'user' },
    createdAt: T0,
    lastUsedAt: T0,
    expiresAt: T0 + IDLE,
    absoluteExpiresAt: T0 + ABSOLUTE,
    tokenHash: `hash-${counter}-0`,
    previousTokenHash: null,
    rotatedAt: null,
    graceUses: 0,
    userAgent: 'ua',
    ip: '203.0.113.1',
    firstUserAgent: overrides.userAgent ?? 'ua',
    firstIp: overrides.ip ?? '203.0.113.1',
    authentication: { time: overrides.createdAt ?? T0 },
    claimsVersion: 0,
    ...overrides
  }
}

function rotation (session: SessionRecord, overrides: Partial<RotateRequest> = {}): RotateRequest {
  return {
    sessionId: session.id,
    presentedHash: session.tokenHash,
    nextHash: `${session.tokenHash}-next`,
    now: T0 + 1000,
    idleTtl: IDLE,
    grace: 5000,
    graceLimit: 2,
    userAgent: 'ua-2',
    ip: '198.51.100.2',
    keepRevocationFor: 60_000,
    ...overrides
  }
}

async function only (store: MemoryStore, userId = 'user-1', now = T0): Promise<SessionRecord | undefined> {
  const list = await store.listUserSessions(userId, now)
  return list.length === 1 ? list[0] : undefined
}

t.test('createSession stores a copy; size counts sessions', async (t) => {
  const store = new MemoryStore()
  t.equal(store.size, 0)
  const session = record()
  const snapshot = structuredClone(session)
  await store.createSession(session)
  t.equal(store.size, 1)
  t.same(await only(store), snapshot)

  session.tokenHash = 'mutated'
  session.claims.role = 'admin'
  t.equal((await only(store))?.tokenHash, snapshot.tokenHash, 'mutating the input after the call changes nothing')
  t.same((await only(store))?.claims, { role: 'user' }, 'nor do its nested claims')

  const listed = await only(store) as SessionRecord
  listed.expiresAt = 0
  listed.claims.role = 'root'
  t.same(await only(store), snapshot, 'mutating a listed record changes nothing')

  await store.createSession({ ...listed, expiresAt: T0 + IDLE, claims: { role: 'other' } })
  t.equal(store.size, 1, 'the same id overwrites')
  t.same((await only(store))?.claims, { role: 'other' })
})

t.test('claims are stored as JSON', async (t) => {
  const store = new MemoryStore()
  const session = record({ claims: { when: new Date(0), gone: undefined, nested: { list: [1, 'two'] }, n: null } })
  await store.createSession(session)
  const stored = await only(store)
  t.same(stored?.claims, { when: '1970-01-01T00:00:00.000Z', nested: { list: [1, 'two'] }, n: null })
  t.equal(typeof stored?.claims.when, 'string', 'a Date becomes a string')
  t.notOk(Object.hasOwn(stored?.claims ?? {}, 'gone'), 'undefined is dropped')

  const result = await store.rotate(rotation(session, { claims: { at: new Date(1000), drop: undefined } }))
  t.equal(result.outcome, 'rotated')
  const expected = { at: '1970-01-01T00:00:01.000Z' }
  t.same(result.outcome === 'rotated' ? result.session.claims : null, expected, 'replacement claims are round-tripped too')
  t.same((await only(store, 'user-1', T0 + 1000))?.claims, expected)
})

t.test('rotate outcomes', async (t) => {
  t.test('missing', async (t) => {
    const store = new MemoryStore()
    t.same(await store.rotate(rotation(record())), { outcome: 'missing' })
    t.equal(store.size, 0)
  })

  t.test('rotated: current hash replaced, everything refreshed', async (t) => {
    const store = new MemoryStore()
    const session = record()
    await store.createSession(session)
    const now = T0 + 1000
    const result = await store.rotate(rotation(session, { now }))
    const expected: SessionRecord = {
      ...session,
      tokenHash: `${session.tokenHash}-next`,
      previousTokenHash: session.tokenHash,
      rotatedAt: now,
      graceUses: 0,
      lastUsedAt: now,
      expiresAt: now + IDLE,
      userAgent: 'ua-2',
      ip: '198.51.100.2'
    }
    t.same(result, { outcome: 'rotated', session: expected })
    t.same(await only(store, 'user-1', now), expected, 'stored as returned')
    t.same((await only(store, 'user-1', now))?.claims, { role: 'user' }, 'claims kept when none are passed')

    // The returned record is a copy.
    if (result.outcome === 'rotated') {
      result.session.tokenHash = 'mutated'
      result.session.claims.role = 'admin'
    }
    t.same(await only(store, 'user-1', now), expected, 'mutating the returned record changes nothing')
  })

  t.test('rotated: expiresAt capped at absoluteExpiresAt; graceUses reset', async (t) => {
    const store = new MemoryStore()
    const session = record({ previousTokenHash: 'older', rotatedAt: T0, graceUses: 2, expiresAt: T0 + ABSOLUTE - 5000 })
    await store.createSession(session)
    const now = T0 + ABSOLUTE - 10_000
    const result = await store.rotate(rotation(session, { now }))
    t.equal(result.outcome === 'rotated' && result.session.expiresAt, T0 + ABSOLUTE)
    t.equal(result.outcome === 'rotated' && result.session.absoluteExpiresAt, T0 + ABSOLUTE)
    t.equal(result.outcome === 'rotated' && result.session.graceUses, 0)
  })

  t.test('grace, then superseded, then recovered; the replaced successor is theft', async (t) => {
    const store = new MemoryStore()
    const session = record()
    await store.createSession(session)
    await store.rotate(rotation(session, { now: T0 + 1000 }))
    const predecessor = rotation(session, { nextHash: 'would-be-ignored' })

    const first = await store.rotate({ ...predecessor, now: T0 + 2000 })
    t.equal(first.outcome, 'grace')
    t.equal(first.outcome === 'grace' && first.session.graceUses, 1)
    t.equal(first.outcome === 'grace' && first.session.tokenHash, `${session.tokenHash}-next`, 'the current hash is not replaced')
    t.equal(first.outcome === 'grace' && first.session.rotatedAt, T0 + 1000, 'the window does not slide')
    t.equal(first.outcome === 'grace' && first.session.lastUsedAt, T0 + 1000)

    const second = await store.rotate({ ...predecessor, now: T0 + 6000 })
    t.equal(second.outcome, 'grace', 'the window end (rotatedAt + grace) is inclusive')
    t.equal(second.outcome === 'grace' && second.session.graceUses, 2)

    const third = await store.rotate({ ...predecessor, now: T0 + 6000 })
    t.equal(third.outcome, 'superseded', 'over graceLimit')
    t.equal(third.outcome === 'superseded' && third.session.graceUses, 2, 'superseded changes nothing')
    t.equal(store.size, 1, 'the session survives')
    t.equal((await only(store, 'user-1', T0 + 6000))?.graceUses, 2)

    const late = await store.rotate({ ...predecessor, now: T0 + 6001 })
    t.equal(late.outcome, 'recovered', 'after the window, a predecessor whose successor was never used is recovered')
    t.equal(late.outcome === 'recovered' && late.session.tokenHash, 'would-be-ignored', 'its fresh successor replaces the unused one')
    t.equal(late.outcome === 'recovered' && late.session.previousTokenHash, session.tokenHash, 'the predecessor stays')
    t.equal(late.outcome === 'recovered' && late.session.graceUses, 0)
    t.equal(late.outcome === 'recovered' && late.session.rotatedAt, T0 + 6001)
    const replaced = await store.rotate(rotation(session, { presentedHash: `${session.tokenHash}-next`, now: T0 + 6002 }))
    t.equal(replaced.outcome, 'reused', 'the successor it replaced is theft')
    t.equal(store.size, 0, 'the session is deleted')
    t.same(await store.listUserSessions('user-1', T0), [])
  })

  t.test('graceLimit 0 answers superseded at once', async (t) => {
    const store = new MemoryStore()
    const session = record()
    await store.createSession(session)
    await store.rotate(rotation(session))
    t.equal((await store.rotate(rotation(session, { now: T0 + 1500, graceLimit: 0 }))).outcome, 'superseded')
  })

  t.test('grace 0 disables the grace, even within the same millisecond: nothing is minted then', async (t) => {
    const store = new MemoryStore()
    const session = record()
    await store.createSession(session)
    const now = T0 + 1000
    t.equal((await store.rotate(rotation(session, { now, grace: 0 }))).outcome, 'rotated')
    const replay = await store.rotate(rotation(session, { now, grace: 0, nextHash: 'same-ms' }))
    t.equal(replay.outcome, 'superseded', 'the same millisecond cannot mint a different successor')
    t.equal((await only(store, 'user-1', now))?.tokenHash, `${session.tokenHash}-next`, 'nothing changed')
    const retry = await store.rotate(rotation(session, { now: now + 1, grace: 0, nextHash: 'retry' }))
    t.equal(retry.outcome, 'recovered', 'a millisecond later the unused successor is replaced')
  })

  t.test('an unknown or older hash is reuse', async (t) => {
    const store = new MemoryStore()
    const session = record()
    await store.createSession(session)
    await store.rotate(rotation(session, { now: T0 + 1000 }))
    await store.rotate(rotation(session, { presentedHash: `${session.tokenHash}-next`, nextHash: 'third', now: T0 + 1100 }))
    const result = await store.rotate(rotation(session, { now: T0 + 1200 }))
    t.equal(result.outcome, 'reused', 'the grandparent, inside every grace window')
    t.equal(store.size, 0)

    const other = record()
    await store.createSession(other)
    t.equal((await store.rotate(rotation(other, { presentedHash: 'never-issued' }))).outcome, 'reused')
    t.equal(store.size, 0)
  })

  t.test('expired: idle and absolute', async (t) => {
    const store = new MemoryStore()
    const idle = record()
    await store.createSession(idle)
    t.equal((await store.rotate(rotation(idle, { now: idle.expiresAt - 1 }))).outcome, 'rotated', 'one millisecond before expiry')

    const stale = record()
    await store.createSession(stale)
    const result = await store.rotate(rotation(stale, { now: stale.expiresAt }))
    t.same(result, { outcome: 'expired', session: stale }, 'at expiresAt: expired, with the record as it was')
    t.same(await store.rotate(rotation(stale, { now: stale.expiresAt })), { outcome: 'missing' }, 'and deleted')

    const capped = record({ expiresAt: T0 + 10_000, absoluteExpiresAt: T0 + 10_000 })
    await store.createSession(capped)
    t.equal((await store.rotate(rotation(capped, { now: T0 + 10_000, presentedHash: 'whatever' }))).outcome, 'expired', 'expiry is decided before the hash')
    t.equal(store.size, 1)
  })
})

t.test('100 concurrent rotations of one hash, a millisecond apart: one rotated, each later one recovers', async (t) => {
  const store = new MemoryStore()
  const session = record()
  await store.createSession(session)
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) =>
    store.rotate(rotation(session, { grace: 0, nextHash: `next-${i}`, now: T0 + 1000 + i }))))
  const outcomes = results.map((r) => r.outcome)
  t.equal(outcomes[0], 'rotated', 'one winner')
  t.same(new Set(outcomes.slice(1)), new Set(['recovered']), 'no successor was used, so none is theft')
  t.equal((await only(store, 'user-1', T0 + 1100))?.tokenHash, 'next-99', 'one live successor: the last one minted')
})

t.test('100 concurrent rotations of one hash at the same instant, grace 0', async (t) => {
  const store = new MemoryStore()
  const session = record()
  await store.createSession(session)
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) =>
    store.rotate(rotation(session, { grace: 0, nextHash: `next-${i}`, now: T0 + 1000 }))))
  const outcomes = results.map((r) => r.outcome)
  t.equal(outcomes.filter((o) => o === 'rotated').length, 1, 'exactly one rotated')
  t.equal(outcomes.filter((o) => o === 'grace').length, 0, 'with grace 0 no replay is answered')
})

t.test('revokeSession', async (t) => {
  const store = new MemoryStore()
  const session = record()
  await store.createSession(session)
  t.equal(await store.revokeSession(session.id, 'user-2', CTX), null, 'another user\'s id: nothing deleted')
  t.equal(store.size, 1)
  t.equal(await store.revokeSession('nope', undefined, CTX), null)
  const deleted = await store.revokeSession(session.id, 'user-1', CTX)
  t.same(deleted, session, 'resolves with the deleted record')
  t.equal(store.size, 0)
  t.same(await store.listUserSessions('user-1', T0), [], 'the user index is cleaned too')
  t.equal(await store.revokeSession(session.id, undefined, CTX), null, 'idempotent')

  const other = record()
  await store.createSession(other)
  const gone = await store.revokeSession(other.id, undefined, CTX) as SessionRecord
  t.same(gone, other, 'without userId any owner matches')
  gone.claims.role = 'x'
  t.equal(other.claims.role, 'user', 'the returned record is a copy')
})

t.test('revokeUserSessions', async (t) => {
  const store = new MemoryStore()
  const a = record()
  const b = record()
  const bob = record({ userId: 'user-2' })
  for (const s of [a, b, bob]) await store.createSession(s)
  t.same((await store.revokeUserSessions('user-1', CTX)).sort(), [a.id, b.id].sort())
  t.equal(store.size, 1)
  t.same((await store.listUserSessions('user-2', T0)).map((s) => s.id), [bob.id])
  t.same(await store.revokeUserSessions('user-1', CTX), [])
  t.same(await store.revokeUserSessions('nobody', CTX), [])
  t.equal((await store.rotate(rotation(a))).outcome, 'missing')
})

t.test('listUserSessions: oldest first, expired left out', async (t) => {
  const store = new MemoryStore()
  const newest = record({ createdAt: T0 + 2000, expiresAt: T0 + 100_000 })
  const oldest = record({ createdAt: T0, expiresAt: T0 + 100_000 })
  const middle = record({ createdAt: T0 + 1000, expiresAt: T0 + 50_000 })
  const foreign = record({ userId: 'user-2' })
  for (const s of [newest, oldest, middle, foreign]) await store.createSession(s)
  t.same((await store.listUserSessions('user-1', T0 + 3000)).map((s) => s.id), [oldest.id, middle.id, newest.id], 'sorted by createdAt, not insertion')
  t.same((await store.listUserSessions('user-1', T0 + 49_999)).map((s) => s.id), [oldest.id, middle.id, newest.id])
  t.same((await store.listUserSessions('user-1', T0 + 50_000)).map((s) => s.id), [oldest.id, newest.id], 'expired at now >= expiresAt')
  t.same(await store.listUserSessions('user-1', T0 + 100_000), [])
  t.equal(store.size, 4, 'listing deletes nothing')
  t.same(await store.listUserSessions('nobody', T0), [])
})

t.test('maxSessions evicts the oldest session', async (t) => {
  const store = new MemoryStore({ maxSessions: 2 })
  const a = record()
  const b = record({ userId: 'user-2' })
  const c = record()
  await store.createSession(a)
  await store.createSession(b)
  await store.createSession(c)
  t.equal(store.size, 2)
  t.same((await store.listUserSessions('user-1', T0)).map((s) => s.id), [c.id], 'a was evicted and left the user index')
  t.same((await store.listUserSessions('user-2', T0)).map((s) => s.id), [b.id])
  t.equal((await store.rotate(rotation(a))).outcome, 'missing')

  await store.createSession({ ...b, claims: { replaced: true } })
  t.equal(store.size, 2, 'overwriting an id evicts nothing')
  t.same((await store.listUserSessions('user-1', T0)).map((s) => s.id), [c.id])
  t.same((await store.listUserSessions('user-2', T0))[0]?.claims, { replaced: true })
  const d = record()
  await store.createSession(d)
  t.same((await store.listUserSessions('user-1', T0)).map((s) => s.id), [d.id], 'the overwritten b counts as newest, so c was the oldest')
  t.same((await store.listUserSessions('user-2', T0)).map((s) => s.id), [b.id])
})

t.test('option validation', async (t) => {
  for (const [name, value] of [['maxSessions', 0], ['maxSessions', 1.5], ['maxSessions', -1], ['maxSessions', NaN], ['sweepBatchSize', 0], ['sweepBatchSize', 2.5],
    ['maxProofIds', 0], ['maxProofIds', 0.5], ['maxProofIds', Infinity]] as const) {
    t.throws(() => new MemoryStore({ [name]: value }), { name: 'TypeError', message: new RegExp(`"${name}"`) }, `${name}: ${value}`)
  }
  t.throws(() => new MemoryStore({ maxProofIds: -1 }), { name: 'TypeError', message: 'MemoryStore option "maxProofIds" must be a positive integer, got -1' })
  t.doesNotThrow(() => new MemoryStore({ maxSessions: 1, sweepBatchSize: 1, maxProofIds: 1 }))
  t.doesNotThrow(() => new MemoryStore())
})

t.test('sweep removes expired sessions in batches, yielding to the event loop', async (t) => {
  const store = new MemoryStore({ sweepBatchSize: 2 })
  const alive: SessionRecord[] = []
  for (let i = 0; i < 7; i++) {
    const session = record({ userId: `user-${i % 3}`, expiresAt: i % 3 === 0 ? T0 + 100_000 : T0 + 10_000 })
    if (i % 3 === 0) alive.push(session)
    await store.createSession(session)
  }
  t.equal(store.size, 7)
  const order: string[] = []
  setImmediate(() => order.push('immediate'))
  const removed = await store.sweep(T0 + 10_000).then((n) => { order.push('sweep done'); return n })
  t.equal(removed, 4)
  t.same(order, ['immediate', 'sweep done'], 'a callback scheduled before the sweep ran before it finished')
  t.equal(store.size, 3)
  t.same((await store.listUserSessions('user-0', T0)).map((s) => s.id), alive.map((s) => s.id))
  t.same(await store.listUserSessions('user-1', T0), [], 'the user index is cleaned')
  t.equal(await store.sweep(T0 + 10_000), 0, 'a second sweep finds nothing')
  t.equal(await store.sweep(T0 + 100_000), 3)
  t.equal(store.size, 0)
  t.equal(await new MemoryStore().sweep(T0), 0, 'an empty store')
})

t.test('close resolves and is harmless', async (t) => {
  const store = new MemoryStore()
  await store.createSession(record())
  t.equal(await store.close(), undefined)
  t.equal(await store.close(), undefined, 'twice')
})

t.test('MemoryStore passes the store conformance kit', async (t) => {
  defineStoreConformance({ test: (name, fn) => t.test(name, fn), createStore: () => new MemoryStore() })
})

t.test('the revocation feed: newest entries found without walking the old ones; listeners are independent', async (t) => {
  const store = new MemoryStore()
  const heard: string[] = []
  const stopA = await store.subscribeRevocations((record) => heard.push(`a:${record.sessionId}`))
  await store.subscribeRevocations((record) => heard.push(`b:${record.sessionId}`))
  const sessions = [record(), record(), record()]
  for (const session of sessions) await store.createSession(session)
  for (const [i, session] of sessions.entries()) await store.revokeSession(session.id, undefined, { now: T0 + i, keepFor: 60_000 })
  t.same((await store.revokedSince(T0 + 2)).map((entry) => entry.sessionId), [sessions[2]!.id])
  t.same(await store.revokedSince(T0 + 3), [])
  await stopA()
  const last = record()
  await store.createSession(last)
  await store.revokeSession(last.id, undefined, { now: T0 + 3, keepFor: 60_000 })
  t.same(heard, [...sessions.flatMap((s) => [`a:${s.id}`, `b:${s.id}`]), `b:${last.id}`])
})

// ---------------------------------------------------------------------------------------------
// The compact layout (lib/stores/memory/): values are packed only when they unpack exactly.
// ---------------------------------------------------------------------------------------------

/** A SHA-256 cut to 128 bits, in base64url, as the plugin stores: packed as 16 bytes. */
function sha (text: string): string {
  return createHash('sha256').update(text).digest().toString('base64url', 0, 16)
}

/** A 128-bit id in base64url, as the plugin makes session ids: packed as 16 bytes. */
function sid (): string {
  return randomBytes(16).toString('base64url')
}

t.test('codec: only canonical base64url is packable; IPv4 packs and unpacks exactly', async (t) => {
  const id = sid()
  t.ok(isPackable(id))
  t.ok(isPackable(sha('x')))
  const legacyHash = createHash('sha256').update('x').digest('base64url')
  for (const text of [`${id.slice(0, 21)}B`, `${id}A`, id.slice(1), `${id.slice(0, 20)}+A`, `${id.slice(0, 20)}/A`, `${id.slice(0, 20)}=A`, `${id}=`, legacyHash]) {
    t.notOk(isPackable(text), `not packable: ${text}`)
  }
  for (const ip of ['0.0.0.0', '255.255.255.255', '192.168.1.10', '10.0.0.1', '128.0.0.1']) {
    t.type(packIp(ip), 'number', ip)
    t.equal(unpackIp(packIp(ip)), ip, ip)
  }
  for (const ip of ['::1', '2001:db8::1', '1.2.3', '1.2.34', '1.2.3.4.', '.1.2.3.4', '1..2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.00', '1.2.3.256', '1.2.3.1000',
    '1.2.3.4a', '1.2.3.x', '', '1.2.3.4 ', '1.2.3.', '10.20.30.', '10.20.304', '255.255.255.2555']) {
    t.equal(packIp(ip), ip, `${JSON.stringify(ip)} kept as a string`)
  }
  t.equal(packIp(null), null)
  t.equal(unpackIp(null), null)
  t.equal(packClaims({}), '{}')
  t.not(unpackClaims('{}'), unpackClaims('{}'), 'a new object each time')
  t.not(stringHash('user-1', 1), stringHash('user-1', 2), 'the seed changes the hash')
})

t.test('codec: every 16-byte value round-trips through its base64url text', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => isPackable(Buffer.from(bytes).toString('base64url'))))
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (n) => {
    const ip = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
    return unpackIp(packIp(ip)) === ip && typeof packIp(ip) === 'number'
  }))
  t.pass()
})

t.test('packed and unpacked values round-trip, field for field, through every operation', async (t) => {
  const store = new MemoryStore()
  const odd = ['fe80::1', '1.2.3.04', null] as const
  const sessions = [
    record({ id: sid(), tokenHash: sha('a'), ip: '198.51.100.7', claims: {}, userAgent: null }),
    record({ id: sid(), tokenHash: sha('b'), previousTokenHash: sha('b0'), rotatedAt: T0, ip: odd[0] }),
    record({ id: `${sid().slice(0, 21)}B`, tokenHash: `${sha('c').slice(0, 21)}B`, previousTokenHash: createHash('sha256').update('c0').digest('base64url'), rotatedAt: T0, ip: odd[1] }),
    record({ id: sid(), tokenHash: sha('d'), previousTokenHash: 'odd', rotatedAt: null, ip: odd[2], claims: { nested: { a: [1, 'ü'] } } })
  ]
  for (const session of sessions) await store.createSession(session)
  t.same(await store.listUserSessions('user-1', T0), sessions)
  for (const session of sessions) {
    t.same(await store.revokeSession(session.id, 'user-1', CTX), session)
    t.equal(await store.revokeSession(session.id, undefined, CTX), null)
  }
  t.equal(store.size, 0)
  t.equal((await store.rotate(rotation(sessions[0]!))).outcome, 'missing')
})

t.test('rotation between packed and unpacked hashes: each compares only with its own kind', async (t) => {
  const store = new MemoryStore()
  const session = record({ id: sid(), tokenHash: sha('1') })
  await store.createSession(session)
  const at = (ms: number, presentedHash: string, nextHash: string): RotateRequest => rotation(session, { presentedHash, nextHash, now: T0 + ms })
  t.equal((await store.rotate(at(1000, 'odd-1', 'x'))).outcome, 'reused', 'an unpackable hash never equals a packed one')
  await store.createSession(session)
  t.equal((await store.rotate(at(1000, sha('other'), 'x'))).outcome, 'reused', 'a packed hash differs from another')
  await store.createSession(session)
  t.equal((await store.rotate(at(1000, sha('1'), 'odd-2'))).outcome, 'rotated', 'packed to unpacked')
  const grace = await store.rotate(at(2000, sha('1'), 'ignored'))
  t.equal(grace.outcome, 'grace', 'the packed predecessor')
  t.equal(grace.outcome === 'grace' && grace.session.tokenHash, 'odd-2')
  t.equal((await store.rotate(at(3000, 'odd-2', sha('3')))).outcome, 'rotated', 'unpacked to packed')
  const previous = await store.rotate(at(4000, 'odd-2', 'ignored'))
  t.equal(previous.outcome === 'grace' && previous.session.previousTokenHash, 'odd-2', 'the unpacked predecessor')
  t.equal((await store.rotate(at(5000, sha('3'), sha('4')))).outcome, 'rotated', 'packed to packed')
  t.same((await only(store, 'user-1', T0 + 5000))?.previousTokenHash, sha('3'))
  t.equal((await store.rotate(at(6000, 'odd-2', sha('5')))).outcome, 'reused', 'an unpackable hash never equals a packed predecessor')
})

t.test('the slab grows past its first slots and keeps every order', async (t) => {
  const store = new MemoryStore({ maxSessions: 1000 })
  const sessions: SessionRecord[] = []
  for (let i = 0; i < 700; i++) {
    const session = record({ id: i % 7 === 0 ? `odd-id-${i}` : sid(), userId: `user-${i % 5}`, tokenHash: sha(`${i}`), ip: `10.0.${i >> 8}.${i & 255}` })
    sessions.push(session)
    await store.createSession(session)
    if (i % 3 === 0) await store.revokeSession(session.id, undefined, CTX)
  }
  const alive = sessions.filter((_, i) => i % 3 !== 0)
  t.equal(store.size, alive.length)
  for (let user = 0; user < 5; user++) {
    t.same(await store.listUserSessions(`user-${user}`, T0), alive.filter((s) => s.userId === `user-${user}`), `user-${user}, in creation order`)
  }
  const [first] = alive
  t.equal((await store.rotate(rotation(first!, { nextHash: sha('next') }))).outcome, 'rotated')
  t.same(await store.revokeUserSessions('user-4', CTX), alive.filter((s) => s.userId === 'user-4').map((s) => s.id), 'in creation order')
  const full = new MemoryStore({ maxSessions: 300 })
  for (const session of sessions) await full.createSession(session)
  t.equal(full.size, 300, 'grown to maxSessions, never past it')
  t.same((await full.listUserSessions('user-0', T0)).map((s) => s.id), sessions.slice(400).filter((s) => s.userId === 'user-0').map((s) => s.id), 'the oldest were evicted')
})

t.test('a user\'s sessions share their user id and equal claims; unchanged claims keep theirs', async (t) => {
  const store = new MemoryStore()
  const a = record({ id: sid(), claims: { role: 'user' } })
  const b = record({ id: sid(), claims: { role: 'admin' } })
  const c = record({ id: sid(), claims: { role: 'user' } })
  const other = record({ id: sid(), userId: 'user-2', claims: {} })
  for (const session of [a, b, c, other]) await store.createSession(session)
  t.same(await store.listUserSessions('user-1', T0), [a, b, c])
  const same = await store.rotate(rotation(a, { claims: { role: 'user' } }))
  t.same(same.outcome === 'rotated' && same.session.claims, { role: 'user' })
  const changed = await store.rotate(rotation(c, { claims: {} }))
  t.same(changed.outcome === 'rotated' && changed.session.claims, {})
  t.same((await store.listUserSessions('user-2', T0))[0]?.claims, {})
})

t.test('sweep walks slots freed and filled while it yields', async (t) => {
  const store = new MemoryStore({ sweepBatchSize: 1 })
  for (let i = 0; i < 300; i++) await store.createSession(record({ id: sid(), expiresAt: T0 + (i % 2 === 0 ? 10 : 100_000) }))
  const sweeping = store.sweep(T0 + 10)
  for (let i = 0; i < 300; i++) await store.createSession(record({ id: sid(), expiresAt: T0 + 100_000 }))
  t.equal(await sweeping, 150)
  t.equal(store.size, 450)
})

t.test('users whose ids share a bucket are told apart', async (t) => {
  // Two slots, so two buckets: ten users cannot all have their own.
  const store = new MemoryStore({ maxSessions: 2 })
  for (let user = 0; user < 10; user++) {
    const [a, b] = [record({ userId: `user-${user}` }), record({ userId: `user-${(user + 1) % 10}` })]
    await store.createSession(a)
    await store.createSession(b)
    t.same(await store.listUserSessions(`user-${user}`, T0), [a])
    t.same(await store.listUserSessions(`user-${(user + 1) % 10}`, T0), [b])
  }
})

// ---------------------------------------------------------------------------------------------
// Session policy (docs/design.md, «Session policy»): the values only some sessions have are kept
// beside the slab, so these check that each comes back exact and none outlives its session.
// ---------------------------------------------------------------------------------------------

t.test('the first client: kept through every later move, whichever part moved; a session may begin with one differing', async (t) => {
  const store = new MemoryStore()
  const session = record({ id: sid(), tokenHash: sha('a0') })
  await store.createSession(session)
  const client = (result: Awaited<ReturnType<MemoryStore['rotate']>>): unknown[] => result.outcome === 'rotated'
    ? [result.session.firstUserAgent, result.session.firstIp, result.session.userAgent, result.session.ip]
    : []
  const ipMoved = await store.rotate(rotation(session, { nextHash: sha('a1'), userAgent: 'ua', ip: '198.51.100.7' }))
  t.strictSame(client(ipMoved), ['ua', '203.0.113.1', 'ua', '198.51.100.7'], 'only the IP moved')
  const bothMoved = await store.rotate(rotation(session, { presentedHash: sha('a1'), nextHash: sha('a2'), now: T0 + 2000, userAgent: 'ua-3', ip: '2001:db8::1' }))
  t.strictSame(client(bothMoved), ['ua', '203.0.113.1', 'ua-3', '2001:db8::1'], 'a second move keeps the first client')
  const back = await store.rotate(rotation(session, { presentedHash: sha('a2'), nextHash: sha('a3'), now: T0 + 3000, userAgent: 'ua', ip: '203.0.113.1' }))
  t.strictSame(client(back), ['ua', '203.0.113.1', 'ua', '203.0.113.1'], 'back where it began')
  t.strictSame(await store.getSession(session.id, T0 + 3000), back.outcome === 'rotated' ? back.session : null)

  const elsewhere = record({ id: sid(), userAgent: 'ua-now', ip: '10.0.0.1', firstUserAgent: 'ua-then', firstIp: '2001:db8::2' })
  await store.createSession(elsewhere)
  t.strictSame(await store.getSession(elsewhere.id, T0), elsewhere)
  const uaMoved = await store.rotate(rotation(elsewhere, { userAgent: 'ua-later', ip: '10.0.0.1' }))
  t.strictSame(client(uaMoved), ['ua-then', '2001:db8::2', 'ua-later', '10.0.0.1'], 'only the User-Agent moved')
})

t.test('authentication: acr and amr survive as copies; optional members stay absent; the common one comes back', async (t) => {
  const store = new MemoryStore()
  const amr = ['pwd', 'otp']
  const strong = record({ id: sid(), authentication: { time: T0 - 5000, acr: 'mfa', amr } })
  await store.createSession(strong)
  amr.push('mutated')
  const stored = await store.getSession(strong.id, T0) as SessionRecord
  t.strictSame(stored.authentication, { time: T0 - 5000, acr: 'mfa', amr: ['pwd', 'otp'] }, 'the caller\'s array is not held')
  stored.authentication.amr?.push('mutated')
  t.strictSame((await store.getSession(strong.id, T0))?.authentication.amr, ['pwd', 'otp'], 'nor is a returned one')

  for (const authentication of [{ time: T0, acr: 'pwd' }, { time: T0, amr: ['hwk'] }, { time: T0 + 1 }]) {
    const session = record({ id: sid(), authentication })
    await store.createSession(session)
    const got = (await store.getSession(session.id, T0))?.authentication
    t.strictSame(got, authentication)
    t.strictSame(Object.keys(got ?? {}), Object.keys(authentication), 'no member written as undefined')
  }

  const plain = await store.rotate(rotation(strong, { authentication: { time: T0 } }))
  t.strictSame(plain.outcome === 'rotated' && Object.entries(plain.session.authentication), [['time', T0]], 're-authenticated back to `{ time: createdAt }`')
  t.strictSame(plain.outcome === 'rotated' && [plain.session.firstUserAgent, plain.session.userAgent], ['ua', 'ua-2'], 'the first client is still kept')
})

t.test('claimsVersion: a record stored with one keeps it; expired sessions are not updated; claims entries are swept', async (t) => {
  const store = new MemoryStore()
  const versioned = record({ id: sid(), claimsVersion: 3 })
  const expired = record({ id: sid(), expiresAt: T0 + 10 })
  const other = record({ id: sid(), userId: 'user-2' })
  for (const session of [versioned, expired, other]) await store.createSession(session)
  t.strictSame(await store.getSession(versioned.id, T0), versioned)
  const entry = { sessionId: versioned.id, revokedAt: T0 + 10, claimsVersion: 4 }
  t.strictSame(await store.updateUserClaims('user-1', { role: 'admin' }, { now: T0 + 10, keepFor: 1000 }), [entry])
  t.strictSame(await store.listUserSessions('user-1', T0), [{ ...versioned, claims: { role: 'admin' }, claimsVersion: 4 }, expired], 'the expired one is untouched')

  await store.revokeSession(other.id, undefined, { now: T0 + 20, keepFor: 2000 })
  const revoked = { sessionId: other.id, revokedAt: T0 + 20 }
  const feed = await store.revokedSince(T0)
  t.strictSame(feed, [entry, revoked])
  t.notOk('claimsVersion' in (feed[1] as object), 'a revocation has no claimsVersion at all')
  t.equal(await store.sweep(T0 + 1010), 1)
  t.strictSame(await store.revokedSince(T0), [revoked], 'the claims entry went when its keep time passed')
})

t.test('a slot freed and reused holds nothing of its previous session', async (t) => {
  // One slot: every session takes the slot the one before it had.
  const store = new MemoryStore({ maxSessions: 1 })
  const rich = (): SessionRecord => record({
    id: sid(), firstUserAgent: 'old-ua', firstIp: '10.9.8.7', authentication: { time: T0 - 1, acr: 'mfa', amr: ['otp'] }, claimsVersion: 7
  })
  const first = rich()
  await store.createSession(first)
  t.strictSame(await store.getSession(first.id, T0), first)
  await store.revokeSession(first.id, undefined, CTX)
  const plain = record({ id: sid() })
  await store.createSession(plain)
  t.strictSame(await store.getSession(plain.id, T0), plain, 'after a revocation')

  const moved = await store.rotate(rotation(plain))
  t.equal(moved.outcome === 'rotated' && moved.session.firstUserAgent, 'ua')
  await store.createSession(rich())
  const evicting = record({ id: sid() })
  await store.createSession(evicting)
  t.equal(store.size, 1)
  t.strictSame(await store.getSession(evicting.id, T0), evicting, 'after an eviction')
  await store.updateUserClaims('user-1', { role: 'x' }, CTX)
  await store.sweep(T0 + IDLE)
  const afterSweep = record({ id: sid(), createdAt: T0 + IDLE, lastUsedAt: T0 + IDLE, expiresAt: T0 + 2 * IDLE })
  await store.createSession(afterSweep)
  t.strictSame(await store.getSession(afterSweep.id, T0 + IDLE), afterSweep, 'after a sweep')
})

t.test('session caps: ties end the older session, then the smaller id; ended sessions are pushed; a refusal deletes nothing', async (t) => {
  const store = new MemoryStore()
  const heard: string[] = []
  await store.subscribeRevocations((entry) => heard.push(entry.sessionId))
  const tied = ['tie-b', 'tie-a', 'tie-c'].map((id) => record({ id }))
  const older = record({ id: 'tie-z', createdAt: T0 - 1, lastUsedAt: T0 })
  for (const session of [...tied, older]) await store.createSession(session)
  const newest = record({ id: 'newest', createdAt: T0 + 1, lastUsedAt: T0 + 1 })
  const limit = { max: 2, policy: 'end-least-recent', keepRevocationFor: 1000 } as const
  t.strictSame(await store.createSession(newest, { sessionLimit: limit }), { outcome: 'created', ended: [older, tied[1], tied[0]] })
  t.strictSame(heard, [older.id, 'tie-a', 'tie-b'])
  t.strictSame(await store.revokedSince(T0 + 1), heard.map((sessionId) => ({ sessionId, revokedAt: T0 + 1 })), 'fed at the new session\'s createdAt')
  t.strictSame((await store.listUserSessions('user-1', T0 + 1)).map((s) => s.id), ['tie-c', 'newest'])

  const collision = record({ id: 'newest', createdAt: T0 + 2, lastUsedAt: T0 + 2 })
  t.strictSame(await store.createSession(collision, { sessionLimit: { ...limit, policy: 'refuse' } }), { outcome: 'refused' })
  t.strictSame(await store.getSession('newest', T0 + 2), newest, 'not even the session whose id it had is overwritten')
})

t.test('useOnce: expired proof ids leave from the front on every use; one out of order waits for the sweep or its next use', async (t) => {
  const ids = new ProofIds(100)
  for (let i = 0; i < 5; i++) t.equal(ids.useOnce(`k${i}`, T0 + 1000 + i, T0), true)
  t.equal(ids.useOnce('early', T0 + 500, T0), true, 'out of order: it expires before those ahead of it')
  t.equal(ids.size, 6)
  t.equal(ids.useOnce('next', T0 + 5000, T0 + 1002), true)
  t.equal(ids.size, 4, 'k0 to k2 (expired at now >= expiresAt) dropped; the look stopped at k3, live')
  t.equal(ids.useOnce('k3', T0 + 5000, T0 + 1002), false, 'k3 is live')
  t.equal(ids.useOnce('early', T0 + 6000, T0 + 1002), true, 'an expired key still held is used anew')
  t.equal(ids.useOnce('early', T0 + 6000, T0 + 1002), false, 'recorded until its new expiry')
  t.equal(ids.size, 4)
  t.equal(ids.useOnce('k5', T0 + 7000, T0 + 5000), true)
  t.equal(ids.size, 2, 'k3, k4 and next dropped: early was moved to the end, where its new expiry belongs')
  t.equal(ids.useOnce('early', T0 + 8000, T0 + 6000), true, 'and leaves from the front in turn')
  t.equal(ids.size, 2, 'k5 and early')
})

t.test('useOnce: the sweep drops every expired proof id, in batches, yielding to the event loop', async (t) => {
  const ids = new ProofIds(100)
  for (let i = 0; i < 5; i++) ids.useOnce(`k${i}`, T0 + (i % 2 === 0 ? 2000 : 1000), T0)
  const order: string[] = []
  setImmediate(() => order.push('immediate'))
  await ids.sweep(T0 + 1000, 2).then(() => order.push('sweep done'))
  t.same(order, ['immediate', 'sweep done'], 'a callback scheduled before the sweep ran before it finished')
  t.equal(ids.size, 3, 'k1 and k3, behind live keys, are gone')
  await ids.sweep(T0 + 2000, 10)
  t.equal(ids.size, 0)

  // Through the store: the sweep frees the room an out-of-order key took, so nothing live is evicted.
  const store = new MemoryStore({ maxProofIds: 2, sweepBatchSize: 1 })
  t.equal(await store.useOnce('x', T0 + 2000, T0), true)
  t.equal(await store.useOnce('y', T0 + 1000, T0), true)
  t.equal(await store.sweep(T0 + 1000), 0, 'no session to sweep')
  t.equal(await store.useOnce('z', T0 + 3000, T0 + 1000), true)
  t.equal(await store.useOnce('x', T0 + 2000, T0 + 1000), false, 'x stayed: y was swept, so z did not evict it')
})

t.test('maxProofIds: when full, the oldest proof id goes (the nearest to expiry); a new proof is never refused', async (t) => {
  const store = new MemoryStore({ maxProofIds: 2 })
  t.equal(await store.useOnce('a', T0 + 1000, T0), true)
  t.equal(await store.useOnce('b', T0 + 1001, T0), true)
  t.equal(await store.useOnce('c', T0 + 1002, T0), true, 'full: a goes, c is recorded')
  t.equal(await store.useOnce('c', T0 + 1002, T0), false)
  t.equal(await store.useOnce('b', T0 + 1001, T0), false, 'b stays')
  t.equal(await store.useOnce('a', T0 + 1003, T0), true, 'a was evicted: its replay is accepted (it had the least time left)')
  t.equal(await store.useOnce('c', T0 + 1002, T0), false, 'b went for it, c stays')
  t.equal(await store.useOnce('b', T0 + 1004, T0), true)
  // The default holds a million.
  const large = new MemoryStore()
  for (let i = 0; i < 1000; i++) await large.useOnce(`k${i}`, T0 + 1000, T0)
  t.equal(await large.useOnce('k0', T0 + 1000, T0), false, 'far below the default cap, nothing is evicted')
})
