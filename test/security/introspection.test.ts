// Attacks on the RFC 7662 introspection endpoint (docs/design.md, «Token introspection endpoint»;
// the no-store rule from «Rules shared by the plugin routes»). Real HTTP against the example app,
// which registers the endpoint when INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET are
// set (examples/config.ts) and leaves `introspection.rateLimit` at the plugin's default, 600 a
// minute per client IP.
//
// The functional cases are test/introspect.test.ts's; here: a refused caller learns nothing (every
// refusal is the same bytes), the client secret is compared in constant time, nothing that is not
// live is active, and the per-IP limit holds.
import crypto, { createHash } from 'node:crypto'
import { syncBuiltinESMExports } from 'node:module'
import t, { type Test } from 'tap'
import {
  ACCESS_SECRET, alive, ALICE_ID, BOB, decodePayload, type Example, forge, login, logoutRequest, noIncidents, noLeak, refresh, refused,
  type Reply, type RequestOptions, send, sendRaw, startExample
} from './harness.js'
import { claimsOf, encode, headerOf, nowSeconds, randomId } from './forge.js'

const CLIENT_ID = 'orders-service'
const CLIENT_SECRET = 'kP3x9QzL1mW7vR2tY8uN4bC6dF0gH5jA-introspection'
const ENV = { INTROSPECTION_CLIENT_ID: CLIENT_ID, INTROSPECTION_CLIENT_SECRET: CLIENT_SECRET }
const INVALID_CLIENT = 'FST_TOKEN_AUTH_INVALID_CLIENT'
const BASIC_CHALLENGE = 'Basic realm="fastify-token-auth", charset="UTF-8"'
const PATH = '/auth/introspect'
/** The plugin's default `introspection.rateLimit.max`, which the example keeps. */
const DEFAULT_LIMIT = 600

/** RFC 6749 §2.3.1: id and secret each form-urlencoded, joined by a colon, then base64. */
function basic (id: string, secret: string): string {
  const formEncode = (text: string) => encodeURIComponent(text).replaceAll('%20', '+')
  return `Basic ${Buffer.from(`${formEncode(id)}:${formEncode(secret)}`).toString('base64')}`
}
const RIGHT = basic(CLIENT_ID, CLIENT_SECRET)

function secretsOf (example: Example): Example {
  // The secret, and the header that carries it, must never come back either.
  example.secrets.push(CLIENT_SECRET, RIGHT.slice('Basic '.length))
  return example
}

const example = secretsOf(await startExample(t, ENV))

type Authorization = string | null | Array<[string, string]>
type RequestBody = Record<string, unknown>

function headersOf (authorization: Authorization): Array<[string, string]> {
  if (authorization === null) return []
  return typeof authorization === 'string' ? [['authorization', authorization]] : authorization
}

/** The request of `introspect`: `{ token }` as JSON (or a raw form body); `null`: no Authorization. */
function requestOf (token: string, authorization: Authorization, form?: string): RequestOptions {
  const headers = [...headersOf(authorization)]
  if (form !== undefined) headers.push(['content-type', 'application/x-www-form-urlencoded'])
  return { headers, body: form ?? { token } }
}

/** `POST /auth/introspect` (see `requestOf`). */
function introspect (on: Example, token: string, authorization: Authorization = RIGHT, form?: string): Promise<Reply> {
  return send(on, 'POST', PATH, requestOf(token, authorization, form))
}

/**
 * The same request as `introspect`, answered as raw bytes with the Date header cut out: what a
 * caller could compare to tell two refusals apart.
 */
async function rawIntrospect (on: Example, token: string, authorization: Authorization, form?: string): Promise<string> {
  const raw = await sendRaw(on, 'POST', PATH, requestOf(token, authorization, form))
  return raw.toString('latin1').replace(/\r\ndate: [^\r]*/i, '')
}

