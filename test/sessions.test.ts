import { createSigner, createVerifier } from 'fast-jwt'
import t, { type Test } from 'tap'
import {
  AlreadyBoundError, GraceExhaustedError, InvalidRefreshTokenError, InvalidTokenError, RefreshTokenExpiredError, RefreshTokenReusedError,
  SessionRevokedError, StoreUnavailableError, UserUnavailableError
} from '../lib/errors.js'
import { TokenAuthEvents, type TokenAuthEventMap } from '../lib/events.js'
import { RevocationList } from '../lib/revocations.js'
import { type AuthUser, SessionService, type SessionServiceOptions } from '../lib/sessions.js'
import { MemoryStore } from '../lib/stores/memory.js'
import type { SessionRecord } from '../lib/stores/types.js'
import type { BindingsRead } from '../lib/refresh-tokens.js'
import { type JwtPair, TokenCodec } from '../lib/tokens.js'
import { ACCESS_KID, ACCESS_SECRET, REFRESH_SECRET, refreshTokenOf, storedHashOf } from './helpers.js'

const IDLE = 60 // seconds
const MAX_AGE = 300 // seconds
const GRACE = 5 // seconds
const GRACE_LIMIT = 2
const ACCESS_TTL = 60 // seconds
const REQUIRED_CLAIMS = ['sub', 'sid', 'jti', 'iat', 'exp']
const CLIENT = { ip: '203.0.113.7', userAgent: 'test-agent/1.0' }
const ALICE: AuthUser = { id: 'user-1', claims: { username: 'alice', role: 'user' } }

function pair (secret: string, typ: string, kid?: string): JwtPair {
  return {
    sign: createSigner({ key: secret, algorithm: 'HS256', header: { alg: 'HS256', typ, ...(kid === undefined ? {} : { kid }) } }) as (payload: object) => string,
    verify: createVerifier({ key: secret, algorithms: ['HS256'], checkTyp: typ, requiredClaims: REQUIRED_CLAIMS }) as (token: string) => unknown
  }
}

function decodePart (token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index] as string, 'base64url').toString('utf8'))
}

type Emitted = { [E in keyof TokenAuthEventMap]: { event: E, payload: TokenAuthEventMap[E][0] } }[keyof TokenAuthEventMap]

/**
 * A SessionService over a MemoryStore with a hand-driven clock. The service gets it as `now`; the
 * JWT checks (fast-jwt's `exp`, the codec's "no future iat") read `Date.now`, so that is pointed at
 * the same clock for the test and restored after it. Timers (the store deadline) stay real.
 */
function setup (t: Test, overrides: Partial<SessionServiceOptions> = {}, bindingsRead?: BindingsRead) {
  // A whole second, so a JWT's `exp` (whole seconds) equals the session's expiry in ms.
  let clock = Math.floor(Date.now() / 1000) * 1000
  const realNow = Date.now
  Date.now = () => clock
  t.teardown(() => { Date.now = realNow })
  const store = new MemoryStore()
  const listenerErrors: unknown[] = []
  const events = new TokenAuthEvents((error) => listenerErrors.push(error))
  const emitted: Emitted[] = []
  for (const name of ['login', 'loginFailed', 'refresh', 'reuseDetected', 'logout', 'logoutAll', 'sessionRevoked'] as const) {
    events.on(name, (payload: any) => { emitted.push({ event: name, payload } as Emitted) })
  }
  const revocations = new RevocationList(ACCESS_TTL * 1000)
  const codec = new TokenCodec({
    accessKeys: [{ kid: ACCESS_KID, algorithm: 'HS256', ...pair(ACCESS_SECRET, 'at+jwt', ACCESS_KID) }],
    refresh: pair(REFRESH_SECRET, 'rt+jwt'),
    refreshSecret: REFRESH_SECRET,
    accessTokenTtl: ACCESS_TTL,
    refreshTokenTtl: IDLE,
    clockTolerance: 0,
    verifyCacheSize: 0,
    ...(bindingsRead === undefined ? {} : { bindingsRead })
  })
  const service = new SessionService({
    store,
    codec,
    events,
    revocations,
    refreshTokenTtl: IDLE,
    sessionMaxAge: MAX_AGE,
    reuseGrace: GRACE,
    reuseGraceLimit: GRACE_LIMIT,
    storeTimeout: 1000,
    revocationTtl: ACCESS_TTL * 1000,
    now: () => clock,
    ...overrides
  })
  return {
    service,
    store,
    events,
    emitted,
    listenerErrors,
    revocations,
    codec,
    now: () => clock,
    advance: (ms: number) => { clock += ms },
    record: async (userId = ALICE.id): Promise<SessionRecord[]> => await store.listUserSessions(userId, clock)
  }
}

