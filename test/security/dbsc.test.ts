// Checklist group DB: Device Bound Session Credentials (W3C DBSC draft; docs/design.md, «Device
// Bound Session Credentials (DBSC)», and the refresh, logout and revoke tables of «HTTP
// contract»). Real HTTP against the example app with DBSC=on, DBSC_COOKIE_MAX_AGE=10 and
// DPOP=optional (a DPoP-bound session is one of the cases). The victim's browser is the scripted,
// spec-following browser of test/dbsc-client.ts (headers parsed by structured-headers, proofs
// signed by jose); the thief holds a copy of the victim's cookie jar (malware reading the
// profile), what a proxy saw (session identifier, challenges, a sent Secure-Session-Response),
// and keys of her own, never the victim's private key.
//
// Time is a hand clock (test/helpers.ts handClock): the example runs in this process, and the
// plugin reads the clock it had at boot, so the clock is installed before the example starts and
// a device cookie's 10 seconds pass when a case says so.
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import t, { type Test } from 'tap'
import { type BrowserSession, type DbscKey, dbscKey, dbscProof, parseList, ScriptedBrowser, sfString } from '../dbsc-client.js'
import { dpopKey, proof as dpopProof } from '../dpop-helpers.js'
import { handClock } from '../helpers.js'
import {
  alive, BOB, BOB_PASSWORD, clearsCookie, COOKIE, cookieOf, eventsSince, forge, forgeAsymmetric, noIncidents, noLeak, noTokenIssued, PASSWORD,
  REFRESH_SECRET, type Reply, refused, send, startExample, USERNAME
} from './harness.js'
import { encode } from './forge.js'

const MAX_AGE = 10
const clock = handClock(t)
const example = await startExample(t, { DBSC: 'on', DBSC_COOKIE_MAX_AGE: String(MAX_AGE), DPOP: 'optional' })

const DEVICE = 'device_session'
const REGISTRATION = '/auth/dbsc/registration'
const DEVICE_REFRESH = '/auth/dbsc/refresh'
const INVALID_PROOF = 'FST_TOKEN_AUTH_INVALID_DBSC_PROOF'
const DBSC_CHALLENGE = 'FST_TOKEN_AUTH_DBSC_CHALLENGE'
const DEVICE_REQUIRED = 'FST_TOKEN_AUTH_DEVICE_COOKIE_REQUIRED'
const ALREADY_BOUND = 'FST_TOKEN_AUTH_SESSION_ALREADY_BOUND'
const INVALID_REFRESH = 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'
const MISSING_REFRESH = 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN'
const CROSS_SITE = 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST'
/** Challenges and device cookies: `<expiry, seconds>.<22 base64url characters of HMAC>`. */
/** A device cookie: an expiry and a MAC. */
const STAMP = /^\d{10}\.[A-Za-z0-9_-]{22}$/
/** A challenge: an expiry, a nonce and a MAC. */
const CHALLENGE_SHAPE = /^\d{10}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}$/
/** The device cookie's attributes in the example (no Secure outside production), as the instructions name them. */
const CREDENTIAL_ATTRIBUTES = 'Path=/auth; HttpOnly; SameSite=Strict'
/** Past the device cookie's lifetime. */
const PAST_DEVICE_COOKIE = (MAX_AGE + 1) * 1000

type Headers = Array<[string, string]>

/** A fetch answer in the harness's shape, so the global checks apply to the scripted browsers' requests too. */
async function replyOf (response: Response): Promise<Reply> {
  const text = await response.text()
  const headers: Record<string, string> = {}
  response.headers.forEach((value, name) => { if (name !== 'set-cookie') headers[name] = value })
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: response.status, headers, setCookies: response.headers.getSetCookie(), text, json }
}

/** The value of cookie `name` in a browser's jar (expired or not). */
function jarValue (browser: ScriptedBrowser, name: string): string {
  const cookie = browser.jar.get(name)
  if (cookie === undefined) throw new Error(`no ${name} in the jar`)
  return cookie.value
}

/** Records every cookie of a browser's jar as a secret no error body may echo. */
function remember (browser: ScriptedBrowser): void {
  for (const cookie of browser.jar.values()) example.secrets.push(cookie.value)
}

/** A `Cookie` header of the given pairs (undefined values left out). */
function cookies (pairs: Record<string, string | undefined>): string {
  return Object.entries(pairs).filter(([, value]) => value !== undefined).map(([name, value]) => `${name}=${value as string}`).join('; ')
}

/** `Secure-Session-Challenge: "<c>";id="<identifier>"`, parsed by the third-party parser. */
function challengeOf (reply: Reply): { challenge: string, id: string } | undefined {
  const field = reply.headers['secure-session-challenge']
  if (field === undefined) return undefined
  const [member, ...rest] = parseList(field)
  if (member === undefined || rest.length > 0 || typeof member[0] !== 'string') throw new Error(`not one challenge: ${field}`)
  return { challenge: member[0], id: member[1].get('id') as string }
}

/** `Secure-Session-Registration: (ES256 RS256);path="…";challenge="…"`, parsed. */
function offerOf (reply: Reply): { algorithms: string[], path: string, challenge: string } | undefined {
  const field = reply.headers['secure-session-registration']
  if (field === undefined) return undefined
  const [member] = parseList(field)
  if (member === undefined || !Array.isArray(member[0])) throw new Error(`not an offer: ${field}`)
  return {
    algorithms: (member[0] as Array<[unknown, unknown]>).map(([algorithm]) => String(algorithm)),
    path: member[1].get('path') as string,
    challenge: member[1].get('challenge') as string
  }
}

interface Victim {
  browser: ScriptedBrowser
  session: BrowserSession
  /** The login's answer (its offer's challenge is spent by the registration the browser made). */
  login: Reply
}

/** A DBSC browser logs in and, offered DBSC, registers by itself: a DBSC-bound session. */
async function victimLogin (username = USERNAME): Promise<Victim> {
  const browser = new ScriptedBrowser(example.base)
  const login = await replyOf(await browser.fetch('/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: username === BOB ? BOB_PASSWORD : PASSWORD })
  }))
  const session = [...browser.sessions.values()][0]
  if (login.status !== 200 || session === undefined || browser.events.at(-1)?.status !== 200) {
    throw new Error(`login or registration failed: ${login.status} ${JSON.stringify(browser.events)}`)
  }
  example.secrets.push(login.json.accessToken as string)
  remember(browser)
  return { browser, session, login }
}

/** A browser's `POST /auth/refresh` as a page makes it (a missing device cookie renewed first). */
async function browserRefresh (browser: ScriptedBrowser): Promise<Reply> {
  const reply = await replyOf(await browser.fetch('/auth/refresh', { method: 'POST' }))
  if (reply.status === 200) example.secrets.push(reply.json.accessToken as string)
  remember(browser)
  return reply
}

interface Bearer {
  reply: Reply
  refreshToken: string
  accessToken: string
  /** The registration challenge the login's offer carries. */
  challenge: string
}

/** A login by hand (no DBSC browser): a bearer session and its offer. */
async function bearerLogin (username = USERNAME): Promise<Bearer> {
  const reply = await send(example, 'POST', '/auth/login', { body: { username, password: username === BOB ? BOB_PASSWORD : PASSWORD } })
  const offer = offerOf(reply)
  if (reply.status !== 200 || offer === undefined) throw new Error(`login: ${reply.status} ${reply.text}`)
  const bearer = { reply, refreshToken: cookieOf(reply)?.value as string, accessToken: reply.json.accessToken as string, challenge: offer.challenge }
  example.secrets.push(bearer.refreshToken, bearer.accessToken)
  return bearer
}

