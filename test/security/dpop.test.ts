// Checklist group DP: sender-constrained sessions (RFC 9449; docs/design.md, «Sender-constrained
// sessions (DPoP)», the login, refresh and logout tables of «HTTP contract» and the DPoP table of
// «The `authenticate` hook»). Real HTTP against the example app with DPOP=optional (and
// DPOP=required, DPOP_NONCE=true where a case needs it); proofs are signed by jose, a third-party
// signer, or forged by hand where no honest signer would make them.
//
// The thief of these cases holds a copy of the victim's tokens (cookie jar, log, proxy) and keys
// of her own, never the victim's private key. Ids are DP1..DPn: group D is rotation's.
//
// Token endpoints (login, refresh, reauthenticate) refuse a proof with 400 and no
// WWW-Authenticate (RFC 9449 §5), `authenticate` with 401 and a `DPoP error="…"` challenge
// (§7.1). A refusal of a proof is decided before the store is asked for the session: nothing
// rotates, nothing is reported as theft, and the victim's next request with her key passes.
import { createHash, createPublicKey, type JsonWebKey as NodeJwk, randomBytes, randomUUID } from 'node:crypto'
import { exportJWK, type JWK, SignJWT } from 'jose'
import t, { type Test } from 'tap'
import { DpopNonces } from '../../lib/dpop/nonce.js'
import { DPOP_ALGORITHMS } from '../../lib/dpop/proof.js'
import { type DpopKey, dpopKey, proof, type ProofOptions } from '../dpop-helpers.js'
import {
  alive, BOB, BOB_PASSWORD, clearsCookie, COOKIE, cookieOf, decodePayload, eventsSince, type Example, forge, noIncidents,
  noLeak, noTokenIssued, PASSWORD, type Reply, refused, send, startExample, USERNAME
} from './harness.js'
import { encode, nowSeconds } from './forge.js'

const example = await startExample(t, { DPOP: 'optional' })

const INVALID_PROOF = 'FST_TOKEN_AUTH_INVALID_DPOP_PROOF'
const INVALID_TOKEN = 'FST_TOKEN_AUTH_INVALID_TOKEN'
const INVALID_REFRESH = 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'
const DPOP_REQUIRED = 'FST_TOKEN_AUTH_DPOP_REQUIRED'
const USE_NONCE = 'FST_TOKEN_AUTH_USE_DPOP_NONCE'
/** The example keeps the default `dpopAlgorithms` (all of them): the `algs` of every DPoP challenge. */
const ALGS = `algs="${DPOP_ALGORITHMS.join(' ')}"`
const NONCE_FORMAT = /^[A-Za-z0-9_-]{27}$/

type Headers = Array<[string, string]>

/** The proof's `htu`: the example's own origin (the Host the harness sends) and `path`. */
const urlOf = (ex: Example, path: string): string => `${ex.base}${path}`

/** A jose-signed proof for `method` on the example's `path`. */
async function proofFor (ex: Example, key: DpopKey, method: string, path: string, options: ProofOptions = {}): Promise<string> {
  return await proof(key, method, urlOf(ex, path), options)
}

/** A proof whose protected header is `header` verbatim (jose signs; nothing checks the header). */
async function signedWithHeader (key: DpopKey, header: Record<string, unknown>, claims: Record<string, unknown>): Promise<string> {
  return await new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.jwk, ...header }).sign(key.privateKey)
}

/** RFC 9449 §4.2 claims for a request to the example, as an honest client writes them. */
function claimsFor (ex: Example, method: string, path: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { jti: randomUUID(), htm: method, htu: urlOf(ex, path), iat: nowSeconds(), ...extra }
}

const ath = (accessToken: string): string => createHash('sha256').update(accessToken).digest('base64url')

interface Session {
  reply: Reply
  accessToken: string
  refreshToken: string
}

function dpopHeaders (dpop: string | string[] | undefined): Headers {
  if (dpop === undefined) return []
  return (Array.isArray(dpop) ? dpop : [dpop]).map((value): [string, string] => ['dpop', value])
}

/** POST /auth/login as alice (or bob) with the given `DPoP` header(s). */
async function loginWith (ex: Example, dpop?: string | string[], username = USERNAME): Promise<Reply> {
  return await send(ex, 'POST', '/auth/login', {
    headers: dpopHeaders(dpop), body: { username, password: username === BOB ? BOB_PASSWORD : PASSWORD }
  })
}

/** The tokens of a 200, recorded as secrets no error body may echo; throws otherwise. */
function sessionOf (ex: Example, reply: Reply, what: string): Session {
  if (reply.status !== 200) throw new Error(`${what} answered ${reply.status}: ${reply.text}`)
  const session = { reply, accessToken: reply.json.accessToken as string, refreshToken: cookieOf(reply)?.value ?? '' }
  ex.secrets.push(session.accessToken, session.refreshToken)
  return session
}

/** A session bound to `key` (a login with its proof). */
async function boundLogin (ex: Example, key: DpopKey, username = USERNAME): Promise<Session> {
  const session = sessionOf(ex, await loginWith(ex, await proofFor(ex, key, 'POST', '/auth/login'), username), 'bound login')
  if (session.reply.json.tokenType !== 'DPoP') throw new Error(`a login with a proof answered tokenType ${session.reply.json.tokenType}`)
  return session
}

/** POST /auth/refresh with the refresh cookie and the given `DPoP` header(s). */
async function refreshWith (ex: Example, refreshToken: string, dpop?: string | string[]): Promise<Reply> {
  return await send(ex, 'POST', '/auth/refresh', { headers: [['cookie', `${COOKIE}=${refreshToken}`], ...dpopHeaders(dpop)] })
}

/** The honest refresh: a fresh proof of `key`. */
async function keyRefresh (ex: Example, refreshToken: string, key: DpopKey): Promise<Reply> {
  return await refreshWith(ex, refreshToken, await proofFor(ex, key, 'POST', '/auth/refresh'))
}

/** GET `path` (default /me) with `Authorization: <authorization>` and the given `DPoP` header(s). */
async function resource (ex: Example, authorization: string, dpop?: string | string[], path = '/me'): Promise<Reply> {
  return await send(ex, 'GET', path, { headers: [['authorization', authorization], ...dpopHeaders(dpop)] })
}

