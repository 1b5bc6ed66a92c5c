import { createHash, randomBytes } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { type AuthUser, MemoryStore, type RefreshEvent, type ReuseDetectedEvent, type SessionRevokedEvent } from '../lib/index.js'
import { createSigner } from 'fast-jwt'
import {
  BOB, BOB_PASSWORD, build, decodePayload, INVALID_TOKEN, login, me, PASSWORD, REFRESH_SECRET, refresh, refreshCookie, refreshTokenOf, sleep, storedHashOf, USER_ID,
  USERNAME
} from './helpers.js'

const REUSED = 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED'
const SUPERSEDED = 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED'
/** The default reuseGrace, in ms. */
const DEFAULT_GRACE_MS = 5000

/** A 200 from /refresh: a new access token and a rotated refresh cookie; returns the new refresh token. */
function assertRotated (t: Test, response: LightMyRequestResponse, previous: string, label = ''): string {
  t.equal(response.statusCode, 200, `${label} 200`)
  const body = response.json()
  t.same(Object.keys(body).sort(), ['accessToken', 'expiresIn', 'tokenType'], `${label} token response shape`)
  t.equal(body.tokenType, 'Bearer')
  t.equal(response.headers['cache-control'], 'no-store', `${label} no-store`)
  const cookie = refreshCookie(response)
  t.ok(cookie, `${label} refresh cookie set`)
  t.not(cookie!.value, previous, `${label} a new refresh token`)
  return cookie!.value
}

/** A 401 from /refresh with the given code. */
function assertRefused (t: Test, response: LightMyRequestResponse, code: string, label = '') {
  t.equal(response.statusCode, 401, `${label} 401`)
  t.equal(response.json().code, code, `${label} ${code}`)
  t.notMatch(response.body, /accessToken|eyJ/, `${label} no token in the body`)
}

/** The response clears the refresh cookie (same name and Path, Max-Age=0). */
function assertCleared (t: Test, response: LightMyRequestResponse, label = '') {
  const cookie = refreshCookie(response)
  t.ok(cookie, `${label} Set-Cookie present`)
  t.equal(cookie?.value, '', `${label} cookie emptied`)
  t.equal(cookie?.maxAge, 0, `${label} Max-Age=0`)
  t.equal(cookie?.path, '/auth', `${label} same Path`)
  t.equal(cookie?.httpOnly, true, `${label} HttpOnly`)
}

/**
 * A hand-driven clock for one test: `Date.now` is frozen at the current time and moves only with
 * `advance`, so "the same millisecond" and "1 ms later" are exact. Install it before `build`: the
 * plugin's session service takes `Date.now` as its clock when it is created, and the JWT checks
 * read it too. Restored at teardown; timers stay real.
 */
function handClock (t: Test) {
  let clock = Date.now()
  const realNow = Date.now
  Date.now = () => clock
  t.teardown(() => { Date.now = realNow })
  return { advance: (ms: number) => { clock += ms } }
}

/**
 * The start of the rotation cases: a hand clock, an app built with `overrides`, its events
 * recorded, and alice logged in (RT1, her first access token and her session id).
 */
async function handClockLogin (t: Test, overrides: Parameters<typeof build>[1] = {}) {
  const clock = handClock(t)
  const app = await build(t, overrides)
  const events = recordEvents(app)
  const { refreshToken: rt1, accessToken: at1 } = await login(app)
  return { clock, app, events, rt1, at1, sid: decodePayload(at1).sid }
}

/** Records the plugin's refresh, reuseDetected and sessionRevoked events. */
function recordEvents (app: FastifyInstance) {
  const refreshes: RefreshEvent[] = []
  const reuse: ReuseDetectedEvent[] = []
  const revoked: SessionRevokedEvent[] = []
  app.tokenAuth.events.on('refresh', (event) => refreshes.push(event))
  app.tokenAuth.events.on('reuseDetected', (event) => reuse.push(event))
  app.tokenAuth.events.on('sessionRevoked', (event) => revoked.push(event))
  return { refreshes, reuse, revoked }
}

/** A `refresh` event payload of alice's session `sid`, from inject's default client. */
function refreshEvent (sid: unknown, kind: 'rotated' | 'grace' | 'recovered', userAgent = 'lightMyRequest'): RefreshEvent {
  return { userId: USER_ID, sessionId: sid as string, grace: kind === 'grace', recovered: kind === 'recovered', ip: '127.0.0.1', userAgent }
}

/** A refresh as a thief sends it (its own User-Agent, for the reuseDetected event). */
function thiefRefresh (app: FastifyInstance, refreshToken: string) {
  return app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken }, headers: { 'user-agent': 'Thief/1.0' } })
}

/**
 * Theft detected: 401 REUSED with the cookie cleared, both events naming the thief, and every
 * token of the session refused afterwards (refresh tokens as unknown, access tokens as revoked).
 */