t.test('issue: tokens, claims and a record holding only hashes', async (t) => {
  const { service, emitted, record, now } = setup(t)
  const issuedAt = now()
  const tokens = await service.issue(ALICE, CLIENT)

  t.equal(tokens.tokenType, 'Bearer')
  t.equal(tokens.expiresIn, ACCESS_TTL)
  t.equal(tokens.userId, ALICE.id)
  t.equal(tokens.refreshTokenExpiresAt, issuedAt + IDLE * 1000, 'idle expiry from the (fake) clock')

  const refreshToken = refreshTokenOf(tokens.refreshToken)
  t.same(refreshToken, { sub: ALICE.id, sid: tokens.sessionId, jti: refreshToken.jti }, 'the refresh token names its user, session and id, nothing else')
  t.equal(tokens.refreshToken.split('.').length, 3, 'no JOSE header: it is not a JWT')
  t.throws(() => decodePart(tokens.refreshToken, 0), SyntaxError, 'its first segment is no JSON header')
  const jti = refreshToken.jti
  t.equal(Buffer.from(jti, 'base64url').length, 16, 'jti has 128 bits')

  t.same(decodePart(tokens.accessToken, 0), { alg: 'HS256', typ: 'at+jwt', kid: ACCESS_KID })
  const claims = service.verifyAccessToken<any>(tokens.accessToken)
  t.equal(claims.sub, ALICE.id)
  t.equal(claims.sid, tokens.sessionId)
  t.equal(claims.username, 'alice')
  t.equal(claims.role, 'user')
  t.equal(claims.exp - claims.iat, ACCESS_TTL)
  t.not(claims.jti, jti, 'access and refresh tokens have distinct ids')

  const [session, ...others] = await record()
  t.equal(others.length, 0)
  t.ok(session)
  const stored = session as SessionRecord
  t.equal(stored.id, tokens.sessionId)
  t.equal(stored.tokenHash, storedHashOf(tokens.refreshToken), 'the store holds the token\'s 128-bit HMAC hash, base64url')
  t.equal(stored.previousTokenHash, null)
  t.equal(stored.rotatedAt, null)
  t.equal(stored.graceUses, 0)
  t.equal(stored.createdAt, issuedAt)
  t.equal(stored.lastUsedAt, issuedAt)
  t.equal(stored.absoluteExpiresAt, issuedAt + MAX_AGE * 1000)
  t.equal(stored.ip, CLIENT.ip)
  t.equal(stored.userAgent, CLIENT.userAgent)
  t.same(stored.claims, ALICE.claims)
  for (const [field, value] of Object.entries(stored)) {
    const text = JSON.stringify(value)
    t.notOk(text.includes(jti), `record field ${field} does not contain the jti`)
    t.notOk(text.includes(tokens.refreshToken), `record field ${field} does not contain the refresh token`)
    t.notOk(text.includes(tokens.refreshToken.slice(-22)), `record field ${field} does not contain the token's tag`)
  }
  t.same(emitted, [{ event: 'login', payload: { userId: ALICE.id, sessionId: tokens.sessionId, ...CLIENT } }])
})