/** The honest protected request: `DPoP <token>` and a fresh proof of `key` with its `ath`. */
async function keyMe (ex: Example, accessToken: string, key: DpopKey, path = '/me'): Promise<Reply> {
  return await resource(ex, `DPoP ${accessToken}`, await proofFor(ex, key, 'GET', path, { accessToken }), path)
}

/** A token endpoint's refusal of a proof: 400 (by default), the code, no challenge, the cookie untouched, plus the global checks. */
async function refusedAtTokenEndpoint (
  t: Test, ex: Example, reply: Reply, expected: { code?: string, status?: number, message?: RegExp, sent?: string[] }
): Promise<void> {
  await refused(t, ex, reply, { status: expected.status ?? 400, code: expected.code ?? INVALID_PROOF, sent: expected.sent ?? [] })
  t.equal(reply.headers['www-authenticate'], undefined, 'a token endpoint sends no WWW-Authenticate')
  t.equal(cookieOf(reply), undefined, 'the refresh cookie is neither set nor cleared')
  if (expected.message !== undefined) t.match(reply.json?.message, expected.message, 'the message names the failed check')
}

/** `authenticate`'s refusal: 401, the code, `DPoP error="<error>", error_description="…", algs="…"`, no cookie, plus the global checks. */
async function refusedAtResource (
  t: Test, ex: Example, reply: Reply, expected: { code?: string, error?: string, description?: RegExp, sent: string[] }
): Promise<void> {
  await refused(t, ex, reply, { status: 401, code: expected.code ?? INVALID_PROOF, sent: expected.sent })
  const error = expected.error ?? 'invalid_dpop_proof'
  const challenge = reply.headers['www-authenticate'] ?? ''
  t.match(challenge, new RegExp(`^DPoP error="${error}", error_description="[^"]+", ${ALGS}$`), `WWW-Authenticate: DPoP error="${error}"`)
  if (expected.description !== undefined) t.match(/error_description="([^"]*)"/.exec(challenge)?.[1], expected.description, 'the description names the failed check')
  t.same(reply.setCookies, [], 'no cookie')
}

/** The 200 of a token endpoint for a bound session: tokens of `key`, successor named by its thumbprint. */
function boundTokens (t: Test, ex: Example, reply: Reply, key: DpopKey, what: string): Session {
  t.equal(reply.status, 200, `${what}: 200`)
  const session = sessionOf(ex, reply, what)
  t.equal(reply.json.tokenType, 'DPoP', `${what}: tokenType DPoP`)
  t.same(decodePayload(session.accessToken).cnf, { jkt: key.jkt }, `${what}: the access token is bound to the key`)
  t.equal(session.refreshToken.split('.')[2], key.jkt, `${what}: the refresh token names the same key`)
  return session
}

t.test('DP1 a stolen bound refresh token without the key (no proof; a proof by the thief\'s key): 400, cookie untouched, nothing rotated, no theft declared', async (t) => {
  const victimKey = await dpopKey()
  const thiefKey = await dpopKey()
  const victim = await boundLogin(example, victimKey)
  const mark = example.events.length

  const noProof = await refreshWith(example, victim.refreshToken)
  await refusedAtTokenEndpoint(t, example, noProof, { message: /send a DPoP proof/, sent: [victim.refreshToken] })

  const thiefProof = await proofFor(example, thiefKey, 'POST', '/auth/refresh')
  const byThief = await refreshWith(example, victim.refreshToken, thiefProof)
  await refusedAtTokenEndpoint(t, example, byThief, { message: /not signed with the key this session is bound to/, sent: [victim.refreshToken, thiefProof] })

  // The thief's own key with an EdDSA proof (another key type) changes nothing.
  const edKey = await dpopKey('EdDSA')
  const edProof = await proofFor(example, edKey, 'POST', '/auth/refresh')
  await refusedAtTokenEndpoint(t, example, await refreshWith(example, victim.refreshToken, edProof), { sent: [victim.refreshToken, edProof] })

  t.same(eventsSince(example, mark), [], 'nothing rotated, revoked or reported as reuse')
  // The victim's token was never spent: her next refresh is a first use, not a grace answer or a recovery.
  const next = await keyRefresh(example, victim.refreshToken, victimKey)
  boundTokens(t, example, next, victimKey, 'the victim\'s refresh')
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace, event.payload.recovered]), [['refresh', false, false]], 'a plain rotation')
})

t.test('DP2 a stolen bound access token without the key: as Bearer 401 invalid_token; as DPoP without a proof or with the thief\'s key 401 invalid_dpop_proof', async (t) => {
  const victimKey = await dpopKey()
  const thiefKey = await dpopKey()
  const victim = await boundLogin(example, victimKey)

  const asBearer = await resource(example, `Bearer ${victim.accessToken}`)
  await refusedAtResource(t, example, asBearer, { code: INVALID_TOKEN, error: 'invalid_token', description: /bound to a key/, sent: [victim.accessToken] })

  // A proof alongside the Bearer scheme does not make it acceptable.
  const bearerWithProof = await resource(example, `Bearer ${victim.accessToken}`, await proofFor(example, thiefKey, 'GET', '/me', { accessToken: victim.accessToken }))
  await refusedAtResource(t, example, bearerWithProof, { code: INVALID_TOKEN, error: 'invalid_token', sent: [victim.accessToken] })

  const noProof = await resource(example, `DPoP ${victim.accessToken}`)
  await refusedAtResource(t, example, noProof, { description: /proof is required/, sent: [victim.accessToken] })

  // The thief signs a perfectly valid proof (method, URL, ath, fresh jti) with her own key.
  const thiefProof = await proofFor(example, thiefKey, 'GET', '/me', { accessToken: victim.accessToken })
  const byThief = await resource(example, `DPoP ${victim.accessToken}`, thiefProof)
  await refusedAtResource(t, example, byThief, { description: /not signed with the key this token is bound to/, sent: [victim.accessToken, thiefProof] })

  // The scheme in lower case changes nothing.
  const lowerScheme = await resource(example, `dpop ${victim.accessToken}`, await proofFor(example, thiefKey, 'GET', '/me', { accessToken: victim.accessToken }))
  await refusedAtResource(t, example, lowerScheme, { sent: [victim.accessToken] })

  const ok = await keyMe(example, victim.accessToken, victimKey)
  t.equal(ok.status, 200, 'the victim, with her key, is served')
  t.same(ok.json, { id: 'user-1', username: USERNAME })
})