async function assertTheft (t: Test, app: FastifyInstance, response: LightMyRequestResponse, events: ReturnType<typeof recordEvents>,
  session: { sid: unknown, accessTokens: string[], refreshTokens: string[] }, label: string) {
  assertRefused(t, response, REUSED, label)
  assertCleared(t, response, 'REUSED')
  t.same(events.reuse, [{ userId: USER_ID, sessionId: session.sid, ip: '127.0.0.1', userAgent: 'Thief/1.0' }], 'reuseDetected event')
  t.same(events.revoked, [{ userId: USER_ID, sessionId: session.sid, reason: 'reuse' }], 'sessionRevoked event')
  for (const token of session.refreshTokens) {
    assertRefused(t, await refresh(app, token), 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'a refresh token of the ended session')
  }
  for (const token of session.accessTokens) {
    const meResponse = await me(app, token)
    t.equal(meResponse.statusCode, 401, 'an access token of the ended session is refused at once')
    t.equal(meResponse.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
    t.equal(meResponse.headers['www-authenticate'], INVALID_TOKEN)
  }
}

function refreshBody (app: FastifyInstance, refreshToken: string) {
  return app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken } })
}

t.test('rotation: new access token, new refresh cookie with the same attributes', async (t) => {
  const app = await build(t)
  const first = await login(app)
  const response = await refresh(app, first.refreshToken)
  const rt2 = assertRotated(t, response, first.refreshToken)
  const body = response.json()
  t.not(body.accessToken, first.accessToken, 'a new access token')
  t.equal(body.expiresIn, 900)
  t.equal(response.headers.pragma, 'no-cache')

  const before = refreshCookie(first.response)!
  const after = refreshCookie(response)!
  for (const attribute of ['httpOnly', 'secure', 'sameSite', 'path', 'domain'] as const) {
    t.equal(after[attribute], before[attribute], `same ${attribute}`)
  }
  t.ok(Math.abs((after.maxAge as number) - (before.maxAge as number)) <= 2, 'same Max-Age (idle lifetime restarts)')

  // Same session, same user.
  const oldClaims = decodePayload(first.accessToken)
  const newClaims = decodePayload(body.accessToken)
  t.equal(newClaims.sub, USER_ID)
  t.equal(newClaims.sid, oldClaims.sid, 'same session')
  t.equal(newClaims.username, USERNAME, 'login claims are kept')
  t.not(newClaims.jti, oldClaims.jti)
  t.equal(refreshTokenOf(rt2).sid, oldClaims.sid)

  const meResponse = await me(app, body.accessToken)
  t.equal(meResponse.statusCode, 200)
  t.equal(meResponse.json().sid, oldClaims.sid)
  t.equal((await me(app, first.accessToken)).statusCode, 200, 'the earlier access token lives until it expires')

  // The new refresh token rotates in turn.
  const rt3 = assertRotated(t, await refresh(app, rt2), rt2, 'second rotation')
  t.not(rt3, first.refreshToken)
})