/** Every answer of the endpoint, success or refusal: never cached (RFC 6749 §5.1, RFC 7662 §4). */
function noStore (t: Test, reply: Reply): void {
  t.equal(reply.headers['cache-control'], 'no-store', 'Cache-Control: no-store')
  t.equal(reply.headers.pragma, 'no-cache', 'Pragma: no-cache')
}

/** A refused caller: 401 invalid_client, the Basic challenge, no-store, and not a word about the token. */
async function refusedClient (t: Test, on: Example, reply: Reply, sent: string[]): Promise<void> {
  await refused(t, on, reply, { status: 401, code: INVALID_CLIENT, challenge: BASIC_CHALLENGE, sent })
  noStore(t, reply)
  t.notOk('active' in (reply.json ?? {}), 'no "active" in the body')
  t.notMatch(reply.text, /active|eyJ|refresh_token|Bearer/, 'nothing about the token')
}

/** RFC 7662 §2.2: 200 and exactly `{"active":false}`, never cached. */
function inactive (t: Test, on: Example, reply: Reply, sent: string[]): void {
  t.equal(reply.status, 200, 'answers 200')
  t.equal(reply.text, '{"active":false}', '{ active: false } and nothing else')
  noStore(t, reply)
  noLeak(t, on, reply, sent)
}

t.test('I1 no Authorization header: 401 invalid_client, a Basic challenge, and the same bytes for a live token as for garbage', async (t) => {
  const session = await login(example)
  const reply = await introspect(example, session.accessToken, null)
  await refusedClient(t, example, reply, [session.accessToken])
  t.equal(reply.json.message, 'Client authentication failed')
  // Authentication comes before the body is read: the answer cannot depend on the token.
  const live = await rawIntrospect(example, session.accessToken, null)
  const garbage = await rawIntrospect(example, 'garbage', null)
  const liveRefresh = await rawIntrospect(example, session.refreshToken, null)
  t.match(live, /^HTTP\/1\.1 401 /, 'raw answer is a 401')
  t.equal(garbage, live, 'garbage and a live access token: byte-identical answers (Date aside)')
  t.equal(liveRefresh, live, 'a live refresh token: byte-identical too')
  t.equal((await introspect(example, session.accessToken)).json.active, true, 'control: the same token with the right credentials is active')
})