t.test('DP3 a replayed proof on refresh (the same bytes; a new signature with the same jti): 400, cookie untouched, the successor not spent, no theft', async (t) => {
  const key = await dpopKey()
  const session = await boundLogin(example, key)
  const captured = await proofFor(example, key, 'POST', '/auth/refresh')
  const first = boundTokens(t, example, await refreshWith(example, session.refreshToken, captured), key, 'the first refresh')
  const mark = example.events.length

  // Replayed with the successor (the thief has the cookie jar and a captured proof).
  const replay = await refreshWith(example, first.refreshToken, captured)
  await refusedAtTokenEndpoint(t, example, replay, { message: /used before/, sent: [first.refreshToken, captured] })
  // Replayed with the predecessor: refused for the proof before the store could call it reuse.
  const replayOld = await refreshWith(example, session.refreshToken, captured)
  await refusedAtTokenEndpoint(t, example, replayOld, { message: /used before/, sent: [session.refreshToken, captured] })
  // The victim's key re-signing the same jti (a new iat, a new signature) is still the same proof.
  const { jti } = JSON.parse(Buffer.from(captured.split('.')[1] as string, 'base64url').toString()) as { jti: string }
  const sameJti = await proofFor(example, key, 'POST', '/auth/refresh', { claims: { jti, iat: nowSeconds() - 1 } })
  t.not(sameJti, captured, 'a different proof text')
  await refusedAtTokenEndpoint(t, example, await refreshWith(example, first.refreshToken, sameJti), { message: /used before/, sent: [first.refreshToken, sameJti] })

  t.same(eventsSince(example, mark), [], 'nothing rotated, revoked or reported as reuse')
  boundTokens(t, example, await keyRefresh(example, first.refreshToken, key), key, 'the successor with a fresh proof')
})

t.test('DP4 a replayed proof on a protected request (the same bytes; the same jti re-signed): 401 invalid_dpop_proof', async (t) => {
  const key = await dpopKey()
  const session = await boundLogin(example, key)
  const captured = await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken })
  t.equal((await resource(example, `DPoP ${session.accessToken}`, captured)).status, 200, 'the first use passes')

  const replay = await resource(example, `DPoP ${session.accessToken}`, captured)
  await refusedAtResource(t, example, replay, { description: /used before/, sent: [session.accessToken, captured] })
  const { jti } = JSON.parse(Buffer.from(captured.split('.')[1] as string, 'base64url').toString()) as { jti: string }
  const sameJti = await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken, claims: { jti, iat: nowSeconds() - 2 } })
  await refusedAtResource(t, example, await resource(example, `DPoP ${session.accessToken}`, sameJti), { description: /used before/, sent: [session.accessToken, sameJti] })
  t.equal((await keyMe(example, session.accessToken, key)).status, 200, 'a fresh proof passes')
})

t.test('DP5 a proof for another method (htm): refused on refresh (400) and on a protected request (401)', async (t) => {
  const key = await dpopKey()
  const session = await boundLogin(example, key)
  const mark = example.events.length
  for (const htm of ['GET', 'post', 'PUT', '']) {
    const wrong = await proofFor(example, key, 'POST', '/auth/refresh', { claims: { htm } })
    t.comment(`refresh with htm ${JSON.stringify(htm)}`)
    await refusedAtTokenEndpoint(t, example, await refreshWith(example, session.refreshToken, wrong), { message: /htm/, sent: [session.refreshToken, wrong] })
  }
  for (const htm of ['POST', 'get', 'HEAD']) {
    const wrong = await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken, claims: { htm } })
    t.comment(`GET /me with htm ${htm}`)
    await refusedAtResource(t, example, await resource(example, `DPoP ${session.accessToken}`, wrong), { description: /htm/, sent: [session.accessToken, wrong] })
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated')
  boundTokens(t, example, await keyRefresh(example, session.refreshToken, key), key, 'the right method')
})

t.test('DP6 a proof for another URL (htu: other path, host, port, scheme): refused; a URL that differs only in its query still matches', async (t) => {
  const key = await dpopKey()
  let session = await boundLogin(example, key)
  const mark = example.events.length
  const otherUrls: Array<[string, string]> = [
    ['another path', urlOf(example, '/auth/login')],
    ['a trailing slash', urlOf(example, '/auth/refresh/')],
    ['another host', `http://localhost:${example.port}/auth/refresh`],
    ['another port', `http://127.0.0.1:${example.port === 65535 ? 65534 : example.port + 1}/auth/refresh`],
    ['another scheme', `https://127.0.0.1:${example.port}/auth/refresh`],
    ['a relative URL', '/auth/refresh'],
    ['not an http URL', `ftp://127.0.0.1:${example.port}/auth/refresh`]
  ]
  for (const [label, htu] of otherUrls) {
    const wrong = await proofFor(example, key, 'POST', '/auth/refresh', { claims: { htu } })
    t.comment(`refresh, ${label}`)
    await refusedAtTokenEndpoint(t, example, await refreshWith(example, session.refreshToken, wrong), { message: /htu/, sent: [session.refreshToken, wrong] })
  }
  // A proof made for GET /admin (same key, same token, right ath) is no proof for GET /me.
  const forAdmin = await proofFor(example, key, 'GET', '/admin', { accessToken: session.accessToken })
  await refusedAtResource(t, example, await resource(example, `DPoP ${session.accessToken}`, forAdmin), { description: /htu/, sent: [session.accessToken, forAdmin] })
  const otherHost = await proof(key, 'GET', `http://localhost:${example.port}/me`, { accessToken: session.accessToken })
  await refusedAtResource(t, example, await resource(example, `DPoP ${session.accessToken}`, otherHost), { description: /htu/, sent: [session.accessToken, otherHost] })
  t.same(eventsSince(example, mark), [], 'nothing rotated')

  // §4.3: query and fragment are not compared; scheme and host are compared normalised.
  const withQuery = await proof(key, 'POST', `${urlOf(example, '/auth/refresh')}?from=tab#x`)
  session = boundTokens(t, example, await refreshWith(example, session.refreshToken, withQuery), key, 'a proof whose htu carries a query')
  const bareProof = await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken })
  t.equal((await resource(example, `DPoP ${session.accessToken}`, bareProof, '/me?tab=2')).status, 200, 'a request with a query, a proof without')
  const otherQuery = await proof(key, 'GET', `${urlOf(example, '/me')}?tab=3`, { accessToken: session.accessToken })
  t.equal((await resource(example, `DPoP ${session.accessToken}`, otherQuery, '/me?tab=2')).status, 200, 'both with queries that differ')
  const upperCase = await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken, claims: { htu: `HTTP://127.0.0.1:${example.port}/me` } })
  t.equal((await resource(example, `DPoP ${session.accessToken}`, upperCase)).status, 200, 'scheme in upper case, normalised')
  const defaultPath = await proofFor(example, key, 'POST', '/auth/refresh', { claims: { htu: `http://127.0.0.1:${example.port}/auth/../auth/refresh` } })
  session = boundTokens(t, example, await refreshWith(example, session.refreshToken, defaultPath), key, 'a dot segment in htu, normalised by the URL parser')
})