/** `POST /auth/dbsc/registration` with the cookies and one `Secure-Session-Response` per proof. */
async function register (cookie: string | undefined, proofs: string[], extra: Headers = []): Promise<Reply> {
  return await send(example, 'POST', REGISTRATION, {
    headers: [...(cookie === undefined ? [] : [['cookie', cookie] as [string, string]]), ...proofs.map((p): [string, string] => ['secure-session-response', sfString(p)]), ...extra]
  })
}

/** `POST /auth/dbsc/refresh` with the cookies, `Sec-Secure-Session-Id` and a `Secure-Session-Response` if given. */
async function deviceRefresh (cookie: string | undefined, identifier: string | undefined, proof?: string, extra: Headers = []): Promise<Reply> {
  return await send(example, 'POST', DEVICE_REFRESH, {
    headers: [
      ...(cookie === undefined ? [] : [['cookie', cookie] as [string, string]]),
      ...(identifier === undefined ? [] : [['sec-secure-session-id', sfString(identifier)] as [string, string]]),
      ...(proof === undefined ? [] : [['secure-session-response', sfString(proof)] as [string, string]]),
      ...extra
    ]
  })
}

/** `POST /auth/refresh` with the given cookie header. */
async function refreshWith (cookie: string, extra: Headers = []): Promise<Reply> {
  return await send(example, 'POST', '/auth/refresh', { headers: [['cookie', cookie], ...extra] })
}

interface Refusal {
  status: number
  code: string
  sent?: string[]
  message?: RegExp
  /** What the answer does to the refresh cookie (default: neither sets nor clears a cookie). */
  cookie?: 'untouched' | 'cleared'
  /** The session identifier a 403's fresh `Secure-Session-Challenge` names; none expected when absent. */
  challengeFor?: string
}

/** A refusal: the harness's checks (status, code, no token, no leak, alive), the cookies, no offer, a challenge only on a 403 of the refresh endpoint. */
async function refusedDbsc (t: Test, reply: Reply, expected: Refusal): Promise<void> {
  await refused(t, example, reply, { status: expected.status, code: expected.code, sent: expected.sent ?? [] })
  if (expected.message !== undefined) t.match(reply.json?.message, expected.message, 'the message names the failed check')
  if (expected.cookie === 'cleared') {
    t.ok(clearsCookie(reply), 'the refresh cookie is cleared (a token that is not ours)')
    t.equal(cookieOf(reply, DEVICE), undefined, 'no device cookie')
  } else {
    t.same(reply.setCookies, [], 'no cookie set or cleared')
  }
  t.equal(reply.headers['www-authenticate'], undefined, 'no WWW-Authenticate')
  t.equal(reply.headers['secure-session-registration'], undefined, 'no registration offer')
  if (expected.challengeFor === undefined) {
    t.equal(reply.headers['secure-session-challenge'], undefined, 'no challenge')
  } else {
    const challenge = challengeOf(reply)
    t.match(challenge?.challenge, CHALLENGE_SHAPE, 'a fresh Secure-Session-Challenge')
    t.equal(challenge?.id, expected.challengeFor, 'for the session identifier named')
  }
}

/** A 200 of the DBSC endpoints: the instructions, a device cookie with the refresh cookie's attributes, the next challenge. */
function granted (t: Test, reply: Reply, identifier: string, what: string): string {
  t.equal(reply.status, 200, `${what}: 200`)
  t.same(reply.json, {
    session_identifier: identifier,
    refresh_url: DEVICE_REFRESH,
    scope: { include_site: false },
    credentials: [{ type: 'cookie', name: DEVICE, attributes: CREDENTIAL_ATTRIBUTES }]
  }, `${what}: the session instructions`)
  const device = cookieOf(reply, DEVICE)
  t.match(device?.value, STAMP, `${what}: a device cookie`)
  t.same(device?.attributes, { 'max-age': String(MAX_AGE), path: '/auth', httponly: '', samesite: 'Strict' }, `${what}: Max-Age ${MAX_AGE}, the refresh cookie's attributes`)
  t.equal(challengeOf(reply)?.id, identifier, `${what}: the next challenge, for this session`)
  t.match(challengeOf(reply)?.challenge, CHALLENGE_SHAPE)
  example.secrets.push(device?.value ?? '')
  return device?.value ?? ''
}

/** The session identifier a browser with `key` would be handed for session `sessionId`. */
function identifierFor (sessionId: string, key: DbscKey): string {
  const members = key.jwk.kty === 'EC'
    ? { crv: key.jwk.crv, kty: key.jwk.kty, x: key.jwk.x, y: key.jwk.y }
    : { e: key.jwk.e, kty: key.jwk.kty, n: key.jwk.n }
  return `${sessionId}.${Buffer.from(JSON.stringify(members)).toString('base64url')}`
}

/** The parts of a DBSC-bound refresh token `<sid>.<user>.dbsc-<jkt>.<id><tag>`. */
function boundParts (token: string): { sid: string, user: string, jkt: string, rest: string } {
  const [sid, user, mark, rest] = token.split('.') as [string, string, string, string]
  if (!mark.startsWith('dbsc-')) throw new Error(`not a DBSC-bound token: ${token}`)
  return { sid, user, jkt: mark.slice('dbsc-'.length), rest }
}

/** The session id a refresh token names. */
const sidOf = (token: string): string => token.split('.')[0] as string

/** Runs `run` while recording what global fetch sends (a proxy on the victim's wire). */
async function capturing<T> (run: () => Promise<T>): Promise<{ result: T, sent: Array<{ path: string, headers: Record<string, string> }> }> {
  const realFetch = globalThis.fetch
  const sent: Array<{ path: string, headers: Record<string, string> }> = []
  globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    sent.push({ path: new URL(input instanceof Request ? input.url : input).pathname, headers: { ...(init?.headers as Record<string, string>) } })
    return await realFetch(input, init)
  }) as typeof fetch
  try {
    return { result: await run(), sent }
  } finally {
    globalThis.fetch = realFetch
  }
}