t.test('I2 every wrong or malformed credential is the same 401, byte for byte (Date aside)', async (t) => {
  const session = await login(example, BOB)
  const token = session.accessToken
  const b64 = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`
  const lastWrong = `${CLIENT_SECRET.slice(0, -1)}${CLIENT_SECRET.endsWith('x') ? 'y' : 'x'}`
  const attempts: Array<[string, Authorization, string?]> = [
    ['no Authorization header', null],
    ['wrong secret, same length', basic(CLIENT_ID, lastWrong)],
    ['wrong client id, right secret', basic('billing-service', CLIENT_SECRET)],
    ['right id, secret one character short', basic(CLIENT_ID, CLIENT_SECRET.slice(0, -1))],
    ['right id, secret one character long', basic(CLIENT_ID, `${CLIENT_SECRET}x`)],
    ['right id, a one-character secret', basic(CLIENT_ID, 'k')],
    ['right id, empty secret', basic(CLIENT_ID, '')],
    ['empty id and secret', b64(':')],
    ['id and secret swapped', basic(CLIENT_SECRET, CLIENT_ID)],
    ['the id in the wrong case', basic(CLIENT_ID.toUpperCase(), CLIENT_SECRET)],
    ['not base64', 'Basic ???'],
    ['base64 without a colon', b64(`${CLIENT_ID}${CLIENT_SECRET}`)],
    ['bad percent-encoding', b64(`%E0%A4%A:${CLIENT_SECRET}`)],
    ['Basic with no credentials', 'Basic'],
    ['the credentials with no scheme', RIGHT.slice('Basic '.length)],
    ['Bearer instead of Basic', `Bearer ${token}`],
    ['Bearer carrying the Basic credentials', `Bearer ${RIGHT.slice('Basic '.length)}`],
    ['two Authorization headers, both wrong', [['authorization', basic(CLIENT_ID, lastWrong)], ['authorization', basic('other', CLIENT_SECRET)]]],
    ['two Authorization headers, a wrong one first', [['authorization', basic(CLIENT_ID, lastWrong)], ['authorization', RIGHT]]],
    // Node keeps only the first of repeated headers: the route must see that there were two.
    ['two Authorization headers, the right one first', [['authorization', RIGHT], ['authorization', basic(CLIENT_ID, lastWrong)]]],
    ['the right Authorization header twice', [['authorization', RIGHT], ['authorization', RIGHT]]],
    // RFC 6749 §2.3.1 also allows credentials in the body; the plugin takes only HTTP Basic, read before the body.
    ['credentials in the form body instead', null, `token=${encodeURIComponent(token)}&client_id=${CLIENT_ID}&client_secret=${CLIENT_SECRET}`]
  ]
  let reference: string | undefined
  for (const [label, authorization, form] of attempts) {
    t.comment(label)
    await refusedClient(t, example, await introspect(example, token, authorization, form), [token])
    const raw = await rawIntrospect(example, token, authorization, form)
    reference ??= raw
    t.equal(raw, reference, `${label}: the very bytes of the first refusal`)
  }
  t.match(reference, /^HTTP\/1\.1 401 Unauthorized\r\n/)
  t.notMatch(reference, /\r\ndate:/i, 'only the Date header was cut')
  t.equal((await introspect(example, token)).json.active, true, 'control: the right credentials see the token active')
})

t.test('I3 the secret comparison is crypto.timingSafeEqual over SHA-256 digests, whatever the guess', async (t) => {
  // A structural check rather than a stopwatch: every request is watched through the
  // `timingSafeEqual` the route imported (an ESM live binding of node:crypto, so replacing the
  // module's function and syncing the builtin exports reaches it). It fails if the comparison
  // becomes `===` or any other non-constant-time compare (no call at all), if the secret is
  // compared raw (arguments not 32-byte digests, or a length-mismatch RangeError, a 500), or if
  // the id check short-circuits the secret's (one call instead of two when the id is wrong).
  const original = crypto.timingSafeEqual
  const calls: Buffer[][] = []
  const restore = () => {
    crypto.timingSafeEqual = original
    syncBuiltinESMExports()
  }
  t.teardown(restore)
  crypto.timingSafeEqual = function spy (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView): boolean {
    calls.push([Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)])
    return original(a, b)
  }
  syncBuiltinESMExports()

  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
  const firstWrong = `${CLIENT_SECRET.startsWith('x') ? 'y' : 'x'}${CLIENT_SECRET.slice(1)}`
  const lastWrong = `${CLIENT_SECRET.slice(0, -1)}${CLIENT_SECRET.endsWith('x') ? 'y' : 'x'}`
  const guesses: Array<[string, string, string, number]> = [
    ['a secret of length 1', CLIENT_ID, 'k', 401],
    ['full length, the first character wrong', CLIENT_ID, firstWrong, 401],
    ['full length, the last character wrong', CLIENT_ID, lastWrong, 401],
    ['the right secret but its last character', CLIENT_ID, CLIENT_SECRET.slice(0, -1), 401],
    ['the right secret and one more character', CLIENT_ID, `${CLIENT_SECRET}k`, 401],
    ['an empty secret', CLIENT_ID, '', 401],
    ['a wrong id with the right secret', 'billing-service', CLIENT_SECRET, 401],
    ['a wrong id with a wrong secret', 'billing-service', 'k', 401],
    ['the right credentials', CLIENT_ID, CLIENT_SECRET, 200]
  ]
  const configured = [sha256(CLIENT_ID), sha256(CLIENT_SECRET)]
  try {
    for (const [label, id, secret, status] of guesses) {
      calls.length = 0
      // `x` is neither kind of token: the handler compares nothing of its own.
      const reply = await introspect(example, 'x', basic(id, secret))
      const seen = calls.map((pair) => pair.map((buffer) => buffer.toString('hex')))
      t.equal(reply.status, status, `${label}: ${status}`)
      t.equal(seen.length, 2, `${label}: timingSafeEqual called twice (id and secret), for the one configured client`)
      t.ok(calls.length > 0 && calls.every(([a, b]) => a?.length === 32 && b?.length === 32), `${label}: on 32-byte digests only`)
      t.same(seen.flat().sort(), [sha256(id), sha256(secret), ...configured].sort(), `${label}: the SHA-256 of what was presented against the configured client's`)
    }
    // A header that decodes to no credentials at all compares nothing and is refused like the rest.
    calls.length = 0
    t.equal((await introspect(example, 'x', 'Basic ???')).status, 401)
  } finally {
    restore()
  }
  t.equal(crypto.timingSafeEqual, original, 'crypto restored')
})