t.test('DP7 a wrong ath (a proof made for another access token, or none): 401 invalid_dpop_proof', async (t) => {
  const key = await dpopKey()
  const first = await boundLogin(example, key)
  const second = await boundLogin(example, key) // same key, another session: its proofs' ath differ
  const bob = await boundLogin(example, key, BOB)
  const cases: Array<[string, Record<string, unknown>]> = [
    ['ath of another session\'s token (same key)', { ath: ath(first.accessToken) }],
    ['ath of another user\'s token (same key)', { ath: ath(bob.accessToken) }],
    ['ath of a refresh token', { ath: ath(second.refreshToken) }],
    ['ath of the token in base64 (not base64url)', { ath: createHash('sha256').update(second.accessToken).digest('base64') }],
    ['ath of the token, hex', { ath: createHash('sha256').update(second.accessToken).digest('hex') }],
    ['ath as a number', { ath: 1 }]
  ]
  for (const [label, claims] of cases) {
    const wrong = await proofFor(example, key, 'GET', '/me', { claims })
    t.comment(label)
    await refusedAtResource(t, example, await resource(example, `DPoP ${second.accessToken}`, wrong), { description: /ath/, sent: [second.accessToken, wrong] })
  }
  const noAth = await proofFor(example, key, 'GET', '/me')
  await refusedAtResource(t, example, await resource(example, `DPoP ${second.accessToken}`, noAth), { description: /ath missing/, sent: [second.accessToken, noAth] })
  t.equal((await keyMe(example, second.accessToken, key)).status, 200, 'the right ath passes')
})

t.test('DP8 a new key mid-session (refresh, reauthenticate, protected request with a second key): refused, nothing rotated', async (t) => {
  const key = await dpopKey()
  const second = await dpopKey()
  const session = await boundLogin(example, key)
  const mark = example.events.length

  const switched = await proofFor(example, second, 'POST', '/auth/refresh')
  await refusedAtTokenEndpoint(t, example, await refreshWith(example, session.refreshToken, switched), { message: /bound to/, sent: [session.refreshToken, switched] })

  const reauth = await send(example, 'POST', '/auth/reauthenticate', {
    headers: [['cookie', `${COOKIE}=${session.refreshToken}`], ['dpop', await proofFor(example, second, 'POST', '/auth/reauthenticate')]],
    body: { username: USERNAME, password: PASSWORD }
  })
  await refusedAtTokenEndpoint(t, example, reauth, { message: /bound to/, sent: [session.refreshToken] })

  const me = await resource(example, `DPoP ${session.accessToken}`, await proofFor(example, second, 'GET', '/me', { accessToken: session.accessToken }))
  await refusedAtResource(t, example, me, { description: /bound to/, sent: [session.accessToken] })

  t.same(eventsSince(example, mark), [], 'nothing rotated, revoked or reported as reuse')
  const next = boundTokens(t, example, await keyRefresh(example, session.refreshToken, key), key, 'the original key')
  t.not(next.refreshToken.split('.')[2], second.jkt, 'the session never took the second key')
})

t.test('DP9 iat too old (> 60 s) and in the future (> 5 s): refused; just inside both edges: accepted', async (t) => {
  const key = await dpopKey()
  let session = await boundLogin(example, key)
  const mark = example.events.length
  // Whole seconds, rounded down: now - 61 is past the 60 s window whenever the server checks, and
  // now + 7 is past now + 5 unless the request takes over a second.
  const outside: Array<[string, unknown]> = [
    ['61 s old', nowSeconds() - 61],
    ['an hour old', nowSeconds() - 3600],
    ['7 s ahead', nowSeconds() + 7],
    ['an hour ahead', nowSeconds() + 3600],
    ['in milliseconds', Date.now()],
    ['a string', String(nowSeconds())],
    ['absent', undefined]
  ]
  for (const [label, iat] of outside) {
    const wrong = await proofFor(example, key, 'POST', '/auth/refresh', { claims: { iat } })
    t.comment(`refresh, iat ${label}`)
    await refusedAtTokenEndpoint(t, example, await refreshWith(example, session.refreshToken, wrong), { message: /iat/, sent: [session.refreshToken, wrong] })
  }
  for (const [label, iat] of [['61 s old', nowSeconds() - 61], ['7 s ahead', nowSeconds() + 7]] as const) {
    const wrong = await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken, claims: { iat } })
    t.comment(`GET /me, iat ${label}`)
    await refusedAtResource(t, example, await resource(example, `DPoP ${session.accessToken}`, wrong), { description: /iat/, sent: [session.accessToken, wrong] })
  }
  const oldLogin = await proofFor(example, key, 'POST', '/auth/login', { claims: { iat: nowSeconds() - 61 } })
  await refusedAtTokenEndpoint(t, example, await loginWith(example, oldLogin), { message: /iat too old/, sent: [oldLogin] })
  t.same(eventsSince(example, mark), [], 'nothing rotated or issued')

  // 57 s old and 4 s ahead are inside the window (with the rounding above).
  const oldButFine = await proofFor(example, key, 'POST', '/auth/refresh', { claims: { iat: nowSeconds() - 57 } })
  session = boundTokens(t, example, await refreshWith(example, session.refreshToken, oldButFine), key, 'iat 57 s old')
  const aheadButFine = await proofFor(example, key, 'POST', '/auth/refresh', { claims: { iat: nowSeconds() + 4 } })
  session = boundTokens(t, example, await refreshWith(example, session.refreshToken, aheadButFine), key, 'iat 4 s ahead')
  for (const [label, iat] of [['57 s old', nowSeconds() - 57], ['4 s ahead', nowSeconds() + 4]] as const) {
    const fine = await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken, claims: { iat } })
    t.equal((await resource(example, `DPoP ${session.accessToken}`, fine)).status, 200, `GET /me, iat ${label}`)
  }
})