t.test('DB1 a stolen cookie jar (refresh + device cookies) works only until the device cookie expires, then 401 DEVICE_COOKIE_REQUIRED; the victim goes on', async (t) => {
  const { browser: victim, session } = await victimLogin()
  const victimToken = jarValue(victim, COOKIE)
  t.equal(boundParts(victimToken).jkt, session.key.jkt, 'the victim\'s refresh token names her DBSC key')
  // The thief's browser has no DBSC: it only replays the jar.
  const thief = new ScriptedBrowser(example.base, { dbsc: false })
  for (const [name, cookie] of victim.jar) thief.jar.set(name, { ...cookie })
  const mark = example.events.length

  // While the device cookie lives, the copy refreshes: the DBSC bound, 10 seconds at most.
  const stolen = await replyOf(await thief.fetch('/auth/refresh', { method: 'POST' }))
  t.equal(stolen.status, 200, 'the stolen jar refreshes while its device cookie lives')
  example.secrets.push(stolen.json.accessToken as string)
  const successor = cookieOf(stolen)?.value as string
  example.secrets.push(successor)
  t.equal(boundParts(successor).jkt, session.key.jkt, 'the successor keeps the victim\'s key')
  t.equal(stolen.headers['secure-session-registration'], undefined, 'a bound session is not offered DBSC')
  t.equal(cookieOf(stolen, DEVICE), undefined, 'a refresh sets no device cookie')
  const thiefDevice = jarValue(thief, DEVICE)

  // The victim refreshes in the same instant (a race inside the reuse grace): she is handed the same successor.
  const raced = await browserRefresh(victim)
  t.equal(raced.status, 200, 'the victim\'s racing refresh: 200')
  t.equal(cookieOf(raced)?.value, successor, 'the same successor (grace answer)')
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace]), [['refresh', false], ['refresh', true]], 'a rotation and its grace answer')

  clock.advance(PAST_DEVICE_COOKIE)
  const afterMark = example.events.length
  // The thief's jar drops the expired device cookie; sending the expired value by hand does no better.
  const late = await replyOf(await thief.fetch('/auth/refresh', { method: 'POST' }))
  await refusedDbsc(t, late, { status: 401, code: DEVICE_REQUIRED, sent: [successor] })
  t.same(thief.sessions.size, 0, 'the thief\'s browser has no DBSC session to renew the cookie with')
  const expiredByHand = await refreshWith(cookies({ [COOKIE]: successor, [DEVICE]: thiefDevice }))
  await refusedDbsc(t, expiredByHand, { status: 401, code: DEVICE_REQUIRED, sent: [successor, thiefDevice] })

  // The victim's browser renews the device cookie with its key, then refreshes.
  const before = victim.events.length
  const goesOn = await browserRefresh(victim)
  t.equal(goesOn.status, 200, 'the victim refreshes')
  t.same(victim.events.slice(before).map((event) => [event.kind, event.status]), [['refresh', 200]], 'after a device refresh her browser made by itself')
  t.not(jarValue(victim, DEVICE), thiefDevice, 'a new device cookie')
  const next = cookieOf(goesOn)?.value as string
  t.not(next, successor, 'rotated')
  t.equal(boundParts(next).jkt, session.key.jkt, 'still bound to her key')

  // The thief's copy, now also stale, is refused before the store: no reuse reported, nothing revoked.
  await refusedDbsc(t, await replyOf(await thief.fetch('/auth/refresh', { method: 'POST' })), { status: 401, code: DEVICE_REQUIRED, sent: [successor] })
  t.same(eventsSince(example, afterMark), ['refresh'], 'only the victim\'s rotation: no reuse, no revocation')
  t.equal((await browserRefresh(victim)).status, 200, 'and the victim goes on')
})

t.test('DB2 the thief cannot renew the device cookie: own signature 400, own key in the identifier 401, a captured Secure-Session-Response replayed 403', async (t) => {
  const { browser: victim, session } = await victimLogin()
  const thiefKey = await dbscKey()
  const thiefRsa = await dbscKey('RS256')
  const stolen = cookies({ [COOKIE]: jarValue(victim, COOKIE), [DEVICE]: jarValue(victim, DEVICE) })
  const sent = [jarValue(victim, COOKIE), jarValue(victim, DEVICE)]
  const mark = example.events.length

  // The victim's identifier, no proof: a challenge, as any browser's first attempt gets.
  const first = await deviceRefresh(stolen, session.id)
  await refusedDbsc(t, first, { status: 403, code: DBSC_CHALLENGE, sent, challengeFor: session.id })
  const challenge = challengeOf(first)?.challenge as string

  // It signs that live challenge with its own key: 400, and no new challenge.
  const ownSignature = await dbscProof(thiefKey, challenge)
  await refusedDbsc(t, await deviceRefresh(stolen, session.id, ownSignature), { status: 400, code: INVALID_PROOF, sent: [...sent, ownSignature] })
  const ownRsa = await dbscProof(thiefRsa, challenge)
  await refusedDbsc(t, await deviceRefresh(stolen, session.id, ownRsa), { status: 400, code: INVALID_PROOF, message: /alg does not fit/, sent: [...sent, ownRsa] })
  // Its own key's proof, carrying its jwk in the header as at registration: the session key decides.
  const withJwk = await dbscProof(thiefKey, challenge, { header: { jwk: thiefKey.jwk } })
  await refusedDbsc(t, await deviceRefresh(stolen, session.id, withJwk), { status: 400, code: INVALID_PROOF, sent: [...sent, withJwk] })

  // An identifier carrying its own key: the refresh token names the victim's thumbprint.
  const ownIdentifier = identifierFor(boundParts(jarValue(victim, COOKIE)).sid, thiefKey)
  for (const proof of [undefined, ownSignature, await dbscProof(thiefKey, challenge)]) {
    t.comment(`the thief's key in the identifier, ${proof === undefined ? 'no proof' : 'its proof'}`)
    await refusedDbsc(t, await deviceRefresh(stolen, ownIdentifier, proof), { status: 401, code: INVALID_REFRESH, sent })
  }
  const ownRsaIdentifier = identifierFor(boundParts(jarValue(victim, COOKIE)).sid, thiefRsa)
  await refusedDbsc(t, await deviceRefresh(stolen, ownRsaIdentifier, ownRsa), { status: 401, code: INVALID_REFRESH, sent })

  // Replaying what the victim's browser sent (a proxy saw it): spent, a challenge again. Challenges
  // are minted per second (see DB14): a second passes before each step, as it does on the wire.
  clock.advance(1000)
  const { result, sent: wire } = await capturing(async () => await victim.refreshSession(session))
  t.equal(result, 'refreshed', 'the victim\'s own device refresh')
  const captured = wire.find((request) => request.path === DEVICE_REFRESH)?.headers['secure-session-response'] as string
  t.match(captured, /^"[^"]+"$/, 'a Secure-Session-Response was captured')
  remember(victim)
  clock.advance(1000)
  const replayed = await send(example, 'POST', DEVICE_REFRESH, {
    headers: [['cookie', stolen], ['sec-secure-session-id', sfString(session.id)], ['secure-session-response', captured]]
  })
  await refusedDbsc(t, replayed, { status: 403, code: DBSC_CHALLENGE, sent, challengeFor: session.id })
  t.not(challengeOf(replayed)?.challenge, JSON.parse(Buffer.from(captured.slice(1, -1).split('.')[1] as string, 'base64url').toString()).jti, 'a new challenge, not the spent one')
  // The same replay with the victim's current cookies changes nothing.
  const withCurrent = await send(example, 'POST', DEVICE_REFRESH, {
    headers: [['cookie', cookies({ [COOKIE]: jarValue(victim, COOKIE), [DEVICE]: jarValue(victim, DEVICE) })], ['sec-secure-session-id', sfString(session.id)], ['secure-session-response', captured]]
  })
  await refusedDbsc(t, withCurrent, { status: 403, code: DBSC_CHALLENGE, sent, challengeFor: session.id })

  t.same(eventsSince(example, mark), [], 'nothing rotated, revoked or reported as reuse')
  t.equal(await victim.refreshSession(session), 'refreshed', 'the victim renews her device cookie')
  t.equal((await browserRefresh(victim)).status, 200, 'and refreshes')
})