t.test('a refresh token of the earlier JWT format still rotates, into the opaque format (sessions survive the upgrade)', async (t) => {
  const store = new MemoryStore()
  const app = await build(t, { store })
  const { refreshToken, accessToken } = await login(app)
  const { sub, sid } = refreshTokenOf(refreshToken)
  const iat = Math.floor(Date.now() / 1000)
  // What versions up to 0.1 issued and stored for this session: a JWT (typ rt+jwt, HS256 with the
  // refresh secret) with a 256-bit id, and the whole SHA-256 of that id.
  const jti = randomBytes(32).toString('base64url')
  const [stored] = await store.listUserSessions(sub, Date.now())
  await store.createSession({ ...stored!, tokenHash: createHash('sha256').update(jti).digest('base64url') })
  const legacySigner = createSigner({ key: REFRESH_SECRET, header: { alg: 'HS256', typ: 'rt+jwt' } })
  const legacy = legacySigner({ sub, sid, jti, iat, exp: iat + 600 })
  const response = await refresh(app, legacy)
  const next = assertRotated(t, response, legacy)
  t.same(refreshTokenOf(next).sid, sid, 'the same session, now in the opaque format')
  t.equal(decodePayload(response.json().accessToken).sid, decodePayload(accessToken).sid)
  const [rotated] = await store.listUserSessions(sub, Date.now())
  t.equal(rotated?.tokenHash, storedHashOf(next), 'the successor is stored as every new token is: 128 bits')
  t.equal(rotated?.tokenHash.length, 22)
  t.equal(rotated?.previousTokenHash, createHash('sha256').update(jti).digest('base64url'), 'the legacy hash is the predecessor')
  assertRotated(t, await refresh(app, legacy), legacy, 'the legacy token inside the grace window gets the same successor')
  assertRotated(t, await refresh(app, next), next, 'and the successor rotates on')
  // A character inside the signature, not its last (whose low bits are padding: base64url can
  // spell the same signature several ways, so a change there may change nothing).
  const at = legacy.length - 10
  const tampered = `${legacy.slice(0, at)}${legacy[at] === 'A' ? 'B' : 'A'}${legacy.slice(at + 1)}`
  assertRefused(t, await refresh(app, tampered), 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'a legacy token still needs its signature')
  const expired = legacySigner({ sub, sid, jti, iat: iat - 20, exp: iat - 10 })
  assertRefused(t, await refresh(app, expired), 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED', 'and is refused once its exp has passed')
})

t.test('missing, empty or garbage refresh tokens', async (t) => {
  const app = await build(t)
  const missing = await app.inject({ method: 'POST', url: '/auth/refresh' })
  assertRefused(t, missing, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', 'no cookie')
  t.equal(missing.headers['cache-control'], 'no-store')

  const empty = await refresh(app, '')
  assertRefused(t, empty, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', 'empty cookie')

  const { accessToken, refreshToken } = await login(app)
  const { sub, sid, jti } = refreshTokenOf(refreshToken)
  const user = Buffer.from(sub).toString('base64url')
  const claims = Buffer.from(JSON.stringify({ sub, sid, jti, iat: 1, exp: 2e9 })).toString('base64url')
  const garbage: Array<[string, string]> = [
    ['garbage', 'not-a-token'],
    ['three junk segments', 'a.b.c'],
    ['bad tag', `${refreshToken.slice(0, -4)}AAAA`],
    ['tag one character short', refreshToken.slice(0, -1)],
    ['another user', `${sid}.${Buffer.from('user-2').toString('base64url')}.${refreshToken.slice(-44)}`],
    // Another first character, whatever the random id starts with.
    ['another session id', `${sid.startsWith('x') ? 'y' : 'x'}${sid.slice(1)}.${user}.${refreshToken.slice(-44)}`],
    ['non-ASCII tag', `${refreshToken.slice(0, -1)}\u0141`],
    ['access token as refresh token', accessToken],
    ['alg none JWT', `${Buffer.from('{"alg":"none","typ":"rt+jwt"}').toString('base64url')}.${claims}.`],
    ['JWT of the earlier format, forged signature', `${Buffer.from('{"alg":"HS256","typ":"rt+jwt"}').toString('base64url')}.${claims}.${'A'.repeat(43)}`],
    ['oversize', 'x'.repeat(9000)]
  ]
  for (const [label, token] of garbage) {
    const response = await refresh(app, token)
    assertRefused(t, response, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', label)
    assertCleared(t, response, label)
  }
  // None of that touched the real session.
  assertRotated(t, await refresh(app, refreshToken), refreshToken, 'the real token still works')
})

t.test('grace: the predecessor right after rotation gets the same successor', async (t) => {
  const app = await build(t)
  const { refreshToken: rt1 } = await login(app)
  const first = await refresh(app, rt1)
  const rt2 = assertRotated(t, first, rt1, 'rotation')

  const again = await refresh(app, rt1)
  t.equal(again.statusCode, 200, 'predecessor inside the grace window: 200')
  const replayed = refreshCookie(again)!
  t.equal(replayed.value, rt2, 'byte-identical successor token')
  const original = refreshCookie(first)!
  for (const attribute of ['httpOnly', 'secure', 'sameSite', 'path'] as const) {
    t.equal(replayed[attribute], original[attribute], `same ${attribute}`)
  }
  t.ok(Math.abs((replayed.maxAge as number) - (original.maxAge as number)) <= 1, 'same Max-Age')
  t.equal((await me(app, again.json().accessToken)).statusCode, 200, 'the grace access token works')

  // The session still works: the successor rotates normally.
  const rt3 = assertRotated(t, await refresh(app, rt2), rt2, 'successor rotates')
  assertRotated(t, await refresh(app, rt3), rt3, 'and again')
})

t.test('after reuseGraceLimit grace answers: 401 SUPERSEDED, session alive, cookie kept', async (t) => {
  const app = await build(t, { reuseGraceLimit: 2 })
  const revoked: SessionRevokedEvent[] = []
  app.tokenAuth.events.on('sessionRevoked', (event) => revoked.push(event))
  const { refreshToken: rt1 } = await login(app)
  const rt2 = assertRotated(t, await refresh(app, rt1), rt1)

  for (let i = 1; i <= 2; i++) {
    const grace = await refresh(app, rt1)
    t.equal(grace.statusCode, 200, `grace answer ${i}: 200`)
    t.equal(refreshCookie(grace)!.value, rt2, `grace answer ${i}: same successor`)
  }
  const superseded = await refresh(app, rt1)
  assertRefused(t, superseded, 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED', 'over the limit')
  t.equal(superseded.headers['set-cookie'], undefined, 'no cookie clearing on SUPERSEDED')
  t.equal(revoked.length, 0, 'no session revoked')

  const current = await refresh(app, rt2)
  assertRotated(t, current, rt2, 'the current token still refreshes')
  t.equal((await me(app, current.json().accessToken)).statusCode, 200)
})

t.test('reuseGraceLimit: 0 allows no grace answer at all', async (t) => {
  const app = await build(t, { reuseGraceLimit: 0 })
  const { refreshToken: rt1 } = await login(app)
  const rt2 = assertRotated(t, await refresh(app, rt1), rt1)
  const superseded = await refresh(app, rt1)
  assertRefused(t, superseded, 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED')
  t.equal(superseded.headers['set-cookie'], undefined)
  assertRotated(t, await refresh(app, rt2), rt2, 'session alive')
})

t.test('a lost response with the default grace: a retry after the window is recovered with a new successor; the one it replaced is then theft', async (t) => {
  const { clock, app, events, rt1, at1, sid } = await handClockLogin(t)
  const lost = await refresh(app, rt1)
  const rt2 = assertRotated(t, lost, rt1, 'rotation (its answer is lost)')

  // The last millisecond of the window (inclusive): a grace answer, the same successor.
  clock.advance(DEFAULT_GRACE_MS)
  const grace = await refresh(app, rt1)
  t.equal(grace.statusCode, 200, 'a retry at the end of the window: 200')
  t.equal(refreshCookie(grace)!.value, rt2, 'inside the window: the same successor')

  // That answer is lost too. One millisecond later the successor has still never been used: recovered.
  clock.advance(1)
  const retry = await refresh(app, rt1)
  const rt2b = assertRotated(t, retry, rt1, 'a retry after the window')
  t.not(rt2b, rt2, 'a new successor, not the one it replaces')
  t.same(events.refreshes, [refreshEvent(sid, 'rotated'), refreshEvent(sid, 'grace'), refreshEvent(sid, 'recovered')], 'refresh events: rotated, grace, recovered')
  t.same(events.revoked, [], 'the session lives on')
  t.equal((await me(app, retry.json().accessToken)).statusCode, 200, 'the recovered access token works')

  // The replaced successor is dead: whoever presents it later is a thief, and the session ends.
  clock.advance(1000)
  const stolen = await thiefRefresh(app, rt2)
  await assertTheft(t, app, stolen, events, {
    sid, accessTokens: [at1, lost.json().accessToken, grace.json().accessToken, retry.json().accessToken], refreshTokens: [rt2b, rt1]
  }, 'the replaced successor')
})

t.test('reuseGrace 0, a lost response: a retry 1 ms later is recovered with a new successor; the lost one is then theft', async (t) => {
  const { clock, app, events, rt1, at1, sid } = await handClockLogin(t, { reuseGrace: 0 })
  const lost = await refresh(app, rt1)
  const rt2 = assertRotated(t, lost, rt1, 'rotation (its answer is lost)')

  clock.advance(1)
  const retry = await refresh(app, rt1)
  const rt2b = assertRotated(t, retry, rt1, 'a retry 1 ms later')
  t.not(rt2b, rt2, 'a new successor, not the lost one')
  t.same(events.refreshes, [refreshEvent(sid, 'rotated'), refreshEvent(sid, 'recovered')], 'refresh events: rotated, then recovered')
  t.same(events.revoked, [], 'the session lives on')
  t.equal((await me(app, retry.json().accessToken)).statusCode, 200, 'the recovered access token works')

  clock.advance(1)
  const stolen = await thiefRefresh(app, rt2)
  await assertTheft(t, app, stolen, events, {
    sid, accessTokens: [at1, lost.json().accessToken, retry.json().accessToken], refreshTokens: [rt2b, rt1]
  }, 'the lost successor')
})

t.test('two generations back is theft after the grace window too, where an unused successor would be recovered (RT1 -> RT2 -> RT3, then RT1)', async (t) => {
  const { clock, app, events, rt1, at1, sid } = await handClockLogin(t)
  const second = await refresh(app, rt1)
  const rt2 = assertRotated(t, second, rt1)
  clock.advance(1000)
  const third = await refresh(app, rt2)
  const rt3 = assertRotated(t, third, rt2)
  clock.advance(DEFAULT_GRACE_MS + 1)

  const stolen = await thiefRefresh(app, rt1)
  await assertTheft(t, app, stolen, events, {
    sid, accessTokens: [at1, second.json().accessToken, third.json().accessToken], refreshTokens: [rt3, rt2]
  }, 'RT1 after RT3, past the window')
})

t.test('an older generation inside the window is theft (RT1 -> RT2 -> RT3, then RT1)', async (t) => {
  const app = await build(t)
  const reuse: ReuseDetectedEvent[] = []
  app.tokenAuth.events.on('reuseDetected', (event) => reuse.push(event))
  const { refreshToken: rt1 } = await login(app)
  const rt2 = assertRotated(t, await refresh(app, rt1), rt1)
  const third = await refresh(app, rt2)
  const rt3 = assertRotated(t, third, rt2)

  const reused = await refresh(app, rt1)
  assertRefused(t, reused, 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED', 'RT1 after RT3')
  assertCleared(t, reused)
  t.equal(reuse.length, 1)

  t.equal((await refresh(app, rt3)).statusCode, 401, 'RT3 refused: session revoked')
  t.equal((await refresh(app, rt2)).statusCode, 401, 'RT2 refused')
  const meResponse = await me(app, third.json().accessToken)
  t.equal(meResponse.statusCode, 401)
  t.equal(meResponse.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
})

t.test('theft order: the attacker spends RT1 first; the victim\'s later RT1 is recovered, and the attacker\'s next refresh ends the session', async (t) => {
  const { clock, app, events, rt1, at1, sid } = await handClockLogin(t, { reuseGrace: 0 })
  const attacker = await thiefRefresh(app, rt1)
  const attackerRt2 = assertRotated(t, attacker, rt1, 'attacker')

  // The victim cannot tell a theft from a lost response: it is answered, with a successor of its own.
  clock.advance(1)
  const victim = await refresh(app, rt1)
  const victimRt2 = assertRotated(t, victim, rt1, 'victim')
  t.not(victimRt2, attackerRt2, 'the victim gets a successor of its own')
  t.same(events.refreshes, [refreshEvent(sid, 'rotated', 'Thief/1.0'), refreshEvent(sid, 'recovered')], 'rotated for the attacker, recovered for the victim')
  t.same(events.revoked, [])

  // The attacker's RT2 was replaced: its next use is theft and ends the session, the victim's tokens with it.
  clock.advance(1)
  const attackerAgain = await thiefRefresh(app, attackerRt2)
  await assertTheft(t, app, attackerAgain, events, {
    sid, accessTokens: [attacker.json().accessToken, victim.json().accessToken, at1], refreshTokens: [victimRt2]
  }, "the attacker's RT2")
})

t.test('reuseGrace: 0 answers no grace, even in the same millisecond: the second of two refreshes is SUPERSEDED, the session lives on', async (t) => {
  // Two refreshes of one token started together may share `now`. With no grace window the second
  // must not get the successor again (no 0 ms "grace"), nor a new one (no other successor can be
  // minted in that millisecond): 401 SUPERSEDED, and nothing changes.
  handClock(t)
  const app = await build(t, { reuseGrace: 0 })
  const events = recordEvents(app)
  for (let round = 0; round < 5; round++) {
    const { refreshToken } = await login(app, 'bob')
    const responses = await Promise.all([refresh(app, refreshToken), refresh(app, refreshToken)])
    t.same(responses.map((r) => r.statusCode).sort(), [200, 401], `round ${round}: one 200, one 401`)
    const refused = responses.find((r) => r.statusCode === 401)!
    t.equal(refused.json().code, SUPERSEDED, `round ${round}: SUPERSEDED`)
    t.equal(refused.headers['set-cookie'], undefined, `round ${round}: the cookie is left alone`)
    const successor = refreshCookie(responses.find((r) => r.statusCode === 200)!)!.value
    assertRotated(t, await refresh(app, successor), successor, `round ${round}: the one successor rotates`)
  }
  t.same(events.refreshes.map((event) => [event.grace, event.recovered]), Array.from({ length: 10 }, () => [false, false]), 'rotations only: no grace answer, no recovery')
  t.same(events.revoked, [], 'no session ended')
})

t.test('50 concurrent refreshes of one token with reuseGrace: 0: one rotation, recoveries or SUPERSEDED, and one live successor', async (t) => {
  // Each refresh that reaches the store at a later millisecond than the last answer is recovered
  // (a new successor replaces the previous one); one in the same millisecond is SUPERSEDED.
  const store = new MemoryStore()
  const app = await build(t, { reuseGrace: 0, store })
  const events = recordEvents(app)
  const { refreshToken } = await login(app)
  const responses = await Promise.all(Array.from({ length: 50 }, () => refresh(app, refreshToken)))
  const statuses = responses.map((r) => r.statusCode)
  t.equal(statuses.filter((s) => s >= 500).length, 0, 'no 5xx')
  const ok = responses.filter((r) => r.statusCode === 200)
  const refused = responses.filter((r) => r.statusCode !== 200)
  t.ok(ok.length >= 1, `at least one 200 (got ${ok.length})`)
  for (const response of refused) {
    t.equal(response.statusCode, 401)
    t.equal(response.json().code, SUPERSEDED)
    t.equal(response.headers['set-cookie'], undefined, 'SUPERSEDED leaves the cookie alone')
  }
  const kinds = events.refreshes.map((event) => event.grace ? 'grace' : event.recovered ? 'recovered' : 'rotated')
  t.equal(kinds.filter((kind) => kind === 'rotated').length, 1, 'exactly one rotation')
  t.equal(kinds.filter((kind) => kind === 'recovered').length, ok.length - 1, 'every other 200 is a recovery')
  t.equal(kinds.length, ok.length, 'no grace answer')
  t.same(events.reuse, [], 'no reuse detected')
  t.same(events.revoked, [], 'the session survives')

  // Every 200 carries a successor of its own; the store accepts exactly one of them, the newest
  // (each recovery replaced the one before), with the presented token as its predecessor.
  const successors = ok.map((r) => refreshCookie(r)!.value)
  t.equal(new Set(successors).size, ok.length, 'no two 200s share a successor')
  const [session, ...others] = await store.listUserSessions(USER_ID, Date.now())
  t.equal(others.length, 0)
  const hashOf = (token: string) => storedHashOf(token)
  const live = successors.filter((token) => hashOf(token) === session?.tokenHash)
  t.equal(live.length, 1, 'exactly one successor is live')
  t.equal(session?.previousTokenHash, hashOf(refreshToken), 'the presented token is its predecessor')
  const [current] = live as [string]
  const rt3 = assertRotated(t, await refresh(app, current), current, 'the live successor rotates')
  // Any other successor was replaced by a recovery: presenting it is theft.
  const dead = successors.find((token) => token !== current)
  if (dead !== undefined) {
    assertRefused(t, await refresh(app, dead), REUSED, 'a replaced successor')
    assertRefused(t, await refresh(app, rt3), 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'and the session ended')
  }
})

t.test('50 concurrent refreshes with the default grace: no 5xx, one successor', async (t) => {
  const app = await build(t)
  const { refreshToken } = await login(app)
  const responses = await Promise.all(Array.from({ length: 50 }, () => refresh(app, refreshToken)))
  const statuses = responses.map((r) => r.statusCode)
  t.equal(statuses.filter((s) => s >= 500).length, 0, 'no 5xx')
  const ok = responses.filter((r) => r.statusCode === 200)
  t.ok(ok.length >= 1, 'at least one 200')
  t.ok(ok.length <= 6, `at most 1 rotation + reuseGraceLimit (5) grace answers (got ${ok.length})`)
  const successors = new Set(ok.map((r) => refreshCookie(r)!.value))
  t.equal(successors.size, 1, 'every 200 carries the same successor cookie')
  for (const response of responses.filter((r) => r.statusCode !== 200)) {
    t.equal(response.statusCode, 401)
    t.equal(response.json().code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED')
    t.equal(response.headers['set-cookie'], undefined, 'SUPERSEDED leaves the cookie alone')
  }
  const [successor] = successors
  assertRotated(t, await refresh(app, successor as string), successor as string, 'the one successor chain continues')
})

t.test('refresh events: grace and recovered say how the token presented was answered', async (t) => {
  const clock = handClock(t)
  const app = await build(t)
  const events: RefreshEvent[] = []
  app.tokenAuth.events.on('refresh', (event) => events.push(event))
  const { refreshToken: rt1, accessToken } = await login(app)
  const sid = decodePayload(accessToken).sid
  const headers = { 'user-agent': 'RefreshTest/1.0' }
  const rotated = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: rt1 }, headers })
  t.equal(rotated.statusCode, 200)
  const grace = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: rt1 }, headers })
  t.equal(grace.statusCode, 200)
  clock.advance(DEFAULT_GRACE_MS + 1)
  const recovered = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: rt1 }, headers })
  t.equal(recovered.statusCode, 200)
  t.same(events, [
    refreshEvent(sid, 'rotated', 'RefreshTest/1.0'),
    refreshEvent(sid, 'grace', 'RefreshTest/1.0'),
    refreshEvent(sid, 'recovered', 'RefreshTest/1.0')
  ])
  t.same(events[0], { userId: USER_ID, sessionId: sid, grace: false, recovered: false, ip: '127.0.0.1', userAgent: 'RefreshTest/1.0' }, 'the payload, spelled out')
  const serialized = JSON.stringify(events)
  t.notOk(serialized.includes('eyJ'), 'no token in events')
  t.notOk(serialized.includes(rt1))
})