t.test('DP10 alg none, HS256 keyed with the public jwk (key confusion), and algorithms outside the list: 400 at login, 401 on a protected request', async (t) => {
  const key = await dpopKey()
  const session = await boundLogin(example, key)
  const mark = example.events.length
  const claims = claimsFor(example, 'POST', '/auth/login')
  const header = { typ: 'dpop+jwt', jwk: key.jwk }
  const publicPem = createPublicKey({ key: key.jwk as NodeJwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string
  const es512 = await dpopKey('ES512')
  const rs384 = await dpopKey('RS384')
  const attempts: Array<[string, string]> = [
    ['alg none, no signature', `${encode({ ...header, alg: 'none' })}.${encode(claims)}.`],
    ['alg none, a signature segment', `${encode({ ...header, alg: 'none' })}.${encode(claims)}.AAAA`],
    ['alg "None"', `${encode({ ...header, alg: 'None' })}.${encode(claims)}.AAAA`],
    ['HS256 keyed with the jwk\'s JSON', forge({ ...header, alg: 'HS256' }, claims, JSON.stringify(key.jwk))],
    ['HS256 keyed with the public key PEM', forge({ ...header, alg: 'HS256' }, claims, publicPem)],
    ['HS256 keyed with the x coordinate', forge({ ...header, alg: 'HS256' }, { ...claims, jti: randomUUID() }, Buffer.from(key.jwk.x as string, 'base64url'))],
    ['HS256 with an oct jwk', forge({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: randomBytes(32).toString('base64url') } }, claims, 'k')],
    ['ES512 (P-521), validly signed', await signedWithHeader(es512, {}, claimsFor(example, 'POST', '/auth/login'))],
    ['RS384, validly signed', await signedWithHeader(rs384, {}, claimsFor(example, 'POST', '/auth/login'))],
    ['ES256 with an Ed25519 jwk (a key that does not fit alg)', await signedWithHeader(key, { jwk: (await dpopKey('EdDSA')).jwk }, claimsFor(example, 'POST', '/auth/login'))]
  ]
  for (const [label, forged] of attempts) {
    t.comment(`login, ${label}`)
    await refusedAtTokenEndpoint(t, example, await loginWith(example, forged), { message: /Invalid DPoP proof/, sent: [forged] })
  }
  const meClaims = claimsFor(example, 'GET', '/me', { ath: ath(session.accessToken) })
  const onMe: Array<[string, string]> = [
    ['alg none', `${encode({ ...header, alg: 'none' })}.${encode(meClaims)}.`],
    ['HS256 keyed with the jwk\'s JSON', forge({ ...header, alg: 'HS256' }, meClaims, JSON.stringify(key.jwk))],
    ['ES512', await signedWithHeader(es512, {}, claimsFor(example, 'GET', '/me', { ath: ath(session.accessToken) }))]
  ]
  for (const [label, forged] of onMe) {
    t.comment(`GET /me, ${label}`)
    await refusedAtResource(t, example, await resource(example, `DPoP ${session.accessToken}`, forged), { sent: [session.accessToken, forged] })
  }
  t.same(eventsSince(example, mark), [], 'no login, nothing rotated')
})

t.test('DP11 a jwk with private members (d, k): refused, the key never used', async (t) => {
  const key = await dpopKey()
  const privateJwk = await exportJWK(key.privateKey)
  t.ok(typeof privateJwk.d === 'string', 'the exported jwk carries d')
  const mark = example.events.length
  const withPrivate: Array<[string, JWK]> = [
    ['the whole private jwk (d)', privateJwk],
    ['the public jwk and k', { ...key.jwk, k: randomBytes(32).toString('base64url') }],
    ['the public jwk and an empty d', { ...key.jwk, d: '' }]
  ]
  for (const [label, jwk] of withPrivate) {
    const forged = await signedWithHeader(key, { jwk }, claimsFor(example, 'POST', '/auth/login'))
    t.comment(label)
    await refusedAtTokenEndpoint(t, example, await loginWith(example, forged), { message: /private member/, sent: [forged, privateJwk.d as string] })
  }
  // RSA: p among the members.
  const rsa = await dpopKey('RS256')
  const rsaPrivate = await exportJWK(rsa.privateKey)
  const rsaForged = await signedWithHeader(rsa, { jwk: { ...rsa.jwk, p: rsaPrivate.p } }, claimsFor(example, 'POST', '/auth/login'))
  await refusedAtTokenEndpoint(t, example, await loginWith(example, rsaForged), { message: /private member/, sent: [rsaForged, rsaPrivate.p as string] })
  t.same(eventsSince(example, mark), [], 'no session issued')
})

t.test('DP12 an oversized proof (> 4096 characters): 400 (401 on a protected request), no 500, the server alive; 4096 still passes', async (t) => {
  const key = await dpopKey()
  const session = await boundLogin(example, key)
  const mark = example.events.length
  /** A validly signed refresh proof padded to exactly `length` characters, or the nearest above. */
  async function padded (length: number, method = 'POST', path = '/auth/refresh', accessToken?: string): Promise<string> {
    const base = await proofFor(example, key, method, path, { ...(accessToken === undefined ? {} : { accessToken }), claims: { pad: '' } })
    // Each padding byte adds 4/3 characters: start just under and step up.
    let pad = Math.max(0, Math.floor((length - base.length) * 3 / 4) - 2)
    for (;;) {
      const candidate = await proofFor(example, key, method, path, { ...(accessToken === undefined ? {} : { accessToken }), claims: { pad: 'x'.repeat(pad) } })
      if (candidate.length >= length) return candidate
      pad++
    }
  }
  const justOver = await padded(4097)
  t.ok(justOver.length > 4096 && justOver.length < 4101, `a signed proof of ${justOver.length} characters`)
  const big = await padded(12_000)
  const garbage = 'A'.repeat(5000)
  for (const [label, oversized] of [['just over 4096, validly signed', justOver], ['12 000 characters, validly signed', big], ['5000 characters of garbage', garbage]] as const) {
    t.comment(`refresh, ${label}`)
    await refusedAtTokenEndpoint(t, example, await refreshWith(example, session.refreshToken, oversized), { message: /too long/, sent: [session.refreshToken, oversized] })
    t.comment(`login, ${label}`)
    await refusedAtTokenEndpoint(t, example, await loginWith(example, oversized), { sent: [oversized] })
  }
  const bigMe = await padded(5000, 'GET', '/me', session.accessToken)
  await refusedAtResource(t, example, await resource(example, `DPoP ${session.accessToken}`, bigMe), { description: /too long/, sent: [session.accessToken, bigMe] })
  // Past Node's header limit (16 KB) the parser answers 431 before the app runs: no body, no crash.
  const huge = await refreshWith(example, session.refreshToken, 'A'.repeat(40_000))
  t.equal(huge.status, 431, '40 KB header: 431 from Node')
  t.same(huge.setCookies, [], 'no cookie')
  t.notOk(huge.text.includes(session.refreshToken), 'nothing echoed')
  await alive(t, example)
  t.same(eventsSince(example, mark), [], 'nothing rotated or issued')

  // The limit is "at most 4096": a proof of 4096 characters or just under still passes.
  let atLimit = await padded(4093)
  while (atLimit.length > 4096) atLimit = await padded(atLimit.length - 8)
  t.ok(atLimit.length <= 4096 && atLimit.length >= 4080, `a proof of ${atLimit.length} characters`)
  boundTokens(t, example, await refreshWith(example, session.refreshToken, atLimit), key, 'a proof at the limit')
})

t.test('DP13 two DPoP headers (same or different case, both valid, or one empty): refused; nothing issued or rotated', async (t) => {
  const key = await dpopKey()
  const session = await boundLogin(example, key)
  const mark = example.events.length
  const twoLogin = [await proofFor(example, key, 'POST', '/auth/login'), await proofFor(example, key, 'POST', '/auth/login')]
  const login = await send(example, 'POST', '/auth/login', { headers: [['dpop', twoLogin[0] as string], ['DPoP', twoLogin[1] as string]], body: { username: USERNAME, password: PASSWORD } })
  await refusedAtTokenEndpoint(t, example, login, { message: /more than one DPoP header/, sent: twoLogin })

  const valid = await proofFor(example, key, 'POST', '/auth/refresh')
  const refreshVariants: Array<[string, Headers]> = [
    ['two valid proofs', [['dpop', valid], ['dpop', await proofFor(example, key, 'POST', '/auth/refresh')]]],
    ['the same proof twice', [['DPoP', valid], ['dpop', valid]]],
    ['a valid proof and an empty header', [['dpop', valid], ['DPOP', '']]],
    ['an empty header and a valid proof', [['dpop', ''], ['dpop', valid]]]
  ]
  for (const [label, headers] of refreshVariants) {
    t.comment(`refresh, ${label}`)
    const reply = await send(example, 'POST', '/auth/refresh', { headers: [['cookie', `${COOKIE}=${session.refreshToken}`], ...headers] })
    await refusedAtTokenEndpoint(t, example, reply, { message: /more than one DPoP header/, sent: [session.refreshToken, valid] })
  }
  const twoMe = [
    await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken }),
    await proofFor(example, key, 'GET', '/me', { accessToken: session.accessToken })
  ]
  const me = await resource(example, `DPoP ${session.accessToken}`, twoMe)
  await refusedAtResource(t, example, me, { description: /more than one DPoP header/, sent: [session.accessToken, ...twoMe] })
  t.same(eventsSince(example, mark), [], 'nothing issued or rotated')
  // None of them was spent: the two-header refusal comes before the replay check.
  boundTokens(t, example, await refreshWith(example, session.refreshToken, valid), key, 'the valid proof alone, afterwards')
})

