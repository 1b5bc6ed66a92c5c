// Checklist group D: refresh-token rotation, reuse (theft) detection, grace, lifetimes, binding
// (RFC 9700 §4.14.2, OAuth 2.1 §4.3.1, ASVS v5 10.4.5/10.4.8, FAPI 2.0 SP). Real HTTP against
// the example app.
//
// Where the checklist suggests RFC 6749's 400 `invalid_grant`, this plugin answers with its
// documented 401 and a specific FST_TOKEN_AUTH_* code (README "Errors"): the route is not an
// OAuth token endpoint, and a 401 is what its clients act on (log in again).
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { RefreshTokens } from '../../lib/refresh-tokens.js'
import { refreshTokenOf } from '../helpers.js'
import {
  alive, ALICE_ID, BOB, BOB_ID, clearsCookie, COOKIE, cookieOf, decodePayload, eventsSince, forge, get, login, noIncidents,
  REFRESH_SECRET, refresh, refreshRequest, refused, send, sleep, startExample
} from './harness.js'
import { randomId } from './forge.js'

const GRACE = 1
const example = await startExample(t, { ACCESS_TOKEN_TTL: '30', REFRESH_REUSE_GRACE: String(GRACE) })
/** Just past the grace window of a rotation made now. */
const pastGrace = () => sleep(GRACE * 1000 + 150)

const REUSED = 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED'
const INVALID = 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'

t.test('D1 a refresh rotates: new access token, a different refresh token of >= 128 random bits', async (t) => {
  const first = await login(example)
  const second = await refresh(example, first.refreshToken)
  t.not(second.refreshToken, first.refreshToken, 'RT2 != RT1')
  t.not(second.accessToken, first.accessToken, 'a new access token')
  t.equal(second.reply.json.tokenType, 'Bearer')
  const jtis = new Set<string>()
  for (const token of [first.refreshToken, second.refreshToken, (await login(example)).refreshToken]) {
    const { jti } = refreshTokenOf(token)
    t.ok(Buffer.from(jti, 'base64url').length * 8 >= 128, `the refresh token id carries ${Buffer.from(jti, 'base64url').length * 8} bits`)
    jtis.add(jti)
  }
  t.equal(jtis.size, 3, 'no id repeats')
  t.equal((await get(example, '/me', second.accessToken)).status, 200)
})

t.test('D2 reuse after the grace window of a token whose successor was used: 401 REUSED, then the whole session is dead (RT3 and AT3 too)', async (t) => {
  const first = await login(example)
  const second = await refresh(example, first.refreshToken)
  const third = await refresh(example, second.refreshToken) // the victim used the successor
  await pastGrace()
  const mark = example.events.length
  const reuse = await refreshRequest(example, first.refreshToken)
  await refused(t, example, reuse, { status: 401, code: REUSED, sent: [first.refreshToken, second.refreshToken, third.refreshToken] })
  t.ok(clearsCookie(reuse), 'the dead cookie is cleared')
  t.same(eventsSince(example, mark), ['sessionRevoked', 'reuseDetected'], 'the session is revoked and reuse reported')

  await refused(t, example, await refreshRequest(example, third.refreshToken), { status: 401, code: INVALID, sent: [third.refreshToken] })
  await refused(t, example, await refreshRequest(example, second.refreshToken), { status: 401, code: INVALID, sent: [second.refreshToken] })
  const access = await get(example, '/me', third.accessToken)
  await refused(t, example, access, { status: 401, code: 'FST_TOKEN_AUTH_SESSION_REVOKED', challenge: 'Bearer error="invalid_token"' })
})

t.test('D3 theft order: the attacker rotates first, the victim\'s later refresh is recovered; the attacker\'s next refresh ends the session', async (t) => {
  const victim = await login(example)
  const attacker = await refresh(example, victim.refreshToken) // RT2 and an access token, the attacker's
  await pastGrace()
  // The victim's RT1 looks like a lost response (RT2 was never used): answered with an RT2' of its own.
  let mark = example.events.length
  const recovered = await refresh(example, victim.refreshToken)
  t.not(recovered.refreshToken, attacker.refreshToken, 'the victim gets a successor of its own')
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace, event.payload.recovered]), [['refresh', false, true]], 'answered as a recovery')
  t.equal((await get(example, '/me', recovered.accessToken)).status, 200, 'the victim is served')

  // The attacker's RT2 was replaced: its next use is theft, and the victim's tokens die with the session.
  mark = example.events.length
  const replay = await refreshRequest(example, attacker.refreshToken)
  await refused(t, example, replay, { status: 401, code: REUSED, sent: [attacker.refreshToken] })
  t.ok(clearsCookie(replay), 'the dead cookie is cleared')
  t.same(eventsSince(example, mark), ['sessionRevoked', 'reuseDetected'], 'the session is revoked and reuse reported')
  await refused(t, example, await refreshRequest(example, recovered.refreshToken), { status: 401, code: INVALID, sent: [recovered.refreshToken] })
  for (const accessToken of [attacker.accessToken, recovered.accessToken]) {
    await refused(t, example, await get(example, '/me', accessToken), { status: 401, code: 'FST_TOKEN_AUTH_SESSION_REVOKED', challenge: 'Bearer error="invalid_token"' })
  }
})