t.test('idle expiry: an unused refresh token expires after refreshTokenTtl', async (t) => {
  const app = await build(t, { refreshTokenTtl: 1, sessionMaxAge: 3 })
  const { refreshToken, response } = await login(app)
  t.ok((refreshCookie(response)!.maxAge as number) <= 1, 'Max-Age is the idle lifetime')
  await sleep(1200)
  const expired = await refresh(app, refreshToken)
  assertRefused(t, expired, 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED')
  assertCleared(t, expired, 'EXPIRED')
})

t.test('absolute lifetime: refreshing never extends a session past sessionMaxAge', async (t) => {
  const app = await build(t, { refreshTokenTtl: 2, sessionMaxAge: 3 })
  // Start just after a second boundary, so the whole-second `exp` of the tokens matches the session.
  await sleep(1000 - (Date.now() % 1000) + 20)
  const loginStart = Date.now()
  const first = await login(app)
  const loginEnd = Date.now()
  const absoluteEnd = loginEnd + 3000
  let current = first.refreshToken
  t.ok((refreshCookie(first.response)!.maxAge as number) <= 2, 'login Max-Age is at most the idle lifetime')

  for (let step = 1; step <= 2; step++) {
    await sleep(loginStart + step * 1000 - Date.now())
    const requestStart = Date.now()
    const response = await refresh(app, current)
    const next = assertRotated(t, response, current, `refresh at ~${step} s`)
    const maxAge = refreshCookie(response)!.maxAge as number
    t.ok(maxAge * 1000 <= absoluteEnd - requestStart, `step ${step}: Max-Age ${maxAge} never exceeds the remaining absolute lifetime (${absoluteEnd - requestStart} ms)`)
    t.ok(maxAge <= 2, `step ${step}: Max-Age never exceeds the idle lifetime`)
    current = next
  }

  await sleep(loginEnd + 3200 - Date.now())
  const refused = await refresh(app, current)
  assertRefused(t, refused, 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED', 'after sessionMaxAge')
  assertCleared(t, refused)
})

t.test("refreshTokenTransport 'body'", async (t) => {
  const app = await build(t, { refreshTokenTransport: 'body' })
  const loggedIn = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.equal(loggedIn.statusCode, 200)
  const rt1 = loggedIn.json().refreshToken as string

  const cookieOnly = await refresh(app, rt1)
  assertRefused(t, cookieOnly, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', 'a cookie is ignored')
  t.equal(cookieOnly.headers['set-cookie'], undefined, 'no Set-Cookie')

  const response = await refreshBody(app, rt1)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['set-cookie'], undefined, 'no Set-Cookie')
  const body = response.json()
  t.same(Object.keys(body).sort(), ['accessToken', 'expiresIn', 'refreshToken', 'tokenType'])
  t.type(body.refreshToken, 'string')
  t.not(body.refreshToken, rt1, 'rotated')
  t.equal(response.headers['cache-control'], 'no-store')
  t.equal((await me(app, body.accessToken)).statusCode, 200)

  const next = await refreshBody(app, body.refreshToken)
  t.equal(next.statusCode, 200, 'the new body token works')

  const garbage = await refreshBody(app, 'garbage')
  assertRefused(t, garbage, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'garbage in the body')
  t.equal(garbage.headers['set-cookie'], undefined, 'no cookie clearing in body mode')

  const noBody = await app.inject({ method: 'POST', url: '/auth/refresh' })
  assertRefused(t, noBody, 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', 'no body')
  for (const payload of [{ refreshToken: '' }, { refreshToken: 42 }, { refreshToken: body.refreshToken, extra: 1 }]) {
    const invalid = await app.inject({ method: 'POST', url: '/auth/refresh', payload })
    t.equal(invalid.statusCode, 400, `${JSON.stringify(payload).slice(0, 40)}: 400`)
    t.equal(invalid.json().code, 'FST_ERR_VALIDATION')
  }
})

t.test("'both': a cookie AND a body token is ambiguous, and neither is rotated", async (t) => {
  const app = await build(t, { refreshTokenTransport: 'both', reuseGrace: 0 })
  const events: RefreshEvent[] = []
  app.tokenAuth.events.on('refresh', (event) => events.push(event))
  const cookieLogin = await login(app)
  const bodyLogin = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: BOB, password: BOB_PASSWORD, refreshTokenTransport: 'body' } })
  t.equal(bodyLogin.statusCode, 200)
  const bodyToken = bodyLogin.json().refreshToken as string

  const ambiguous = await app.inject({
    method: 'POST', url: '/auth/refresh', cookies: { refresh_token: cookieLogin.refreshToken }, payload: { refreshToken: bodyToken }
  })
  t.equal(ambiguous.statusCode, 400)
  t.equal(ambiguous.json().code, 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN')
  t.equal(ambiguous.headers['set-cookie'], undefined, 'no Set-Cookie')
  t.notMatch(ambiguous.body, /eyJ/)

  t.same(events, [], 'nothing was refreshed')

  // Both are still current: each is rotated now, neither recovered (as a rotated one would be).
  const viaCookie = await refresh(app, cookieLogin.refreshToken)
  assertRotated(t, viaCookie, cookieLogin.refreshToken, 'the cookie token was not rotated')
  const viaBody = await refreshBody(app, bodyToken)
  t.equal(viaBody.statusCode, 200, 'the body token was not rotated')
  t.equal(viaBody.headers['set-cookie'], undefined, 'a body refresh answers in the body')
  t.type(viaBody.json().refreshToken, 'string')
  t.equal(decodePayload(viaBody.json().accessToken).sub, 'user-2')
  t.same(events.map((event) => [event.userId, event.grace, event.recovered]), [[USER_ID, false, false], ['user-2', false, false]], 'two rotations')

  // An empty cookie next to a body token is not ambiguous.
  const emptyCookie = await app.inject({
    method: 'POST', url: '/auth/refresh', cookies: { refresh_token: '' }, payload: { refreshToken: viaBody.json().refreshToken }
  })
  t.equal(emptyCookie.statusCode, 200)
})

t.test('method, media type and cross-site checks', async (t) => {
  const app = await build(t, { allowedOrigins: ['https://app.example.com'] })
  const { refreshToken } = await login(app)

  const get = await app.inject({ method: 'GET', url: '/auth/refresh', cookies: { refresh_token: refreshToken } })
  t.equal(get.statusCode, 404, 'GET /auth/refresh: 404')
  t.equal(get.headers['set-cookie'], undefined)

  const textPlain = await app.inject({
    method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken }, headers: { 'content-type': 'text/plain' }, payload: '{}'
  })
  t.equal(textPlain.statusCode, 415, 'text/plain: 415')
  t.equal(textPlain.json().code, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
  t.equal(textPlain.headers['set-cookie'], undefined)

  const form = await app.inject({
    method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken }, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'a=b'
  })
  t.equal(form.statusCode, 415, 'form-urlencoded: 415')
  t.equal(form.headers['set-cookie'], undefined)

  for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'null' }]) {
    const response = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken }, headers })
    t.equal(response.statusCode, 403, `${JSON.stringify(headers)}: 403`)
    t.equal(response.json().code, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST')
    t.equal(response.headers['set-cookie'], undefined, 'no Set-Cookie')
  }

  // None of the refused requests spent the token.
  const own = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken }, headers: { origin: 'http://localhost:80' } })
  const rt2 = assertRotated(t, own, refreshToken, 'own origin')
  const allowed = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: rt2 }, headers: { origin: 'https://app.example.com' } })
  assertRotated(t, allowed, rt2, 'allow-listed origin')
})