t.test('DP14 required mode: no bearer login, and a bearer session minted under \'optional\' is refused (refresh 400 DPOP_REQUIRED even with a proof, access token 401)', async (t) => {
  // The operator switched DPOP from optional to required with the same secrets. The two examples
  // share REFRESH_TOKEN_SECRET and ACCESS_TOKEN_SECRET (BASE_ENV) but not their memory stores, and
  // that is enough here: the design decides a bearer session's refusal before the store is asked
  // («checked before the store is asked»), and `authenticate` never asks the store for an unbound
  // token. So the second example knows the session only through its tag and signature; had it
  // asked its store first, it would answer 401 INVALID_REFRESH_TOKEN (a session it never held),
  // not 400 DPOP_REQUIRED. A shared Redis would add a service dependency to this file and prove
  // nothing more.
  const required = await startExample(t, { DPOP: 'required' })
  const bearer = sessionOf(example, await loginWith(example), 'bearer login under optional')
  t.equal(bearer.reply.json.tokenType, 'Bearer', 'a login without a proof is a bearer session under optional')
  t.equal(bearer.refreshToken.split('.').length, 3, 'its refresh token names no key')
  required.secrets.push(bearer.accessToken, bearer.refreshToken)
  const mark = required.events.length

  await refusedAtTokenEndpoint(t, required, await loginWith(required), { code: DPOP_REQUIRED })

  await refusedAtTokenEndpoint(t, required, await refreshWith(required, bearer.refreshToken), { code: DPOP_REQUIRED, sent: [bearer.refreshToken] })
  const key = await dpopKey()
  const withProof = await proofFor(required, key, 'POST', '/auth/refresh')
  await refusedAtTokenEndpoint(t, required, await refreshWith(required, bearer.refreshToken, withProof), { code: DPOP_REQUIRED, sent: [bearer.refreshToken, withProof] })

  const asBearer = await resource(required, `Bearer ${bearer.accessToken}`)
  await refusedAtResource(t, required, asBearer, { code: INVALID_TOKEN, error: 'invalid_token', description: /bearer tokens are not accepted/, sent: [bearer.accessToken] })
  const asDpop = await resource(required, `DPoP ${bearer.accessToken}`, await proofFor(required, key, 'GET', '/me', { accessToken: bearer.accessToken }))
  await refusedAtResource(t, required, asDpop, { code: INVALID_TOKEN, error: 'invalid_token', description: /not bound to a key/, sent: [bearer.accessToken] })
  const missing = await send(required, 'GET', '/me')
  await refused(t, required, missing, { status: 401, code: 'FST_TOKEN_AUTH_MISSING_TOKEN', challenge: `DPoP ${ALGS}` })
  t.same(eventsSince(required, mark), [], 'nothing issued or rotated')

  // The same access token still works where bearer tokens are accepted, and a bound login works under required.
  t.equal((await resource(example, `Bearer ${bearer.accessToken}`)).status, 200, 'the optional example still serves it')
  const bound = await boundLogin(required, key)
  t.equal((await keyMe(required, bound.accessToken, key)).status, 200, 'a bound session is served under required')
  boundTokens(t, required, await keyRefresh(required, bound.refreshToken, key), key, 'and refreshed')
  noIncidents(t, required)
})