t.test('DB3 the thief cannot re-register the session to its own key: 400 SESSION_ALREADY_BOUND, nothing spent or rotated', async (t) => {
  const { browser: victim, session, login } = await victimLogin()
  const thiefKey = await dbscKey()
  const token = jarValue(victim, COOKIE)
  const stolen = cookies({ [COOKIE]: token, [DEVICE]: jarValue(victim, DEVICE) })
  const spent = offerOf(login)?.challenge as string
  // A live refresh challenge of the session (what any device refresh without a proof hands out).
  const live = challengeOf(await deviceRefresh(stolen, session.id))?.challenge as string
  const mark = example.events.length
  const attempts: Array<[string, string[]]> = [
    ['no proof', []],
    ['its key, the login\'s (spent) registration challenge', [await dbscProof(thiefKey, spent, { registration: true })]],
    ['its key, a live refresh challenge', [await dbscProof(thiefKey, live, { registration: true })]],
    ['its key in the claims (Chromium\'s format)', [await dbscProof(thiefKey, spent, { registration: true, keyIn: 'claims' })]],
    ['an RSA key', [await dbscProof(await dbscKey('RS256'), spent, { registration: true })]],
    ['the victim\'s own key again', [await dbscProof(session.key, spent, { registration: true })]]
  ]
  for (const [label, proofs] of attempts) {
    t.comment(label)
    await refusedDbsc(t, await register(stolen, proofs), { status: 400, code: ALREADY_BOUND, sent: [token, ...proofs] })
    t.comment(`${label}, the refresh cookie alone`)
    await refusedDbsc(t, await register(cookies({ [COOKIE]: token }), proofs), { status: 400, code: ALREADY_BOUND, sent: [token, ...proofs] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated')
  // The live challenge was not spent by the refusals: the victim's key still uses it.
  const mine = await dbscProof(session.key, live)
  granted(t, await deviceRefresh(stolen, session.id, mine), session.id, 'the victim\'s device refresh with that challenge')
  const next = await browserRefresh(victim)
  t.equal(next.status, 200, 'the victim refreshes')
  t.equal(boundParts(cookieOf(next)?.value as string).jkt, session.key.jkt, 'still bound to her key')
})

t.test('DB4 a refresh token with `dbsc-<jkt>.` stripped, another thumbprint swapped in, or the DBSC mark removed: 401 INVALID_REFRESH_TOKEN (the tag covers it)', async (t) => {
  const { browser: victim, session, login } = await victimLogin()
  const thiefKey = await dbscKey()
  const token = jarValue(victim, COOKIE)
  const device = jarValue(victim, DEVICE)
  const { sid, user, jkt, rest } = boundParts(token)
  const forgeries: Array<[string, string]> = [
    ['stripped to a bearer token', `${sid}.${user}.${rest}`],
    ['the thief\'s thumbprint', `${sid}.${user}.dbsc-${thiefKey.jkt}.${rest}`],
    ['the mark removed (a DPoP binding)', `${sid}.${user}.${jkt}.${rest}`],
    ['the mark in upper case', `${sid}.${user}.DBSC-${jkt}.${rest}`]
  ]
  const spent = offerOf(login)?.challenge as string
  const mark = example.events.length
  for (const [label, forged] of forgeries) {
    t.comment(`refresh, ${label}`)
    await refusedDbsc(t, await refreshWith(cookies({ [COOKIE]: forged, [DEVICE]: device })), { status: 401, code: INVALID_REFRESH, cookie: 'cleared', sent: [forged, token] })
    t.comment(`registration of the thief's key, ${label}`)
    const proof = await dbscProof(thiefKey, spent, { registration: true })
    await refusedDbsc(t, await register(cookies({ [COOKIE]: forged, [DEVICE]: device }), [proof]), { status: 401, code: INVALID_REFRESH, sent: [forged, token, proof] })
    t.comment(`device refresh, ${label}`)
    await refusedDbsc(t, await deviceRefresh(cookies({ [COOKIE]: forged }), identifierFor(sid, thiefKey)), { status: 401, code: INVALID_REFRESH, sent: [forged, token] })
    await refusedDbsc(t, await deviceRefresh(cookies({ [COOKIE]: forged }), session.id), { status: 401, code: INVALID_REFRESH, sent: [forged, token] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated, revoked or reported as reuse')
  t.equal((await browserRefresh(victim)).status, 200, 'the victim refreshes')
})

t.test('DB5 a forged device cookie, one of another session, of another user, a challenge as one, an expired one: 401 DEVICE_COOKIE_REQUIRED, the cookie kept', async (t) => {
  const { browser: victim } = await victimLogin()
  const { browser: other } = await victimLogin()
  const { browser: bob } = await victimLogin(BOB)
  const token = jarValue(victim, COOKIE)
  const device = jarValue(victim, DEVICE)
  const [expiry, mac] = device.split('.') as [string, string]
  const otherMac = jarValue(other, DEVICE).split('.')[1] as string
  const refreshChallenge = [...victim.sessions.values()][0]?.cachedChallenge as string
  const forged: Array<[string, string | undefined]> = [
    ['none', undefined],
    ['empty', ''],
    ['random, well-formed', `${expiry}.${randomBytes(16).toString('base64url')}`],
    ['her MAC, a later expiry', `${Number(expiry) + 3600}.${mac}`],
    ['her MAC, no expiry', mac],
    ['another session\'s of the same user', jarValue(other, DEVICE)],
    ['another session\'s MAC with her expiry', `${expiry}.${otherMac}`],
    ['another user\'s', jarValue(bob, DEVICE)],
    ['her session\'s refresh challenge (same shape, another key)', refreshChallenge],
    ['her refresh token', token],
    ['5000 characters', 'A'.repeat(5000)]
  ]
  const mark = example.events.length
  for (const [label, value] of forged) {
    t.comment(`refresh, device cookie ${label}`)
    await refusedDbsc(t, await refreshWith(cookies({ [COOKIE]: token, [DEVICE]: value })), { status: 401, code: DEVICE_REQUIRED, sent: [token, device] })
    t.comment(`reauthenticate (right password), device cookie ${label}`)
    const reauth = await send(example, 'POST', '/auth/reauthenticate', {
      headers: { cookie: cookies({ [COOKIE]: token, [DEVICE]: value }) }, body: { username: USERNAME, password: PASSWORD }
    })
    await refusedDbsc(t, reauth, { status: 401, code: DEVICE_REQUIRED, sent: [token, device] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated, revoked or reported as reuse')
  t.equal((await refreshWith(cookies({ [COOKIE]: token, [DEVICE]: device }))).status, 200, 'her live device cookie passes (the check was not a dead route)')
  remember(victim)

  // Expired: the value she held 11 seconds ago, MAC intact.
  const held = jarValue(victim, DEVICE)
  clock.advance(PAST_DEVICE_COOKIE)
  const current = await browserRefresh(victim)
  t.equal(current.status, 200, 'her browser renews the device cookie and refreshes')
  const successor = jarValue(victim, COOKIE)
  const expiredMark = example.events.length
  await refusedDbsc(t, await refreshWith(cookies({ [COOKIE]: successor, [DEVICE]: held })), { status: 401, code: DEVICE_REQUIRED, sent: [successor, held] })
  const reauth = await send(example, 'POST', '/auth/reauthenticate', {
    headers: { cookie: cookies({ [COOKIE]: successor, [DEVICE]: held }) }, body: { username: USERNAME, password: PASSWORD }
  })
  await refusedDbsc(t, reauth, { status: 401, code: DEVICE_REQUIRED, sent: [successor, held] })
  t.same(eventsSince(example, expiredMark), [], 'nothing rotated')
  t.equal((await browserRefresh(victim)).status, 200, 'the victim goes on')
})

t.test('DB6 the thief cannot log the victim out nor revoke her session without the device cookie: 204 / 200, nothing ended', async (t) => {
  const { browser: victim, session } = await victimLogin()
  const { browser: other } = await victimLogin()
  const token = jarValue(victim, COOKIE)
  const held = jarValue(victim, DEVICE)
  clock.advance(PAST_DEVICE_COOKIE) // the copy's device cookie has expired
  const forgedDevice = `${held.split('.')[0] as string}.${randomBytes(16).toString('base64url')}`
  const otherDevice = jarValue(other, DEVICE)
  const mark = example.events.length
  const variants: Array<[string, string | undefined]> = [
    ['no device cookie', undefined],
    ['the expired device cookie', held],
    ['a forged device cookie', forgedDevice],
    ['another session\'s device cookie', otherDevice]
  ]
  for (const [label, device] of variants) {
    t.comment(`logout, ${label}`)
    const logout = await send(example, 'POST', '/auth/logout', { headers: { cookie: cookies({ [COOKIE]: token, [DEVICE]: device }) } })
    t.equal(logout.status, 204, 'logout answers 204 as always')
    t.equal(logout.text, '', 'no body')
    t.ok(clearsCookie(logout), 'the thief\'s own refresh cookie is cleared')
    t.equal(logout.headers['secure-session-challenge'], undefined, 'no challenge')
    noTokenIssued(t, logout)
    noLeak(t, example, logout, [token])
    t.comment(`revoke, ${label}`)
    const revoke = await send(example, 'POST', '/auth/revoke', {
      headers: device === undefined ? {} : { cookie: cookies({ [DEVICE]: device }) }, body: { token }
    })
    t.equal(revoke.status, 200, 'revoke answers 200 as for any token (RFC 7009 §2.2)')
    t.equal(revoke.text, '', 'an empty body')
    t.same(revoke.setCookies, [], 'no cookie set or cleared')
    noLeak(t, example, revoke, [token])
  }
  await alive(t, example)
  t.same(eventsSince(example, mark), [], 'no session ended, no logout reported')

  // The victim still refreshes (her browser renews the device cookie first).
  const next = await browserRefresh(victim)
  t.equal(next.status, 200, 'the victim still refreshes')
  t.equal(boundParts(cookieOf(next)?.value as string).jkt, session.key.jkt)
  // Her own logout, beside her device cookie, ends it: the check above was not a dead route.
  const logoutMark = example.events.length
  const logout = await replyOf(await victim.fetch('/auth/logout', { method: 'POST' }))
  t.equal(logout.status, 204, 'her logout: 204')
  t.same(eventsSince(example, logoutMark), ['sessionRevoked', 'logout'], 'her logout ends the session')
  t.equal(victim.jar.has(COOKIE), false, 'her refresh cookie is cleared')
  // Her browser's next device refresh has no refresh cookie: 401, and it ends its DBSC session.
  t.equal(await victim.refreshSession(session), 'terminated', 'her browser ends its DBSC session')
  t.same(victim.events.at(-1)?.status, 401)
})

t.test('DB7 a registration challenge of one session used for another (or a refresh challenge, or a made-up one): 400, nothing spent', async (t) => {
  const alice = await bearerLogin()
  const aliceAgain = await bearerLogin()
  const bob = await bearerLogin(BOB)
  const { browser: boundBrowser, session: bound } = await victimLogin()
  const key = await dbscKey()
  const [expiry, mac] = aliceAgain.challenge.split('.') as [string, string]
  const wrong: Array<[string, string]> = [
    ['another session\'s of the same user', alice.challenge],
    ['another user\'s session\'s', bob.challenge],
    ['a bound session\'s refresh challenge', bound.cachedChallenge as string],
    ['its own, expiry changed', `${Number(expiry) + 60}.${mac}`],
    ['made up', `${expiry}.${randomBytes(16).toString('base64url')}`],
    ['empty', '']
  ]
  const mark = example.events.length
  for (const [label, challenge] of wrong) {
    t.comment(label)
    const proof = await dbscProof(key, challenge, { registration: true })
    await refusedDbsc(t, await register(cookies({ [COOKIE]: aliceAgain.refreshToken }), [proof]), {
      status: 400, code: INVALID_PROOF, message: label === 'empty' ? /jti/ : /not issued for this session/, sent: [aliceAgain.refreshToken, proof]
    })
  }
  // A registration challenge at the refresh endpoint is not a refresh challenge: 403 with a real one.
  const asRefresh = await dbscProof(bound.key, bob.challenge)
  const boundCookie = cookies({ [COOKIE]: jarValue(boundBrowser, COOKIE) })
  await refusedDbsc(t, await deviceRefresh(boundCookie, bound.id, asRefresh), { status: 403, code: DBSC_CHALLENGE, challengeFor: bound.id })
  t.same(eventsSince(example, mark), [], 'nothing rotated')

  // None was spent: each session registers with its own challenge afterwards.
  for (const [label, bearer] of [['the session attacked', aliceAgain], ['the session whose challenge was borrowed', alice], ['bob\'s', bob]] as const) {
    const own = await dbscKey()
    const reply = await register(cookies({ [COOKIE]: bearer.refreshToken }), [await dbscProof(own, bearer.challenge, { registration: true })])
    granted(t, reply, identifierFor(sidOf(bearer.refreshToken), own), `${label} registers`)
    example.secrets.push(cookieOf(reply)?.value ?? '')
    t.equal(boundParts(cookieOf(reply)?.value as string).jkt, own.jkt, 'its refresh token names its key')
  }
})

t.test('DB8 registration (and device refresh) cross-site: 403 CROSS_SITE_REQUEST, the proof not spent', async (t) => {
  const bearer = await bearerLogin()
  const key = await dbscKey()
  const proof = await dbscProof(key, bearer.challenge, { registration: true })
  const { browser: victim, session } = await victimLogin()
  const live = session.cachedChallenge as string
  const refreshProof = await dbscProof(session.key, live)
  const victimCookies = cookies({ [COOKIE]: jarValue(victim, COOKIE), [DEVICE]: jarValue(victim, DEVICE) })
  const crossSite: Array<[string, Headers]> = [
    ['Origin of another site', [['origin', 'https://evil.example']]],
    ['Origin of another scheme', [['origin', `https://127.0.0.1:${example.port}`]]],
    ['Origin of another port', [['origin', `http://127.0.0.1:${example.port === 65535 ? 65534 : example.port + 1}`]]],
    ['Origin null', [['origin', 'null']]],
    ['Sec-Fetch-Site: cross-site (and our own Origin)', [['origin', example.base], ['sec-fetch-site', 'cross-site']]]
  ]
  const mark = example.events.length
  for (const [label, headers] of crossSite) {
    t.comment(`registration, ${label}`)
    await refusedDbsc(t, await register(cookies({ [COOKIE]: bearer.refreshToken }), [proof], headers), { status: 403, code: CROSS_SITE, sent: [bearer.refreshToken, proof] })
    t.comment(`device refresh, ${label}`)
    await refusedDbsc(t, await deviceRefresh(victimCookies, session.id, refreshProof, headers), { status: 403, code: CROSS_SITE, sent: [refreshProof] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated')
  // Same-site, the very same proofs pass: nothing was spent.
  const sameSite = await register(cookies({ [COOKIE]: bearer.refreshToken }), [proof], [['origin', example.base], ['sec-fetch-site', 'same-origin']])
  granted(t, sameSite, identifierFor(sidOf(bearer.refreshToken), key), 'the registration from our own origin')
  example.secrets.push(cookieOf(sameSite)?.value ?? '')
  granted(t, await deviceRefresh(victimCookies, session.id, refreshProof, [['origin', example.base]]), session.id, 'the device refresh from our own origin')
})

t.test('DB9 alg none, HS256 keyed with the refresh secret or the public key (key confusion), other algorithms and typs: 400 INVALID_DBSC_PROOF, nothing spent', async (t) => {
  const bearer = await bearerLogin()
  const key = await dbscKey()
  const jwkHeader = { typ: 'dbsc+jwt', jwk: key.jwk }
  const claims = { jti: bearer.challenge }
  const ed = await generateKeyPair('EdDSA', { extractable: true })
  const edJwk = await exportJWK(ed.publicKey)
  const es384 = await generateKeyPair('ES384', { extractable: true })
  const es384Jwk = await exportJWK(es384.publicKey)
  const rsa = await dbscKey('RS256')
  // jose refuses to make RSA keys under 2048 bits: node:crypto makes it, the harness's forger signs.
  const smallRsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const smallRsaJwk = smallRsa.publicKey.export({ format: 'jwk' })
  const privateJwk = await exportJWK(key.privateKey)
  const signedAs = async (privateKey: CryptoKey, header: Record<string, unknown>, body: Record<string, unknown> = claims): Promise<string> =>
    await new SignJWT(body).setProtectedHeader(header as { alg: string }).sign(privateKey)
  const registrationForgeries: Array<[string, string]> = [
    ['alg none, no signature', `${encode({ ...jwkHeader, alg: 'none' })}.${encode(claims)}.`],
    ['alg none, a signature segment', `${encode({ ...jwkHeader, alg: 'none' })}.${encode(claims)}.AAAA`],
    ['HS256 keyed with the refresh secret, the EC jwk', forge({ ...jwkHeader, alg: 'HS256' }, claims, REFRESH_SECRET)],
    ['HS256 keyed with the refresh secret, an oct jwk of it', forge({ typ: 'dbsc+jwt', alg: 'HS256', jwk: { kty: 'oct', k: Buffer.from(REFRESH_SECRET).toString('base64url') } }, claims, REFRESH_SECRET)],
    ['HS256 keyed with the jwk\'s JSON', forge({ ...jwkHeader, alg: 'HS256' }, claims, JSON.stringify(key.jwk))],
    ['HS256 keyed with the challenge', forge({ ...jwkHeader, alg: 'HS256' }, claims, bearer.challenge)],
    ['EdDSA, validly signed', await signedAs(ed.privateKey, { alg: 'EdDSA', typ: 'dbsc+jwt', jwk: edJwk })],
    ['ES384, validly signed', await signedAs(es384.privateKey, { alg: 'ES384', typ: 'dbsc+jwt', jwk: es384Jwk })],
    ['RS256 header, an EC jwk', await signedAs(rsa.privateKey, { alg: 'RS256', typ: 'dbsc+jwt', jwk: key.jwk })],
    ['RS256 with a 1024-bit key', forgeAsymmetric({ alg: 'RS256', typ: 'dbsc+jwt', jwk: smallRsaJwk }, claims, smallRsa.privateKey, 'RS256')],
    ['typ dpop+jwt', await dbscProof(key, bearer.challenge, { registration: true, header: { typ: 'dpop+jwt' } })],
    ['typ JWT', await dbscProof(key, bearer.challenge, { registration: true, header: { typ: 'JWT' } })],
    ['no typ', await signedAs(key.privateKey, { alg: 'ES256', jwk: key.jwk })],
    ['a jwk with its private member d', await dbscProof(key, bearer.challenge, { registration: true, header: { jwk: privateJwk } })],
    ['header jwk and claims key naming different keys', await dbscProof(key, bearer.challenge, { registration: true, claims: { key: rsa.jwk } })],
    ['signed by another key than its jwk', await dbscProof(await dbscKey(), bearer.challenge, { registration: true, header: { jwk: key.jwk } })],
    ['no key at all', await dbscProof(key, bearer.challenge)]
  ]
  const { browser: victim, session } = await victimLogin()
  const mark = example.events.length
  for (const [label, proof] of registrationForgeries) {
    t.comment(`registration, ${label}`)
    await refusedDbsc(t, await register(cookies({ [COOKIE]: bearer.refreshToken }), [proof]), { status: 400, code: INVALID_PROOF, sent: [bearer.refreshToken, proof, privateJwk.d as string] })
  }

  // The device refresh of a bound session, with a live challenge.
  const victimCookies = cookies({ [COOKIE]: jarValue(victim, COOKIE), [DEVICE]: jarValue(victim, DEVICE) })
  const live = session.cachedChallenge as string
  const liveClaims = { jti: live }
  const refreshForgeries: Array<[string, string]> = [
    ['alg none', `${encode({ typ: 'dbsc+jwt', alg: 'none' })}.${encode(liveClaims)}.`],
    ['HS256 keyed with the refresh secret', forge({ typ: 'dbsc+jwt', alg: 'HS256' }, liveClaims, REFRESH_SECRET)],
    ['HS256 keyed with the session key\'s JSON', forge({ typ: 'dbsc+jwt', alg: 'HS256' }, liveClaims, JSON.stringify(session.key.jwk))],
    ['HS256 keyed with the identifier', forge({ typ: 'dbsc+jwt', alg: 'HS256' }, liveClaims, session.id)],
    ['RS256 (the session key is EC)', await signedAs(rsa.privateKey, { alg: 'RS256', typ: 'dbsc+jwt' }, liveClaims)],
    ['EdDSA', await signedAs(ed.privateKey, { alg: 'EdDSA', typ: 'dbsc+jwt' }, liveClaims)],
    ['typ dpop+jwt, the session key', await dbscProof(session.key, live, { header: { typ: 'dpop+jwt' } })],
    ['a signature segment cut short', (await dbscProof(session.key, live)).slice(0, -4)]
  ]
  for (const [label, proof] of refreshForgeries) {
    t.comment(`device refresh, ${label}`)
    await refusedDbsc(t, await deviceRefresh(victimCookies, session.id, proof), { status: 400, code: INVALID_PROOF, sent: [proof] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated')

  // None of the challenges was spent: the honest proofs pass with them.
  const registered = await register(cookies({ [COOKIE]: bearer.refreshToken }), [await dbscProof(key, bearer.challenge, { registration: true })])
  granted(t, registered, identifierFor(sidOf(bearer.refreshToken), key), 'the honest registration')
  example.secrets.push(cookieOf(registered)?.value ?? '')
  granted(t, await deviceRefresh(victimCookies, session.id, await dbscProof(session.key, live)), session.id, 'the honest device refresh')
})

t.test('DB10 oversized headers: a proof over 4096 characters 400, an oversized session identifier 400, 40 KB 431 from Node; nothing spent', async (t) => {
  const bearer = await bearerLogin()
  const key = await dbscKey()
  const { browser: victim, session } = await victimLogin()
  const victimCookies = cookies({ [COOKIE]: jarValue(victim, COOKIE), [DEVICE]: jarValue(victim, DEVICE) })
  const live = session.cachedChallenge as string
  /** A validly signed proof padded to `length` characters or just above. */
  async function padded (signer: DbscKey, challenge: string, registration: boolean, length: number): Promise<string> {
    const base = await dbscProof(signer, challenge, { registration, claims: { pad: '' } })
    let pad = Math.max(0, Math.floor((length - base.length) * 3 / 4) - 2)
    for (;;) {
      const candidate = await dbscProof(signer, challenge, { registration, claims: { pad: 'x'.repeat(pad) } })
      if (candidate.length >= length) return candidate
      pad++
    }
  }
  const mark = example.events.length
  for (const length of [4097, 12_000]) {
    const registration = await padded(key, bearer.challenge, true, length)
    t.comment(`registration, a signed proof of ${registration.length} characters`)
    await refusedDbsc(t, await register(cookies({ [COOKIE]: bearer.refreshToken }), [registration]), { status: 400, code: INVALID_PROOF, message: /too long/, sent: [bearer.refreshToken, registration] })
    const refresh = await padded(session.key, live, false, length)
    t.comment(`device refresh, a signed proof of ${refresh.length} characters`)
    await refusedDbsc(t, await deviceRefresh(victimCookies, session.id, refresh), { status: 400, code: INVALID_PROOF, message: /too long/, sent: [refresh] })
  }
  const [sid, keyPart] = session.id.split('.') as [string, string]
  const identifiers: Array<[string, string]> = [
    ['a key part of 1401 characters', `${sid}.${'A'.repeat(1401)}`],
    ['a session id of 129 characters', `${'A'.repeat(129)}.${keyPart}`],
    ['5000 characters of garbage', 'A'.repeat(5000)]
  ]
  for (const [label, identifier] of identifiers) {
    t.comment(`device refresh, ${label}`)
    await refusedDbsc(t, await deviceRefresh(victimCookies, identifier, await dbscProof(session.key, live)), { status: 400, code: INVALID_PROOF, message: /session identifier/ })
  }
  // Past Node's header limit (16 KB), its parser answers 431 before the app runs.
  for (const [path, name] of [[REGISTRATION, 'secure-session-response'], [DEVICE_REFRESH, 'secure-session-response'], [DEVICE_REFRESH, 'sec-secure-session-id']] as const) {
    const huge = await send(example, 'POST', path, { headers: [['cookie', victimCookies], ['sec-secure-session-id', sfString(session.id)], [name, sfString('A'.repeat(40_000))]] })
    t.equal(huge.status, 431, `${path}, 40 KB ${name}: 431 from Node`)
    t.same(huge.setCookies, [], 'no cookie')
    t.notOk(huge.text.includes(jarValue(victim, COOKIE)), 'nothing echoed')
  }
  await alive(t, example)
  t.same(eventsSince(example, mark), [], 'nothing rotated')

  // A registration proof at the limit still passes, and neither challenge was spent.
  let atLimit = await padded(key, bearer.challenge, true, 4090)
  while (atLimit.length > 4096) atLimit = await padded(key, bearer.challenge, true, atLimit.length - 8)
  t.ok(atLimit.length <= 4096 && atLimit.length >= 4070, `a registration proof of ${atLimit.length} characters`)
  const registered = await register(cookies({ [COOKIE]: bearer.refreshToken }), [atLimit])
  granted(t, registered, identifierFor(sidOf(bearer.refreshToken), key), 'a registration proof at the limit')
  example.secrets.push(cookieOf(registered)?.value ?? '')
  granted(t, await deviceRefresh(victimCookies, session.id, await dbscProof(session.key, live)), session.id, 'the device refresh with the same challenge')
})

t.test('DB11 two Secure-Session-Response (or Sec-Secure-Session-Id) headers, or a list in one: 400, nothing spent', async (t) => {
  const bearer = await bearerLogin()
  const key = await dbscKey()
  const valid = await dbscProof(key, bearer.challenge, { registration: true })
  const other = await dbscProof(key, bearer.challenge, { registration: true, claims: { n: 2 } })
  const bearerCookie = cookies({ [COOKIE]: bearer.refreshToken })
  const registrationVariants: Array<[string, Headers]> = [
    ['two valid proofs', [['secure-session-response', sfString(valid)], ['secure-session-response', sfString(other)]]],
    ['the same proof twice, names in two cases', [['Secure-Session-Response', sfString(valid)], ['secure-session-response', sfString(valid)]]],
    ['a valid proof and an empty header', [['secure-session-response', sfString(valid)], ['secure-session-response', '']]],
    ['an empty header and a valid proof', [['secure-session-response', ''], ['secure-session-response', sfString(valid)]]],
    ['a list of two strings in one header', [['secure-session-response', `${sfString(valid)}, ${sfString(other)}`]]],
    ['the token unquoted', [['secure-session-response', valid]]]
  ]
  const { browser: victim, session } = await victimLogin()
  const mark = example.events.length
  for (const [label, headers] of registrationVariants) {
    t.comment(`registration, ${label}`)
    const reply = await send(example, 'POST', REGISTRATION, { headers: [['cookie', bearerCookie], ...headers] })
    await refusedDbsc(t, reply, { status: 400, code: INVALID_PROOF, message: /Secure-Session-Response|secure-session-response/i, sent: [bearer.refreshToken, valid, other] })
  }

  const victimCookies = cookies({ [COOKIE]: jarValue(victim, COOKIE), [DEVICE]: jarValue(victim, DEVICE) })
  const live = session.cachedChallenge as string
  const proof = await dbscProof(session.key, live)
  const second = await dbscProof(session.key, live, { claims: { n: 2 } })
  const id = sfString(session.id)
  const refreshVariants: Array<[string, Headers]> = [
    ['two valid proofs', [['sec-secure-session-id', id], ['secure-session-response', sfString(proof)], ['secure-session-response', sfString(second)]]],
    ['the same proof twice', [['sec-secure-session-id', id], ['secure-session-response', sfString(proof)], ['Secure-Session-Response', sfString(proof)]]],
    ['two session identifiers', [['sec-secure-session-id', id], ['sec-secure-session-id', id], ['secure-session-response', sfString(proof)]]],
    ['two session identifiers, one empty', [['sec-secure-session-id', ''], ['Sec-Secure-Session-Id', id], ['secure-session-response', sfString(proof)]]],
    ['the identifier unquoted', [['sec-secure-session-id', session.id], ['secure-session-response', sfString(proof)]]]
  ]
  for (const [label, headers] of refreshVariants) {
    t.comment(`device refresh, ${label}`)
    const reply = await send(example, 'POST', DEVICE_REFRESH, { headers: [['cookie', victimCookies], ...headers] })
    await refusedDbsc(t, reply, { status: 400, code: INVALID_PROOF, sent: [proof, second] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated')

  // The refusals came before the challenges were spent: the valid proofs alone pass.
  const registered = await register(bearerCookie, [valid])
  granted(t, registered, identifierFor(sidOf(bearer.refreshToken), key), 'the valid registration proof alone')
  example.secrets.push(cookieOf(registered)?.value ?? '')
  granted(t, await deviceRefresh(victimCookies, session.id, proof), session.id, 'the valid refresh proof alone')
})

t.test('DB12 a DPoP-bound session is not offered DBSC and cannot register (400 SESSION_ALREADY_BOUND); its key still works', async (t) => {
  const key = await dpopKey()
  const dbsc = await dbscKey()
  const login = await send(example, 'POST', '/auth/login', {
    headers: { dpop: await dpopProof(key, 'POST', `${example.base}/auth/login`) }, body: { username: USERNAME, password: PASSWORD }
  })
  t.equal(login.status, 200, 'a login with a DPoP proof')
  t.equal(login.json.tokenType, 'DPoP')
  const token = cookieOf(login)?.value as string
  example.secrets.push(token, login.json.accessToken as string)
  t.equal(token.split('.')[2], key.jkt, 'its refresh token names the DPoP key')
  t.equal(login.headers['secure-session-registration'], undefined, 'no DBSC offer')
  t.equal(cookieOf(login, DEVICE), undefined, 'no device cookie')

  const refreshed = await refreshWith(cookies({ [COOKIE]: token }), [['dpop', await dpopProof(key, 'POST', `${example.base}/auth/refresh`)]])
  t.equal(refreshed.status, 200, 'its refresh')
  t.equal(refreshed.headers['secure-session-registration'], undefined, 'no DBSC offer on its refresh either')
  const current = cookieOf(refreshed)?.value as string
  example.secrets.push(current, refreshed.json.accessToken as string)

  // A challenge offered to another (bearer) session, and a live refresh challenge of a DBSC session: refused before the proof.
  const bearer = await bearerLogin()
  const { session: dbscSession } = await victimLogin()
  const mark = example.events.length
  const attempts: Array<[string, string[], Headers]> = [
    ['no proof', [], []],
    ['a DBSC proof over another session\'s challenge', [await dbscProof(dbsc, bearer.challenge, { registration: true })], []],
    ['a DBSC proof over a DBSC session\'s refresh challenge', [await dbscProof(dbsc, dbscSession.cachedChallenge as string, { registration: true })], []],
    ['a DBSC proof and a DPoP proof of its key', [await dbscProof(dbsc, bearer.challenge, { registration: true })], [['dpop', await dpopProof(key, 'POST', `${example.base}${REGISTRATION}`)]]]
  ]
  for (const [label, proofs, extra] of attempts) {
    t.comment(label)
    await refusedDbsc(t, await register(cookies({ [COOKIE]: current }), proofs, extra), { status: 400, code: ALREADY_BOUND, sent: [current, ...proofs] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated')

  // A DBSC browser holding a DPoP-bound session (a page that logged in with a proof) registers nothing.
  const browser = new ScriptedBrowser(example.base)
  const viaBrowser = await replyOf(await browser.fetch('/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json', dpop: await dpopProof(key, 'POST', `${example.base}/auth/login`) },
    body: JSON.stringify({ username: USERNAME, password: PASSWORD })
  }))
  t.equal(viaBrowser.status, 200)
  remember(browser)
  example.secrets.push(viaBrowser.json.accessToken as string)
  t.same(browser.events, [], 'the browser was offered nothing and registered nothing')
  t.equal(browser.sessions.size, 0, 'no DBSC session')

  // The bearer session's challenge was not spent by the refusal: it registers.
  const own = await dbscKey()
  const registered = await register(cookies({ [COOKIE]: bearer.refreshToken }), [await dbscProof(own, bearer.challenge, { registration: true })])
  granted(t, registered, identifierFor(sidOf(bearer.refreshToken), own), 'the bearer session registers')
  example.secrets.push(cookieOf(registered)?.value ?? '')
  // And the DPoP session still refreshes with its key, still bound to it alone.
  const again = await refreshWith(cookies({ [COOKIE]: current }), [['dpop', await dpopProof(key, 'POST', `${example.base}/auth/refresh`)]])
  t.equal(again.status, 200, 'the DPoP session refreshes with its key')
  t.equal((cookieOf(again)?.value as string).split('.')[2], key.jkt, 'still its DPoP key')
  example.secrets.push(cookieOf(again)?.value ?? '', again.json.accessToken as string)
})

t.test('DB13 a device refresh whose identifier and refresh cookie do not match (another session, a bearer cookie, none) or a malformed identifier: 401 / 400, no cookie cleared', async (t) => {
  const { browser: victim, session } = await victimLogin()
  const { browser: thief, session: thiefSession } = await victimLogin(BOB) // the thief's own DBSC session
  const bearer = await bearerLogin()
  const victimToken = jarValue(victim, COOKIE)
  const thiefToken = jarValue(thief, COOKIE)
  const victimProof = await dbscProof(session.key, session.cachedChallenge as string)
  const thiefProof = await dbscProof(thiefSession.key, thiefSession.cachedChallenge as string)
  const mark = example.events.length
  const mismatched: Array<[string, string | undefined, string, string, string]> = [
    ['the victim\'s identifier, the thief\'s own bound cookie', cookies({ [COOKIE]: thiefToken }), session.id, thiefProof, INVALID_REFRESH],
    ['the thief\'s identifier, the victim\'s cookie', cookies({ [COOKIE]: victimToken }), thiefSession.id, thiefProof, INVALID_REFRESH],
    ['the victim\'s identifier, a bearer cookie', cookies({ [COOKIE]: bearer.refreshToken }), session.id, victimProof, INVALID_REFRESH],
    ['the victim\'s identifier, no refresh cookie (only the device cookie)', cookies({ [DEVICE]: jarValue(victim, DEVICE) }), session.id, victimProof, MISSING_REFRESH],
    ['the victim\'s identifier, no cookie at all', undefined, session.id, victimProof, MISSING_REFRESH]
  ]
  for (const [label, cookie, identifier, proof, code] of mismatched) {
    t.comment(label)
    await refusedDbsc(t, await deviceRefresh(cookie, identifier, proof), { status: 401, code, sent: [victimToken, thiefToken, bearer.refreshToken] })
  }
  const victimCookies = cookies({ [COOKIE]: victimToken })
  const edJwk = await exportJWK((await generateKeyPair('EdDSA')).publicKey)
  const keyPart = (members: JWK): string => Buffer.from(JSON.stringify(members)).toString('base64url')
  const malformed: Array<[string, string | undefined]> = [
    ['missing', undefined],
    ['no key part', session.id.split('.')[0] as string],
    ['a key part that is not JSON', `${session.id.split('.')[0] as string}.AAAA`],
    ['an Ed25519 key', `${session.id.split('.')[0] as string}.${keyPart({ crv: edJwk.crv, kty: edJwk.kty, x: edJwk.x })}`],
    ['a symmetric key', `${session.id.split('.')[0] as string}.${keyPart({ kty: 'oct', k: Buffer.from(REFRESH_SECRET).toString('base64url') })}`],
    ['three parts', `${session.id}.extra`]
  ]
  for (const [label, identifier] of malformed) {
    t.comment(`identifier ${label}`)
    await refusedDbsc(t, await deviceRefresh(victimCookies, identifier, victimProof), { status: 400, code: INVALID_PROOF, sent: [victimToken] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated')
  // Both browsers still renew their device cookies and refresh.
  for (const [label, browser, browserSession] of [['the victim', victim, session], ['the thief (her own session)', thief, thiefSession]] as const) {
    t.equal(await browser.refreshSession(browserSession), 'refreshed', `${label} renews the device cookie`)
    t.equal((await browserRefresh(browser)).status, 200, `${label} refreshes`)
  }
})

t.test('DB14 the challenge a device refresh hands out for the next one is live: after a 403 round trip, the next refresh (a cookie lifetime later) takes no 403', async (t) => {
  // Not an attack: the flow every browser goes through after its cached challenge went stale
  // (asleep past cookieMaxAge + 300 s). The 403 and the browser's signed retry come within the
  // same second, as they do on the wire; the retry's 200 must hand a challenge that is not the
  // one it just spent, or every later device refresh costs a 403 round trip.
  const { browser: victim, session } = await victimLogin()
  clock.advance((MAX_AGE + 301) * 1000)
  const before = victim.events.length
  t.equal(await victim.refreshSession(session), 'refreshed', 'the stale challenge: 403, then the fresh one signed: 200')
  const [challenged, renewed] = victim.events.slice(before)
  t.same([challenged?.status, renewed?.status], [403, 200], 'a 403 and a 200')
  const spent = challengeOf(await replyOf(new Response(null, { headers: challenged?.headers })))?.challenge
  const next = challengeOf(await replyOf(new Response(null, { headers: renewed?.headers })))?.challenge
  t.match(spent, CHALLENGE_SHAPE, 'the 403 handed a challenge')
  t.not(next, spent, 'the 200 hands a challenge other than the one its request spent')
  remember(victim)

  clock.advance(PAST_DEVICE_COOKIE)
  const later = victim.events.length
  const refreshed = await browserRefresh(victim)
  t.equal(refreshed.status, 200, 'she refreshes')
  t.same(victim.events.slice(later).map((event) => [event.kind, event.status]), [['refresh', 200]], 'her browser signed the challenge it cached and passed at once: no 403 round trip')
})

t.test('H6 no unhandled rejection during the DBSC cases', async (t) => {
  noIncidents(t, example)
})