t.test('I4 right credentials: nothing that is not live is active; 200, never 500; no-store every time', async (t) => {
  // An access token right after logout: its session is gone from the store.
  const loggedOut = await login(example)
  t.equal((await introspect(example, loggedOut.accessToken)).json.active, true, 'control: active before the logout')
  t.equal((await logoutRequest(example, loggedOut.refreshToken)).status, 204)
  inactive(t, example, await introspect(example, loggedOut.accessToken), [loggedOut.accessToken])
  inactive(t, example, await introspect(example, loggedOut.refreshToken), [loggedOut.refreshToken])

  // A refresh token once rotated: only its successor is current.
  const first = await login(example, BOB)
  const active = await introspect(example, first.refreshToken)
  t.match(active.json, { active: true, token_type: 'refresh_token' }, 'control: the current refresh token is active')
  noLeak(t, example, active, [first.refreshToken])
  noStore(t, active)
  const next = await refresh(example, first.refreshToken)
  inactive(t, example, await introspect(example, first.refreshToken), [first.refreshToken])
  const successor = await introspect(example, next.refreshToken)
  t.equal(successor.json.active, true, 'its successor is')
  noLeak(t, example, successor, [next.refreshToken])

  // Forgeries, and a validly signed token of a session that never existed.
  const live = await login(example)
  const header = headerOf(live.accessToken)
  const claims = claimsOf(live.accessToken)
  const [, , signature] = live.accessToken.split('.')
  const sid = decodePayload(live.accessToken).sid as string
  const [, user] = live.refreshToken.split('.')
  const forgeries: Array<[string, string]> = [
    ['an access token signed with a key not ours', forge(header, claims, randomId() + randomId())],
    ['an access token with an edited payload and its signature kept', `${encode(header)}.${encode({ ...claims, sub: 'user-2', role: 'admin' })}.${signature as string}`],
    ['our key, a session that never existed', forge(header, { ...claims, sid: randomId(), jti: randomId() }, ACCESS_SECRET)],
    ['our key, expired', forge(header, { ...claims, iat: nowSeconds() - 7200, exp: nowSeconds() - 3600 }, ACCESS_SECRET)],
    ['alg none', `${encode({ alg: 'none', typ: 'at+jwt' })}.${encode(claims)}.`],
    ['a refresh token naming a live session, with a made-up id and tag', `${sid}.${user as string}.${randomId().slice(0, 22)}${randomId().slice(0, 22)}`],
    ['a live refresh token with its tag changed', `${live.refreshToken.slice(0, -2)}${live.refreshToken.endsWith('AA') ? 'BB' : 'AA'}`],
    ['a legacy JWT refresh token signed with a key not ours', forge({ alg: 'HS256', typ: 'rt+jwt' }, { sub: ALICE_ID, sid, jti: randomId(), iat: nowSeconds(), exp: nowSeconds() + 600 }, randomId() + randomId())]
  ]
  const garbage: Array<[string, string]> = [
    ['garbage', 'not-a-token'],
    ['a dot', '.'],
    ['three dots', 'a.b.c'],
    ['unicode', '\u{1F4A5}\u0000\uFFFF'],
    ['JSON', '{"active":true}'],
    ['8192 characters, the longest accepted', 'A'.repeat(8192)],
    ['8192 characters of dots and segments', `${'eyJ'.repeat(1000)}.${'a'.repeat(4000)}.${'b'.repeat(1190)}`]
  ]
  for (const [label, token] of [...forgeries, ...garbage]) {
    t.comment(label)
    inactive(t, example, await introspect(example, token), [token])
  }
  // A form body, as RFC 7662 §2.1 sends it.
  inactive(t, example, await introspect(example, '', RIGHT, 'token=not-a-token&token_type_hint=access_token'), [])
  t.equal((await introspect(example, live.accessToken)).json.active, true, 'the forgeries changed nothing: the real token is active')

  // Requests that are not introspection requests: coded 4xx, still no-store, never 500.
  const malformed: Array<[string, RequestBody, number, string]> = [
    ['a token over 8192 characters', { token: 'A'.repeat(8193) }, 400, 'FST_ERR_VALIDATION'],
    ['no token', {}, 400, 'FST_ERR_VALIDATION'],
    ['an empty token', { token: '' }, 400, 'FST_ERR_VALIDATION'],
    ['a token that is a number', { token: 42 }, 400, 'FST_ERR_VALIDATION'],
    ['an unknown field', { token: 'x', active: true }, 400, 'FST_ERR_VALIDATION'],
    ['a body over 16 KiB', { token: 'A'.repeat(20_000) }, 413, 'FST_ERR_CTP_BODY_TOO_LARGE']
  ]
  for (const [label, body, status, code] of malformed) {
    t.comment(label)
    const reply = await send(example, 'POST', PATH, { headers: { authorization: RIGHT }, body })
    await refused(t, example, reply, { status, code })
    noStore(t, reply)
    t.notOk('active' in (reply.json ?? {}))
  }
})