t.test('DP15 logout and POST /auth/revoke with a stolen bound token and no key end nothing: the victim keeps working', async (t) => {
  const victimKey = await dpopKey()
  const thiefKey = await dpopKey()
  const victim = await boundLogin(example, victimKey)
  const mark = example.events.length

  const logouts: Array<[string, Headers]> = [
    ['the refresh cookie, no proof', [['cookie', `${COOKIE}=${victim.refreshToken}`]]],
    ['the refresh cookie and the thief\'s proof', [['cookie', `${COOKIE}=${victim.refreshToken}`], ['dpop', await proofFor(example, thiefKey, 'POST', '/auth/logout')]]],
    ['the bound access token as Bearer', [['authorization', `Bearer ${victim.accessToken}`]]],
    ['the bound access token as DPoP, the thief\'s proof', [['authorization', `DPoP ${victim.accessToken}`], ['dpop', await proofFor(example, thiefKey, 'POST', '/auth/logout', { accessToken: victim.accessToken })]]]
  ]
  for (const [label, headers] of logouts) {
    t.comment(`logout with ${label}`)
    const reply = await send(example, 'POST', '/auth/logout', { headers })
    t.equal(reply.status, 204, 'logout answers 204 as always (RFC 7009)')
    t.equal(reply.text, '', 'no body')
    t.ok(clearsCookie(reply), 'the thief\'s own cookie is cleared')
    t.equal(reply.headers['www-authenticate'], undefined, 'no challenge')
    noTokenIssued(t, reply)
    noLeak(t, example, reply, [victim.refreshToken, victim.accessToken])
  }
  const revokes: Array<[string, string, Headers]> = [
    ['the refresh token, no proof', victim.refreshToken, []],
    ['the access token, no proof', victim.accessToken, []],
    ['the refresh token, the thief\'s proof', victim.refreshToken, [['dpop', await proofFor(example, thiefKey, 'POST', '/auth/revoke')]]],
    ['the access token, the thief\'s proof', victim.accessToken, [['dpop', await proofFor(example, thiefKey, 'POST', '/auth/revoke')]]]
  ]
  for (const [label, token, headers] of revokes) {
    t.comment(`revoke with ${label}`)
    const reply = await send(example, 'POST', '/auth/revoke', { headers, body: { token } })
    t.equal(reply.status, 200, 'revoke answers 200 as for any token (RFC 7009 §2.2)')
    t.equal(reply.text, '', 'an empty body')
    t.same(reply.setCookies, [], 'no cookie read or written')
    noTokenIssued(t, reply)
    noLeak(t, example, reply, [victim.refreshToken, victim.accessToken])
  }
  // Ending every session, or this one through the sessions route, needs `authenticate`: refused.
  const sid = decodePayload(victim.accessToken).sid as string
  const guarded: Array<[string, string, string, 'Bearer' | 'DPoP']> = [
    ['POST', '/auth/logout?all=true', '/auth/logout', 'Bearer'],
    ['POST', '/auth/logout?all=true', '/auth/logout', 'DPoP'],
    ['DELETE', `/auth/sessions/${sid}`, `/auth/sessions/${sid}`, 'Bearer'],
    ['DELETE', `/auth/sessions/${sid}`, `/auth/sessions/${sid}`, 'DPoP']
  ]
  for (const [method, path, proofPath, scheme] of guarded) {
    t.comment(`${method} ${path}, the access token as ${scheme}${scheme === 'DPoP' ? ' with the thief\'s proof' : ''}`)
    const thiefProof = await proofFor(example, thiefKey, method, proofPath, { accessToken: victim.accessToken })
    const reply = await send(example, method, path, { headers: [['authorization', `${scheme} ${victim.accessToken}`], ...(scheme === 'DPoP' ? [['dpop', thiefProof] as [string, string]] : [])] })
    await refusedAtResource(t, example, reply, scheme === 'Bearer'
      ? { code: INVALID_TOKEN, error: 'invalid_token', sent: [victim.accessToken] }
      : { description: /bound to/, sent: [victim.accessToken, thiefProof] })
  }
  await alive(t, example)
  t.same(eventsSince(example, mark), [], 'no session ended, no logout reported')

  t.equal((await keyMe(example, victim.accessToken, victimKey)).status, 200, 'the victim\'s access token still works')
  const next = boundTokens(t, example, await keyRefresh(example, victim.refreshToken, victimKey), victimKey, 'the victim\'s refresh')
  // With her key, the victim's own logout ends it (the check above was not a dead route).
  const logout = await send(example, 'POST', '/auth/logout', {
    headers: [['cookie', `${COOKIE}=${next.refreshToken}`], ['dpop', await proofFor(example, victimKey, 'POST', '/auth/logout')]]
  })
  t.equal(logout.status, 204)
  t.same(eventsSince(example, mark).filter((name) => name !== 'refresh'), ['sessionRevoked', 'logout'], 'the victim\'s logout ends the session')
  const after = await keyMe(example, next.accessToken, victimKey)
  await refused(t, example, after, { status: 401, code: 'FST_TOKEN_AUTH_SESSION_REVOKED', challenge: `DPoP error="invalid_token", ${ALGS}`, sent: [next.accessToken] })
})