t.test('D4 grace applies only to the immediate predecessor: RT1 after RT1->RT2->RT3 is theft, even inside the window', async (t) => {
  const first = await login(example)
  const second = await refresh(example, first.refreshToken)
  const third = await refresh(example, second.refreshToken)
  const replay = await refreshRequest(example, first.refreshToken)
  await refused(t, example, replay, { status: 401, code: REUSED, sent: [first.refreshToken] })
  await refused(t, example, await refreshRequest(example, third.refreshToken), { status: 401, code: INVALID, sent: [third.refreshToken] })
  await refused(t, example, await get(example, '/me', third.accessToken), { status: 401, code: 'FST_TOKEN_AUTH_SESSION_REVOKED' })
})

t.test('D5 race: 10 parallel refreshes of one token yield one successor and no fork', async (t) => {
  const first = await login(example)
  const replies = await Promise.all(Array.from({ length: 10 }, () => refreshRequest(example, first.refreshToken)))
  const statuses = replies.map((reply) => reply.status)
  t.ok(statuses.every((status) => status === 200 || status === 401), `statuses only 200/401: ${statuses.join(',')}`)
  const ok = replies.filter((reply) => reply.status === 200)
  t.ok(ok.length >= 1, 'at least one rotation')
  // reuseGraceLimit (5) bounds the extra answers; the rest are told a newer token exists.
  t.ok(ok.length <= 6, `at most 1 + reuseGraceLimit answers (${ok.length})`)
  for (const reply of replies.filter((reply) => reply.status === 401)) {
    t.equal(reply.json.code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED')
    t.notOk(cookieOf(reply), 'a superseded answer leaves the cookie alone (the parallel answer sets it)')
  }
  const successors = new Set(ok.map((reply) => cookieOf(reply)?.value))
  t.equal(successors.size, 1, 'every 200 carries the same successor')
  const successor = [...successors][0] as string
  example.secrets.push(successor)
  // The one successor chain works, exactly once.
  const next = await refresh(example, successor)
  t.equal(next.reply.status, 200)
  await refused(t, example, await refreshRequest(example, first.refreshToken), { status: 401, code: REUSED, sent: [first.refreshToken] })
  await alive(t, example)
})

t.test('D6 lost response: a retry inside the grace window gets the same successor; after it, a new one, and the lost one is then theft', async (t) => {
  const first = await login(example)
  const lost = await refreshRequest(example, first.refreshToken) // the client never saw this answer
  const lostSuccessor = cookieOf(lost)?.value as string
  example.secrets.push(lostSuccessor, lost.json.accessToken)
  let mark = example.events.length
  const retry = await refreshRequest(example, first.refreshToken) // lost too
  t.equal(retry.status, 200)
  example.secrets.push(retry.json.accessToken)
  t.equal(cookieOf(retry)?.value, lostSuccessor, 'the retry gets the very successor that was lost')
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace]), [['refresh', true]], 'answered as grace')
  t.equal((await get(example, '/me', retry.json.accessToken)).status, 200, 'the session is intact')
  await pastGrace()
  // The successor was never used: the client is answered after the window too, with a new one.
  mark = example.events.length
  const late = await refresh(example, first.refreshToken)
  t.not(late.refreshToken, lostSuccessor, 'a new successor replaces the lost one')
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace, event.payload.recovered]), [['refresh', false, true]], 'answered as a recovery')
  t.equal((await get(example, '/me', late.accessToken)).status, 200, 'the session is intact')
  // Whoever presents the lost successor now is a thief: the session ends.
  mark = example.events.length
  const stolen = await refreshRequest(example, lostSuccessor)
  await refused(t, example, stolen, { status: 401, code: REUSED, sent: [lostSuccessor] })
  t.ok(clearsCookie(stolen), 'the dead cookie is cleared')
  t.same(eventsSince(example, mark), ['sessionRevoked', 'reuseDetected'], 'the session is revoked and reuse reported')
  await refused(t, example, await refreshRequest(example, late.refreshToken), { status: 401, code: INVALID, sent: [late.refreshToken] })
  await refused(t, example, await get(example, '/me', late.accessToken), { status: 401, code: 'FST_TOKEN_AUTH_SESSION_REVOKED', challenge: 'Bearer error="invalid_token"' })
})