t.test('access and refresh tokens never verify as each other', async (t) => {
  const { service } = setup(t)
  const tokens = await service.issue(ALICE, CLIENT)
  t.throws(() => service.verifyAccessToken(tokens.refreshToken), InvalidTokenError)
  await t.rejects(service.refresh(tokens.accessToken, CLIENT), InvalidRefreshTokenError)
  await t.rejects(service.refresh('garbage', CLIENT), { code: 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', statusCode: 401 })
  t.throws(() => service.verifyAccessToken('x'.repeat(9000)), InvalidTokenError, 'oversized tokens are refused')
  await t.rejects(service.issue({ id: '' }, CLIENT), TypeError, 'a user without an id is a programming error')
  await t.rejects(service.issue(null as unknown as AuthUser, CLIENT), TypeError)
})

t.test('rotate -> grace -> grace exhausted -> after the window: recovered; the successor it replaced is theft', async (t) => {
  const { service, store, emitted, revocations, record, advance, now } = setup(t)
  const first = await service.issue(ALICE, CLIENT)
  const firstJti = refreshTokenOf(first.refreshToken).jti

  advance(10_000)
  const rotatedAt = now()
  const second = await service.refresh(first.refreshToken, { ip: '198.51.100.1', userAgent: 'other-agent' })
  t.not(second.refreshToken, first.refreshToken, 'rotation hands out a new refresh token')
  t.equal(second.sessionId, first.sessionId, 'same session')
  t.equal(second.refreshTokenExpiresAt, rotatedAt + IDLE * 1000, 'idle expiry slides on use')
  const secondJti = refreshTokenOf(second.refreshToken).jti
  t.not(secondJti, firstJti)
  let [session] = await record()
  t.equal(session?.tokenHash, storedHashOf(second.refreshToken), 'current hash is the successor')
  t.equal(session?.previousTokenHash, storedHashOf(first.refreshToken), 'predecessor hash kept for grace and theft detection')
  t.equal(session?.rotatedAt, rotatedAt)
  t.equal(session?.lastUsedAt, rotatedAt)
  t.equal(session?.ip, '198.51.100.1')
  t.equal(session?.userAgent, 'other-agent')
  t.same(emitted.at(-1), { event: 'refresh', payload: { userId: ALICE.id, sessionId: first.sessionId, grace: false, recovered: false, ip: '198.51.100.1', userAgent: 'other-agent' } })

  // Grace: the predecessor gets the very same successor, at most GRACE_LIMIT times.
  for (let use = 1; use <= GRACE_LIMIT; use++) {
    advance(1000)
    const again = await service.refresh(first.refreshToken, CLIENT)
    t.equal(again.refreshToken, second.refreshToken, `grace answer ${use} is byte-identical to the successor`)
    t.equal(again.sessionId, first.sessionId)
    t.equal(service.verifyAccessToken(again.accessToken).sid, first.sessionId, 'grace answer carries a valid access token')
    ;[session] = await record()
    t.equal(session?.graceUses, use, 'graceUses counts the answers')
    t.equal(session?.tokenHash, storedHashOf(second.refreshToken), 'grace changes nothing but graceUses')
    t.same(emitted.at(-1), { event: 'refresh', payload: { userId: ALICE.id, sessionId: first.sessionId, grace: true, recovered: false, ...CLIENT } })
  }
  advance(1000)
  await t.rejects(service.refresh(first.refreshToken, CLIENT), GraceExhaustedError, 'over the limit: superseded')
  await t.rejects(service.refresh(first.refreshToken, CLIENT), { code: 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED', statusCode: 401 })
  t.equal(store.size, 1, 'the session survives an exhausted grace')
  t.equal(revocations.has(first.sessionId), false)
  t.equal(service.verifyAccessToken(second.accessToken).sid, first.sessionId, 'its access tokens still work')

  // Exactly at the end of the window the predecessor is still "in grace" (and over the limit).
  advance(rotatedAt + GRACE * 1000 - now())
  await t.rejects(service.refresh(first.refreshToken, CLIENT), GraceExhaustedError, 'window end is inclusive and does not slide')

  // One millisecond later the successor has still never been used: the predecessor is recovered
  // (its holder may never have received it), with a new successor that replaces it.
  advance(1)
  const recoveredAt = now()
  const recovered = await service.refresh(first.refreshToken, { ip: '198.51.100.2', userAgent: 'retry-agent' })
  const recoveredJti = refreshTokenOf(recovered.refreshToken).jti
  t.not(recovered.refreshToken, second.refreshToken, 'a new successor, not the one it replaces')
  t.not(recoveredJti, secondJti)
  t.equal(recovered.sessionId, first.sessionId, 'same session')
  t.equal(recovered.refreshTokenExpiresAt, recoveredAt + IDLE * 1000, 'idle expiry slides as on a rotation')
  ;[session] = await record()
  t.equal(session?.tokenHash, storedHashOf(recovered.refreshToken), 'the new successor is current')
  t.equal(session?.previousTokenHash, storedHashOf(first.refreshToken), 'the predecessor stays')
  t.equal(session?.rotatedAt, recoveredAt, 'a new grace window starts')
  t.equal(session?.graceUses, 0)
  t.equal(session?.lastUsedAt, recoveredAt)
  t.equal(session?.ip, '198.51.100.2')
  t.equal(session?.userAgent, 'retry-agent')
  t.same(emitted.at(-1), {
    event: 'refresh', payload: { userId: ALICE.id, sessionId: first.sessionId, grace: false, recovered: true, ip: '198.51.100.2', userAgent: 'retry-agent' }
  })
  t.equal(service.verifyAccessToken(recovered.accessToken).sid, first.sessionId, 'its access token works')
  t.equal(revocations.has(first.sessionId), false)

  // The replaced successor is dead: whoever presents it is a thief.
  advance(1000)
  const before = emitted.length
  await t.rejects(service.refresh(second.refreshToken, { ip: '192.0.2.66', userAgent: 'thief' }), RefreshTokenReusedError)
  t.equal(store.size, 0, 'the whole session is deleted')
  t.same(await record(), [])
  t.equal(revocations.has(first.sessionId), true, 'the session id is on the revocation list')
  t.throws(() => service.verifyAccessToken(recovered.accessToken), SessionRevokedError, 'its access tokens fail at once')
  t.throws(() => service.verifyAccessToken(second.accessToken), SessionRevokedError)
  t.throws(() => service.verifyAccessToken(first.accessToken), { code: 'FST_TOKEN_AUTH_SESSION_REVOKED', statusCode: 401 })
  t.same(emitted.slice(before), [
    { event: 'sessionRevoked', payload: { userId: ALICE.id, sessionId: first.sessionId, reason: 'reuse' } },
    { event: 'reuseDetected', payload: { userId: ALICE.id, sessionId: first.sessionId, ip: '192.0.2.66', userAgent: 'thief' } }
  ])
  await t.rejects(service.refresh(recovered.refreshToken, CLIENT), InvalidRefreshTokenError, 'the current token died with the session')
  await t.rejects(service.refresh(first.refreshToken, CLIENT), InvalidRefreshTokenError, 'and so did the predecessor')
})

t.test('grace answers inside the window do not extend it', async (t) => {
  const { service, advance, emitted } = setup(t, { reuseGraceLimit: 100 })
  const first = await service.issue(ALICE, CLIENT)
  const second = await service.refresh(first.refreshToken, CLIENT)
  advance(GRACE * 1000 - 1)
  const grace = await service.refresh(first.refreshToken, CLIENT)
  t.equal(grace.refreshToken, second.refreshToken, 'inside the window: the same successor')
  advance(2)
  const late = await service.refresh(first.refreshToken, CLIENT)
  t.not(late.refreshToken, second.refreshToken, 'the window starts at the rotation, not at the last grace answer: a recovery, not a grace answer')
  t.match(emitted.at(-1), { event: 'refresh', payload: { grace: false, recovered: true } })
})

t.test('an older generation is theft even inside the grace window', async (t) => {
  const { service, store, revocations, advance } = setup(t)
  const first = await service.issue(ALICE, CLIENT)
  advance(100)
  const second = await service.refresh(first.refreshToken, CLIENT)
  advance(100)
  const third = await service.refresh(second.refreshToken, CLIENT)
  advance(100)
  await t.rejects(service.refresh(first.refreshToken, CLIENT), RefreshTokenReusedError, 'grandparent within 5 s of every rotation')
  t.equal(store.size, 0)
  t.equal(revocations.has(first.sessionId), true)
  t.throws(() => service.verifyAccessToken(third.accessToken), SessionRevokedError)
  await t.rejects(service.refresh(third.refreshToken, CLIENT), InvalidRefreshTokenError)
})

t.test('reuseGrace 0: no grace; the predecessor is recovered a millisecond later, superseded in the same one', async (t) => {
  t.test('one millisecond after the rotation: recovered, and the replaced successor is theft', async (t) => {
    const { service, store, emitted, record, advance, now } = setup(t, { reuseGrace: 0 })
    const first = await service.issue(ALICE, CLIENT)
    const second = await service.refresh(first.refreshToken, CLIENT)
    advance(1)
    const recovered = await service.refresh(first.refreshToken, CLIENT)
    t.not(recovered.refreshToken, second.refreshToken, 'a new successor')
    t.same(emitted.at(-1), { event: 'refresh', payload: { userId: ALICE.id, sessionId: first.sessionId, grace: false, recovered: true, ...CLIENT } })
    const [session] = await record()
    t.equal(session?.tokenHash, storedHashOf(recovered.refreshToken))
    t.equal(session?.rotatedAt, now())
    t.equal(store.size, 1, 'the session lives on')
    advance(1)
    await t.rejects(service.refresh(second.refreshToken, CLIENT), RefreshTokenReusedError, 'the replaced successor is theft')
    t.equal(store.size, 0)
    t.throws(() => service.verifyAccessToken(recovered.accessToken), SessionRevokedError)
  })

  t.test('in the same millisecond as the rotation: SUPERSEDED, nothing changes (no 0 ms grace)', async (t) => {
    const { service, store, emitted, record } = setup(t, { reuseGrace: 0 })
    const first = await service.issue(ALICE, CLIENT)
    const second = await service.refresh(first.refreshToken, CLIENT)
    const before = await record()
    const eventsBefore = emitted.length
    await t.rejects(service.refresh(first.refreshToken, CLIENT), GraceExhaustedError, 'no grace answer and no other successor in that millisecond')
    await t.rejects(service.refresh(first.refreshToken, CLIENT), { code: 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED', statusCode: 401 })
    t.equal(store.size, 1)
    t.same(await record(), before, 'the record is unchanged')
    t.same(emitted.slice(eventsBefore), [], 'no event')
    const third = await service.refresh(second.refreshToken, CLIENT)
    t.equal(third.sessionId, first.sessionId, 'the successor still rotates')
  })
})

t.test('idle expiry', async (t) => {
  const { service, store, revocations, advance, emitted } = setup(t)
  const first = await service.issue(ALICE, CLIENT)
  advance(IDLE * 1000 - 1000)
  const second = await service.refresh(first.refreshToken, CLIENT)
  t.equal(second.sessionId, first.sessionId, 'one second before idle expiry the token rotates')
  advance(IDLE * 1000 - 1000)
  const third = await service.refresh(second.refreshToken, CLIENT)
  t.equal(third.sessionId, first.sessionId, 'each use restarts the idle timer')
  advance(IDLE * 1000)
  const before = emitted.length
  await t.rejects(service.refresh(third.refreshToken, CLIENT), RefreshTokenExpiredError, 'unused for refreshTokenTtl: expired')
  await t.rejects(service.refresh(third.refreshToken, CLIENT), InvalidRefreshTokenError, 'and the expired session is gone')
  t.equal(store.size, 0)
  t.equal(revocations.has(first.sessionId), false, 'expiry is not a revocation')
  t.same(emitted.slice(before), [], 'no event for an expired token')
})

t.test('absolute expiry is never extended by rotation', async (t) => {
  const { service, record, advance, now } = setup(t)
  const issuedAt = now()
  const absolute = issuedAt + MAX_AGE * 1000
  let tokens = await service.issue(ALICE, CLIENT)
  let rotations = 0
  while (now() + 50_000 < absolute) {
    advance(50_000)
    tokens = await service.refresh(tokens.refreshToken, CLIENT)
    rotations++
    const [session] = await record()
    t.equal(session?.absoluteExpiresAt, absolute, 'absoluteExpiresAt never moves')
    t.ok((session?.expiresAt as number) <= absolute, 'expiresAt <= absoluteExpiresAt')
    t.ok(tokens.refreshTokenExpiresAt <= absolute, 'the token expiry never passes the absolute end')
  }
  t.equal(rotations, 5)
  t.equal(tokens.refreshTokenExpiresAt, absolute, 'the last rotation is capped at the absolute end')
  advance(absolute - now() - 1)
  tokens = await service.refresh(tokens.refreshToken, CLIENT)
  t.equal(tokens.refreshTokenExpiresAt, absolute)
  advance(1)
  await t.rejects(service.refresh(tokens.refreshToken, CLIENT), RefreshTokenExpiredError, 'at the absolute end the session expires although it was just used')
  t.same(await record(), [])
})

t.test('revokeSession', async (t) => {
  const { service, revocations, emitted, record } = setup(t)
  const tokens = await service.issue(ALICE, CLIENT)
  t.equal(await service.revokeSession(tokens.sessionId, { userId: 'user-2' }), false, 'someone else\'s session is not ended')
  t.equal((await record()).length, 1)
  t.equal(revocations.has(tokens.sessionId), false)
  t.equal(service.verifyAccessToken(tokens.accessToken).sid, tokens.sessionId)
  t.equal(await service.revokeSession('no-such-session'), false)

  const before = emitted.length
  t.equal(await service.revokeSession(tokens.sessionId, { userId: ALICE.id }), true)
  t.same(await record(), [])
  t.equal(revocations.has(tokens.sessionId), true)
  t.throws(() => service.verifyAccessToken(tokens.accessToken), SessionRevokedError)
  await t.rejects(service.refresh(tokens.refreshToken, CLIENT), InvalidRefreshTokenError)
  t.same(emitted.slice(before), [{ event: 'sessionRevoked', payload: { userId: ALICE.id, sessionId: tokens.sessionId, reason: 'revoked' } }])
  t.equal(await service.revokeSession(tokens.sessionId), false, 'idempotent')
})

t.test('revokeUserSessions ends every session of one user only', async (t) => {
  const { service, revocations, emitted, record } = setup(t)
  const a = await service.issue(ALICE, CLIENT)
  const b = await service.issue(ALICE, CLIENT)
  const bob = await service.issue({ id: 'user-2' }, CLIENT)
  const before = emitted.length
  const ended = await service.revokeUserSessions(ALICE.id, 'logout-all')
  t.same([...ended].sort(), [a.sessionId, b.sessionId].sort())
  t.same(await record(), [])
  t.equal((await record('user-2')).length, 1, 'another user keeps their session')
  t.throws(() => service.verifyAccessToken(a.accessToken), SessionRevokedError)
  t.throws(() => service.verifyAccessToken(b.accessToken), SessionRevokedError)
  t.equal(service.verifyAccessToken(bob.accessToken).sub, 'user-2')
  t.equal(revocations.size, 2)
  t.same(emitted.slice(before), [
    ...ended.map((sessionId) => ({ event: 'sessionRevoked', payload: { userId: ALICE.id, sessionId, reason: 'logout-all' } })),
    { event: 'logoutAll', payload: { userId: ALICE.id, sessionIds: ended } }
  ])
  t.same(await service.revokeUserSessions(ALICE.id), [], 'nothing left to end')
  t.same(await service.revokeUserSessions('nobody'), [])
})

t.test('listSessions: oldest first, ISO dates, no token material', async (t) => {
  const { service, advance, now } = setup(t)
  const firstAt = now()
  const a = await service.issue(ALICE, CLIENT)
  advance(1000)
  const b = await service.issue(ALICE, { ip: null, userAgent: null })
  advance(1000)
  const usedAt = now()
  const a2 = await service.refresh(a.refreshToken, { ip: '198.51.100.9', userAgent: 'ua-2' })
  await service.issue({ id: 'user-2' }, CLIENT)

  const list = await service.listSessions(ALICE.id)
  t.same(list, [
    {
      id: a.sessionId,
      createdAt: new Date(firstAt).toISOString(),
      lastUsedAt: new Date(usedAt).toISOString(),
      expiresAt: new Date(usedAt + IDLE * 1000).toISOString(),
      userAgent: 'ua-2',
      ip: '198.51.100.9'
    },
    {
      id: b.sessionId,
      createdAt: new Date(firstAt + 1000).toISOString(),
      lastUsedAt: new Date(firstAt + 1000).toISOString(),
      expiresAt: new Date(firstAt + 1000 + IDLE * 1000).toISOString(),
      userAgent: null,
      ip: null
    }
  ])
  for (const session of list) {
    t.same(Object.keys(session).sort(), ['createdAt', 'expiresAt', 'id', 'ip', 'lastUsedAt', 'userAgent'])
    t.match(session.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  }
  const text = JSON.stringify(list)
  for (const token of [a.refreshToken, a2.refreshToken, b.refreshToken]) {
    t.notOk(text.includes(refreshTokenOf(token).jti), 'no jti in the list')
    t.notOk(text.includes(storedHashOf(token)), 'no token hash in the list')
  }
  advance(IDLE * 1000 - 1000)
  t.same((await service.listSessions(ALICE.id)).map((s) => s.id), [a.sessionId], 'expired sessions are not listed')
  t.same(await service.listSessions('nobody'), [])
})

t.test('logout', async (t) => {
  const { service, revocations, emitted, store } = setup(t)
  const tokens = await service.issue(ALICE, CLIENT)
  t.equal(await service.logout('garbage'), false, 'garbage ends nothing')
  t.equal(await service.logout(tokens.accessToken), false, 'an access token is not a refresh token')
  t.equal(store.size, 1)
  const before = emitted.length
  t.equal(await service.logout(tokens.refreshToken), true)
  t.equal(store.size, 0)
  t.equal(revocations.has(tokens.sessionId), true)
  t.throws(() => service.verifyAccessToken(tokens.accessToken), SessionRevokedError)
  t.same(emitted.slice(before), [
    { event: 'sessionRevoked', payload: { userId: ALICE.id, sessionId: tokens.sessionId, reason: 'logout' } },
    { event: 'logout', payload: { userId: ALICE.id, sessionId: tokens.sessionId } }
  ])
  t.equal(await service.logout(tokens.refreshToken), false, 'a second logout ends nothing')
})

t.test('sweep removes expired sessions and prunes the revocation list', async (t) => {
  const { service, store, revocations, advance } = setup(t)
  const old = await service.issue(ALICE, CLIENT)
  const revoked = await service.issue(ALICE, CLIENT)
  await service.revokeSession(revoked.sessionId)
  advance(IDLE * 1000 / 2)
  const fresh = await service.issue({ id: 'user-2' }, CLIENT)
  t.equal(await service.sweep(), 0, 'nothing expired yet')
  t.equal(store.size, 2)
  t.equal(revocations.size, 1)

  advance(IDLE * 1000 / 2)
  t.equal(await service.sweep(), 1, 'the idle session is swept')
  t.equal(store.size, 1)
  t.same((await service.listSessions('user-2')).map((s) => s.id), [fresh.sessionId])
  await t.rejects(service.refresh(old.refreshToken, CLIENT), InvalidRefreshTokenError, 'a swept session is missing')
  t.equal(revocations.size, 0, 'revocations older than the access-token lifetime are pruned')
  t.equal(revocations.has(revoked.sessionId), false)
})

t.test('loadUser: new claims reach the access token; a vanished user ends the session', async (t) => {
  let current: AuthUser | null = { id: ALICE.id, claims: { username: 'alice', role: 'admin' } }
  const { service, store, revocations, emitted } = setup(t, { loadUser: async () => current })
  const tokens = await service.issue(ALICE, CLIENT)
  const next = await service.refresh(tokens.refreshToken, CLIENT)
  t.equal(service.verifyAccessToken<any>(next.accessToken).role, 'admin')
  t.same((await store.listUserSessions(ALICE.id, Date.now() + 1))[0]?.claims, { username: 'alice', role: 'admin' })
  current = null
  await t.rejects(service.refresh(next.refreshToken, CLIENT), UserUnavailableError)
  t.equal(store.size, 0)
  t.equal(revocations.has(tokens.sessionId), true)
  t.same(emitted.at(-1), { event: 'sessionRevoked', payload: { userId: ALICE.id, sessionId: tokens.sessionId, reason: 'user-unavailable' } })
})

t.test('a failing store is a coded 503 and nothing is issued or emitted', async (t) => {
  const { service, store, emitted } = setup(t, { storeTimeout: 50 })
  const cause = new Error('connect ECONNREFUSED 127.0.0.1:6379')
  store.createSession = async () => { throw cause }
  const error = await service.issue(ALICE, CLIENT).then(() => null, (e: unknown) => e)
  t.type(error, StoreUnavailableError)
  t.match(error, { code: 'FST_TOKEN_AUTH_STORE_UNAVAILABLE', statusCode: 503 })
  t.equal((error as Error).cause, cause, 'the store error is kept as the cause')
  store.listUserSessions = () => new Promise(() => {})
  await t.rejects(service.listSessions(ALICE.id), StoreUnavailableError, 'a hanging store times out')
  t.same(emitted, [])
})

t.test('an event listener that throws is reported and changes nothing', async (t) => {
  const { service, events, listenerErrors, store } = setup(t)
  const boom = new Error('listener boom')
  events.on('login', () => { throw boom })
  const tokens = await service.issue(ALICE, CLIENT)
  t.equal(tokens.userId, ALICE.id)
  t.equal(store.size, 1)
  t.same(listenerErrors, [boom])
})

t.test('RevocationList', async (t) => {
  t.test('add, has, size, prune', async (t) => {
    const list = new RevocationList(100)
    t.equal(list.size, 0)
    t.equal(list.has('a'), false)
    list.add('a', 0)
    list.add('b', 50)
    t.equal(list.size, 2)
    t.equal(list.has('a'), true)
    t.equal(list.has('b'), true)
    list.prune(99)
    t.equal(list.size, 2, 'nothing is due before its ttl')
    list.prune(100)
    t.equal(list.has('a'), false, 'an entry goes once now reaches added + ttl')
    t.equal(list.has('b'), true)
    t.equal(list.size, 1)
    list.prune(1000)
    t.equal(list.size, 0)
    list.prune(2000)
    t.equal(list.size, 0, 'pruning an empty list is fine')
  })

  t.test('re-adding moves an entry to its new place in expiry order', async (t) => {
    const list = new RevocationList(100)
    list.add('a', 0)
    list.add('b', 10)
    list.add('a', 20)
    t.equal(list.size, 2, 'no duplicate entry')
    list.prune(115)
    t.equal(list.has('b'), false, 'b (due at 110) is pruned although a was added before it')
    t.equal(list.has('a'), true, 'a keeps its later expiry (120)')
    list.prune(119)
    t.equal(list.has('a'), true)
    list.prune(120)
    t.equal(list.has('a'), false)
  })

  t.test('prune stops at the first live entry', async (t) => {
    const list = new RevocationList(100)
    for (let i = 0; i < 10; i++) list.add(`s${i}`, i * 10)
    list.prune(145)
    t.equal(list.size, 5)
    t.same([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => list.has(`s${i}`)), [false, false, false, false, false, true, true, true, true, true])
  })
})

t.test('bindDevice: a bearer session rotates into a token naming the DBSC key; a session bound already never changes key', async (t) => {
  const { service, record } = setup(t, {}, { dpop: true, dbsc: true })
  const deviceKey = 'k'.repeat(43)
  const tokens = await service.issue(ALICE, CLIENT)
  const bound = await service.bindDevice(tokens.refreshToken, CLIENT, deviceKey)
  t.match(bound.refreshToken, new RegExp(`\\.dbsc-${deviceKey}\\.`), 'the successor names the key')
  t.equal(bound.sessionId, tokens.sessionId, 'the same session')
  t.equal((await record())[0]?.tokenHash, service.readRefreshToken(bound.refreshToken)?.hash, 'the session holds the bound token')
  await t.rejects(service.bindDevice(bound.refreshToken, CLIENT, 'o'.repeat(43)), AlreadyBoundError, 'a DBSC-bound session')
  const dpopBound = await service.issue(ALICE, CLIENT, 'j'.repeat(43))
  await t.rejects(service.bindDevice(dpopBound.refreshToken, CLIENT, deviceKey), AlreadyBoundError, 'a DPoP-bound session')
  t.equal((await record()).length, 2, 'nothing else changed')
})