t.test('DP16 a forged refresh token naming the thief\'s thumbprint, or no key at all: 401 INVALID_REFRESH_TOKEN (the tag covers the key)', async (t) => {
  const victimKey = await dpopKey()
  const thiefKey = await dpopKey()
  const victim = await boundLogin(example, victimKey)
  const parts = victim.refreshToken.split('.')
  t.equal(parts.length, 4, 'session, user, thumbprint, id and tag')
  t.equal(parts[2]?.length, 43, 'a 43-character thumbprint')
  const swapped = [parts[0], parts[1], thiefKey.jkt, parts[3]].join('.')
  const unbound = [parts[0], parts[1], parts[3]].join('.')
  const mark = example.events.length
  const attempts: Array<[string, string, DpopKey | undefined]> = [
    ['the thief\'s thumbprint, her proof', swapped, thiefKey],
    ['the thief\'s thumbprint, no proof', swapped, undefined],
    ['the thumbprint removed (a bearer token), no proof', unbound, undefined],
    ['the thumbprint removed, the thief\'s proof', unbound, thiefKey]
  ]
  for (const [label, forged, key] of attempts) {
    t.comment(label)
    const reply = key === undefined ? await refreshWith(example, forged) : await keyRefresh(example, forged, key)
    await refused(t, example, reply, { status: 401, code: INVALID_REFRESH, sent: [forged, victim.refreshToken] })
    t.equal(reply.headers['www-authenticate'], undefined, 'no WWW-Authenticate')
    t.ok(clearsCookie(reply), 'the forged cookie is cleared (a token that is not ours)')
  }
  t.same(eventsSince(example, mark), [], 'nothing rotated, revoked or reported as reuse')
  boundTokens(t, example, await keyRefresh(example, victim.refreshToken, victimKey), victimKey, 'the victim\'s refresh')
})

t.test('DP17 nonce mode: a proof without a nonce 400 USE_DPOP_NONCE with DPoP-Nonce; a made-up nonce refused; the server\'s nonce accepted', async (t) => {
  const nonced = await startExample(t, { DPOP: 'optional', DPOP_NONCE: 'true' })
  const key = await dpopKey()
  const mark = nonced.events.length

  const first = await loginWith(nonced, await proofFor(nonced, key, 'POST', '/auth/login'))
  await refusedAtTokenEndpoint(t, nonced, first, { code: USE_NONCE })
  const nonce = first.headers['dpop-nonce'] as string
  t.match(nonce, NONCE_FORMAT, 'DPoP-Nonce carries the server\'s nonce')

  const madeUp: Array<[string, string]> = [
    ['random, well-formed', randomBytes(20).toString('base64url')],
    ['another deployment\'s (other secret)', new DpopNonces('another-secret-of-at-least-32-characters').current(Date.now())],
    ['the server\'s, one character changed', `${nonce.slice(0, -2)}${nonce.at(-2) === 'A' ? 'B' : 'A'}${nonce.at(-1) as string}`],
    ['short', 'abc'],
    ['a number', 42 as unknown as string]
  ]
  for (const [label, value] of madeUp) {
    t.comment(`login, nonce ${label}`)
    const reply = await loginWith(nonced, await proofFor(nonced, key, 'POST', '/auth/login', { nonce: value }))
    await refusedAtTokenEndpoint(t, nonced, reply, { code: USE_NONCE })
    t.equal(reply.headers['dpop-nonce'], nonce, 'the current nonce again')
  }
  t.same(eventsSince(nonced, mark), [], 'no session issued')

  const login = await loginWith(nonced, await proofFor(nonced, key, 'POST', '/auth/login', { nonce }))
  const session = boundTokens(t, nonced, login, key, 'a login with the server\'s nonce')
  t.equal(login.headers['dpop-nonce'], nonce, 'every answer to a proof carries the nonce')

  // Refresh: the same rule, and nothing rotates on the refusal.
  const rotations = nonced.events.length
  const noNonce = await refreshWith(nonced, session.refreshToken, await proofFor(nonced, key, 'POST', '/auth/refresh'))
  await refusedAtTokenEndpoint(t, nonced, noNonce, { code: USE_NONCE, sent: [session.refreshToken] })
  t.equal(noNonce.headers['dpop-nonce'], nonce)
  const badNonce = await refreshWith(nonced, session.refreshToken, await proofFor(nonced, key, 'POST', '/auth/refresh', { nonce: madeUp[0]?.[1] as string }))
  await refusedAtTokenEndpoint(t, nonced, badNonce, { code: USE_NONCE, sent: [session.refreshToken] })
  t.same(eventsSince(nonced, rotations), [], 'nothing rotated')
  const refreshed = boundTokens(t, nonced, await refreshWith(nonced, session.refreshToken, await proofFor(nonced, key, 'POST', '/auth/refresh', { nonce })), key, 'a refresh with the nonce')

  // Protected requests: 401 with the use_dpop_nonce challenge and the nonce.
  const meNoNonce = await keyMe(nonced, refreshed.accessToken, key)
  await refusedAtResource(t, nonced, meNoNonce, { code: USE_NONCE, error: 'use_dpop_nonce', sent: [refreshed.accessToken] })
  t.equal(meNoNonce.headers['dpop-nonce'], nonce, 'DPoP-Nonce on the 401')
  const meMadeUp = await resource(nonced, `DPoP ${refreshed.accessToken}`, await proofFor(nonced, key, 'GET', '/me', { accessToken: refreshed.accessToken, nonce: madeUp[0]?.[1] as string }))
  await refusedAtResource(t, nonced, meMadeUp, { code: USE_NONCE, error: 'use_dpop_nonce', sent: [refreshed.accessToken] })
  const me = await resource(nonced, `DPoP ${refreshed.accessToken}`, await proofFor(nonced, key, 'GET', '/me', { accessToken: refreshed.accessToken, nonce }))
  t.equal(me.status, 200, 'the server\'s nonce is accepted')
  t.equal(me.headers['dpop-nonce'], nonce)
  noIncidents(t, nonced)
})

t.test('H6 no unhandled rejection during the DPoP cases', async (t) => {
  noIncidents(t, example)
})