t.test('D7 tampered, garbage, empty, forged, never-issued and oversized refresh tokens: invalid, never reuse', async (t) => {
  const victim = await login(example)
  // Refresh tokens are opaque, <session id>.<user>.<id><tag> (docs/design.md, «Refresh tokens»).
  const { sid, jti } = refreshTokenOf(victim.refreshToken)
  const tag = victim.refreshToken.slice(-22)
  const user = (id: string) => Buffer.from(id).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  const neverIssued = { sub: ALICE_ID, sid: randomId(), jti: randomId(), iat: now, exp: now + 600 }
  const tagged = (secret: string) => new RefreshTokens(secret).mint(ALICE_ID, randomId(), randomBytes(16).toString('base64url')).token
  const mark = example.events.length
  const cases: Array<[string, string, string]> = [
    ['user edited under the original tag', `${sid}.${user(BOB_ID)}.${jti}${tag}`, INVALID],
    ['tag of another token', `${victim.refreshToken.slice(0, -22)}${(await login(example, BOB)).refreshToken.slice(-22)}`, INVALID],
    ['garbage', 'abc', INVALID],
    ['no user segment', `${sid}.${jti}${tag}`, INVALID],
    ['random but well-formed', `${randomId()}.${user(ALICE_ID)}.${randomBytes(32).toString('base64url')}${randomId()}`, INVALID],
    ['tagged with the access-token secret', tagged(example.config.accessTokenSecret), INVALID],
    // With the real key, an id the server never issued is still "invalid", not "reuse".
    ['never issued, tagged with the real key', tagged(REFRESH_SECRET), INVALID],
    ['never issued, a JWT of the earlier format signed with the real key', forge({ alg: 'HS256', typ: 'rt+jwt' }, neverIssued, REFRESH_SECRET), INVALID],
    ['an access token', victim.accessToken, INVALID],
    ['10 KB, over the token size cap', `${victim.refreshToken}${'A'.repeat(10_000)}`, INVALID],
    ['empty cookie value', '', 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN']
  ]
  for (const [name, token, code] of cases) {
    const reply = await refreshRequest(example, token)
    t.comment(name)
    await refused(t, example, reply, { status: 401, code, sent: [token, victim.refreshToken] })
  }
  // 100 KB of cookie is over Node's header limit: refused before the app sees it (431, no body).
  const huge = await refreshRequest(example, 'A'.repeat(100_000))
  t.equal(huge.status, 431, '100 KB cookie: 431')
  t.same(huge.setCookies, [])
  await alive(t, example)
  t.same(eventsSince(example, mark).filter((name) => name !== 'login'), [], 'nothing rotated, revoked or reported as reuse')
  // The victim's real token was never disturbed.
  t.equal((await refresh(example, victim.refreshToken)).reply.status, 200)
})

t.test('D8 idle and absolute lifetimes; sliding renewal never passes the absolute maximum', async (t) => {
  // Idle lifetime 4 s, absolute 7 s. JWT times are whole seconds (rounded down), so each
  // "still valid" step is a second inside its limit and each "expired" one past it. Times count
  // from when both logins had answered: the sessions started no later.
  const short = await startExample(t, { REFRESH_TOKEN_TTL: '4', SESSION_MAX_AGE: '7', REFRESH_REUSE_GRACE: '0' })
  const idle = await login(short)
  let sliding = await login(short)
  const startedAt = Date.now()
  const at = (ms: number) => sleep(Math.max(0, startedAt + ms - Date.now()))
  t.ok(Number(cookieOf(sliding.reply)?.attributes['max-age']) <= 4, 'the cookie lives no longer than the idle lifetime')

  await at(2000)
  sliding = await refresh(short, sliding.refreshToken)
  await at(4300)
  const idleExpired = await refreshRequest(short, idle.refreshToken)
  await refused(t, short, idleExpired, { status: 401, code: 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED', sent: [idle.refreshToken] })
  t.ok(clearsCookie(idleExpired), 'the expired cookie is cleared')

  sliding = await refresh(short, sliding.refreshToken)
  const maxAge = Number(cookieOf(sliding.reply)?.attributes['max-age'])
  t.ok(maxAge <= 3, `renewed at 4.3 s, the cookie ends with the session at 7 s, not 4 s later (Max-Age ${maxAge})`)

  await at(7200)
  const absoluteExpired = await refreshRequest(short, sliding.refreshToken)
  await refused(t, short, absoluteExpired, { status: 401, code: 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED', sent: [sliding.refreshToken] })
  await short.close()
})

t.test('D9 a refresh token of user A with an access token of user B: only A\'s session moves, B is untouched', async (t) => {
  const alice = await login(example)
  const bob = await login(example, BOB)
  const reply = await send(example, 'POST', '/auth/refresh', { headers: { cookie: `${COOKIE}=${alice.refreshToken}`, authorization: `Bearer ${bob.accessToken}` } })
  t.equal(reply.status, 200)
  t.equal(decodePayload(reply.json.accessToken).sub, ALICE_ID, 'tokens for the refresh token\'s user only')
  t.equal(decodePayload(reply.json.accessToken).sid, decodePayload(alice.accessToken).sid, 'in Alice\'s session')
  example.secrets.push(reply.json.accessToken, cookieOf(reply)?.value ?? '')
  t.same((await get(example, '/me', bob.accessToken)).json, { id: BOB_ID, username: BOB }, 'Bob\'s access token still works')
  const mark = example.events.length
  t.equal((await refresh(example, bob.refreshToken)).reply.status, 200, 'Bob\'s refresh token was never spent')
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace]), [['refresh', false]], 'a first use, not a grace answer')
})

t.test('D10 cookie mode ignores a refresh token in the body (documented); the body token is not rotated', async (t) => {
  const alice = await login(example)
  const bob = await login(example, BOB)
  const reply = await send(example, 'POST', '/auth/refresh', { headers: { cookie: `${COOKIE}=${alice.refreshToken}` }, body: { refreshToken: bob.refreshToken } })
  t.equal(reply.status, 200)
  t.equal(decodePayload(reply.json.accessToken).sub, ALICE_ID, 'the cookie\'s token was used')
  t.notOk('refreshToken' in reply.json, 'cookie mode never returns the refresh token in the body')
  example.secrets.push(reply.json.accessToken, cookieOf(reply)?.value ?? '')
  const mark = example.events.length
  t.equal((await refresh(example, bob.refreshToken)).reply.status, 200)
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace]), [['refresh', false]], 'the body\'s token was never touched')
  // A body token alone is no refresh token in cookie mode.
  const bodyOnly = await send(example, 'POST', '/auth/refresh', { body: { refreshToken: bob.refreshToken } })
  await refused(t, example, bodyOnly, { status: 401, code: 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', sent: [bob.refreshToken] })
})

t.test('D11 GET, non-JSON and cross-site refreshes are refused, with nothing set and nothing rotated', async (t) => {
  const victim = await login(example)
  const cookie = `${COOKIE}=${victim.refreshToken}`
  const mark = example.events.length
  for (const method of ['GET', 'PUT', 'DELETE']) {
    const reply = await send(example, method, '/auth/refresh', { headers: { cookie } })
    await refused(t, example, reply, { status: 404, code: 'NOT_FOUND', sent: [victim.refreshToken] })
  }
  const bodies: Array<[string, string]> = [
    ['text/plain', '{}'],
    ['application/x-www-form-urlencoded', 'a=b'],
    ['multipart/form-data; boundary=x', '--x--']
  ]
  for (const [type, body] of bodies) {
    const reply = await send(example, 'POST', '/auth/refresh', { headers: { cookie, 'content-type': type }, body })
    await refused(t, example, reply, { status: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', sent: [victim.refreshToken] })
  }
  const crossSite: Array<Record<string, string>> = [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'null' }, { origin: `${example.base}.evil.example` }]
  for (const headers of crossSite) {
    const reply = await send(example, 'POST', '/auth/refresh', { headers: { cookie, ...headers } })
    await refused(t, example, reply, { status: 403, code: 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST', sent: [victim.refreshToken] })
    t.notOk(cookieOf(reply), 'the cookie is neither set nor cleared')
  }
  t.same(eventsSince(example, mark), [], 'nothing was rotated or revoked')
  // The plugin requires no custom header: same-origin and header-less (non-browser) calls pass.
  const sameOrigin = await refreshRequest(example, victim.refreshToken, { origin: example.base, 'sec-fetch-site': 'same-origin' })
  t.equal(sameOrigin.status, 200)
})

t.test('H6 no unhandled rejection during the rotation cases', async (t) => {
  noIncidents(t, example)
})