t.test('I5 the per-IP limit: the 601st request in a minute is 429 INTROSPECTION_THROTTLED, right credentials or not', async (t) => {
  // Its own instance: the limit is per client IP, and every request here comes from 127.0.0.1.
  const limited = secretsOf(await startExample(t, ENV))
  const statuses: number[] = []
  // Failed authentications count (the limit comes before authentication): guessing is throttled.
  for (let sent = 0; sent < DEFAULT_LIMIT; sent += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => introspect(limited, 'x', basic(CLIENT_ID, 'a-guess'))))
    statuses.push(...batch.map((reply) => reply.status))
  }
  t.equal(statuses.length, DEFAULT_LIMIT)
  t.same([...new Set(statuses)], [401], `the first ${DEFAULT_LIMIT} guesses: 401`)
  for (const [label, authorization] of [['the right credentials', RIGHT], ['a wrong secret', basic(CLIENT_ID, 'a-guess')], ['none', null]] as const) {
    t.comment(label)
    const reply = await introspect(limited, 'x', authorization)
    await refused(t, limited, reply, { status: 429, code: 'FST_TOKEN_AUTH_INTROSPECTION_THROTTLED' })
    noStore(t, reply)
    const retryAfter = Number(reply.headers['retry-after'])
    t.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After within the minute (${reply.headers['retry-after']})`)
    t.notOk('www-authenticate' in reply.headers, 'no challenge: a throttled caller is not told whether its credentials were right')
    t.notOk('active' in (reply.json ?? {}))
  }
  // The limit is the endpoint's alone: login and the app still answer.
  t.equal((await login(limited)).reply.status, 200, 'login is not throttled by it')
  await alive(t, limited)
  // And another instance (another counter) still introspects: the limit is not a global switch.
  t.equal((await introspect(example, 'x')).text, '{"active":false}')
  noIncidents(t, limited)
})

t.test('H6 no unhandled rejection during the introspection cases', async (t) => {
  noIncidents(t, example)
})