t.test('loadUser returning null ends the session: 401 USER_UNAVAILABLE', async (t) => {
  let enabled = true
  const app = await build(t, {
    loadUser: async (userId): Promise<AuthUser | null> => enabled ? { id: userId, claims: { username: USERNAME, role: 'user' } } : null
  })
  const revoked: SessionRevokedEvent[] = []
  app.tokenAuth.events.on('sessionRevoked', (event) => revoked.push(event))
  const { refreshToken, accessToken } = await login(app)
  const sid = decodePayload(accessToken).sid

  enabled = false
  const refused = await refresh(app, refreshToken)
  assertRefused(t, refused, 'FST_TOKEN_AUTH_USER_UNAVAILABLE')
  assertCleared(t, refused)
  t.same(revoked, [{ userId: USER_ID, sessionId: sid, reason: 'user-unavailable' }])

  const meResponse = await me(app, accessToken)
  t.equal(meResponse.statusCode, 401)
  t.equal(meResponse.json().code, 'FST_TOKEN_AUTH_SESSION_REVOKED', 'its access token is refused at once')

  enabled = true
  const after = await refresh(app, refreshToken)
  assertRefused(t, after, 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'the session is gone even once the user is back')
})

t.test('loadUser returning new claims: the new access token carries them', async (t) => {
  const calls: string[] = []
  let role = 'admin' // alice's role at login (test/helpers.ts DEMO_USERS)
  const app = await build(t, {
    loadUser: async (userId) => {
      calls.push(userId)
      return { id: userId, claims: { username: USERNAME, role, plan: 'pro' } }
    }
  })
  const { refreshToken, accessToken } = await login(app)
  t.equal(decodePayload(accessToken).role, 'admin')
  t.same(calls, [], 'not called at login')

  role = 'user' // demoted
  const response = await refresh(app, refreshToken)
  const rt2 = assertRotated(t, response, refreshToken)
  t.same(calls, [USER_ID], 'called with the user id on refresh')
  const claims = decodePayload(response.json().accessToken)
  t.equal(claims.role, 'user')
  t.equal(claims.plan, 'pro')
  t.equal(claims.sub, USER_ID)

  // The new claims stick to the session: a grace answer carries them too.
  const grace = await refresh(app, refreshToken)
  t.equal(grace.statusCode, 200)
  t.equal(refreshCookie(grace)!.value, rt2)
  t.equal(decodePayload(grace.json().accessToken).role, 'user')
})
