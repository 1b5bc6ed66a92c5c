import assert from 'node:assert/strict'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import type { AccessTokenKey, RefreshTokenTransport, TokenAuthOptions } from '../../lib/index.js'
import { BOB, BOB_ID, BOB_PASSWORD, build, CHALLENGE, INVALID_REQUEST, INVALID_TOKEN, me, PASSWORD, USERNAME } from '../helpers.js'
import { type Body, type FuzzRequest, fuzzRequest, mutate, mutations, type Value } from './fuzz-arbitraries.js'

// Property-based fuzzing of every route and of the token parser (issue #4, item 5).
// Runs are random on every execution; a failure prints fast-check's seed and path, which
// FUZZ_SEED and FUZZ_PATH replay. Assertions inside properties use node:assert, so a
// counterexample is shrunk and reported once instead of as thousands of tap failures.

/** The second user of test/helpers.ts. */
const OTHER_USERNAME = BOB
const OTHER_PASSWORD = BOB_PASSWORD
const OTHER_USER_ID = BOB_ID
const COOKIE_NAME = 'refresh_token'
const ERROR_CODE = /^FST_(TOKEN_AUTH|ERR)_[A-Z0-9_]+$/
/** Anything shaped like a JWT (three base64url runs), wherever it appears in an answer. */
const JWT_LIKE = /[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}/g
/** Node's default limit on the request head; past it, Node's parser answers before Fastify. */
const MAX_HEADER_SIZE = 16 * 1024
/** The answer Fastify's client error handler writes for a head over that limit (no route ran). */
const HEADER_OVERFLOW_BODY = { error: 'Request Header Fields Too Large', message: 'Exceeded maximum allowed HTTP header size', statusCode: 431 }

/** What `clearSiteData: true` sends on logout. */
const CLEAR_SITE_DATA = '"cache", "cookies", "storage"'
/** JWK members that only a private key has. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']

type Algorithm = AccessTokenKey['algorithm']

/** A fresh signing key for `algorithm` (HS256: a random secret), and its verify-only half. */
function keyFor (algorithm: Algorithm): { signing: AccessTokenKey, verifying: AccessTokenKey } {
  if (algorithm === 'HS256') {
    const secret = randomBytes(32).toString('base64url')
    return { signing: { algorithm, secret }, verifying: { algorithm, secret } }
  }
  const pair = algorithm === 'EdDSA'
    ? generateKeyPairSync('ed25519')
    : algorithm === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    signing: { algorithm, privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string },
    verifying: { algorithm, publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string }
  }
}

/** Options signing access tokens with `keys[0]`, the others still verifying (rotation). */
function withKeys (...keys: AccessTokenKey[]): Partial<TokenAuthOptions> {
  return { accessTokenSecret: undefined, accessTokenKeys: keys }
}

/** Runs per property: sized for the whole file to take a few seconds on two shared cores. */
const RUNS = { routes: 300, http: 80, access: 800, refresh: 800, duplicates: 100 }

const replay: fc.Parameters<unknown> = process.env.FUZZ_SEED === undefined
  ? {}
  : { seed: Number(process.env.FUZZ_SEED), ...(process.env.FUZZ_PATH === undefined ? {} : { path: process.env.FUZZ_PATH }) }

/**
 * Runs a property and turns its outcome into one tap assertion, with fast-check's report (seed,
 * shrunk counterexample, error) on failure. Resolves with whether it held.
 */
async function holds<Ts> (t: Test, name: string, property: fc.IAsyncProperty<Ts>, numRuns: number): Promise<boolean> {
  const details = await fc.check(property, { numRuns, ...replay } as fc.Parameters<Ts>)
  if (details.failed) {
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
    t.fail(`${name}\n${fc.defaultReportMessage(details)}\nError: ${error}`)
    return false
  }
  t.pass(name)
  if (replay.path === undefined) t.equal(details.numRuns, numRuns, `${name}: every run executed`)
  return true
}

// ---- Answers ----------------------------------------------------------------------------------

interface Answer {
  status: number
  headers: Record<string, string | string[] | number | undefined>
  body: string
}

function headerOf (answer: Answer, name: string): string | undefined {
  const value = answer.headers[name]
  return value === undefined ? undefined : Array.isArray(value) ? value.join(', ') : String(value)
}

interface SetCookie { name: string, value: string, attributes: Map<string, string> }

function setCookiesOf (answer: Answer): SetCookie[] {
  const raw = answer.headers['set-cookie']
  const lines = raw === undefined ? [] : Array.isArray(raw) ? raw : [String(raw)]
  return lines.map((line) => {
    const [pair = '', ...rest] = line.split(';')
    const at = pair.indexOf('=')
    const attributes = new Map(rest.map((part) => {
      const eq = part.indexOf('=')
      return eq === -1 ? [part.trim().toLowerCase(), ''] : [part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim()]
    }))
    return { name: pair.slice(0, at).trim(), value: decodeURIComponent(pair.slice(at + 1).trim()), attributes }
  })
}

/** An error answer: JSON `{ statusCode, code, error, message }` with a coded error, and the right challenge. */
function assertCodedError (answer: Answer): string {
  assert.match(headerOf(answer, 'content-type') ?? '', /^application\/json/, 'errors are JSON')
  const body = JSON.parse(answer.body) as Record<string, unknown>
  assert.match(String(body.code), ERROR_CODE, `a coded error, got ${answer.body.slice(0, 200)}`)
  assert.equal(body.statusCode, answer.status, 'statusCode in the body is the status')
  assert.equal(typeof body.message, 'string')
  assert.ok(!('stack' in body), 'no stack trace')
  const code = body.code as string
  const challenge = headerOf(answer, 'www-authenticate')
  if (['FST_TOKEN_AUTH_INVALID_TOKEN', 'FST_TOKEN_AUTH_TOKEN_EXPIRED', 'FST_TOKEN_AUTH_SESSION_REVOKED'].includes(code)) assert.equal(challenge, INVALID_TOKEN)
  if (code === 'FST_TOKEN_AUTH_MISSING_TOKEN') assert.equal(challenge, CHALLENGE)
  if (code === 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION') assert.equal(challenge, INVALID_REQUEST)
  if (answer.status === 429) assert.match(headerOf(answer, 'retry-after') ?? '', /^[1-9]\d*$/, '429 carries Retry-After')
  return code
}

// ---- One run: a fresh session, then a few fuzzed requests against it --------------------------

interface Run {
  transport: RefreshTokenTransport
  clearSiteData: boolean
  userId: string
  sessionId: string
  /** Another user's session: no fuzzed request holds its tokens, so nothing may end it. */
  otherSessionId: string
  /** Tokens legitimately issued to this run's session, oldest first. */
  access: string[]
  refresh: string[]
  donors: string[]
  /** Set when a request certainly ended the session: from then on its tokens get nothing. */
  revoked: boolean
}

/** What the request carried, as the server reads it (a superset where parsing is ambiguous). */
interface Presented {
  access: string | undefined
  refresh: string[]
  login: { username: unknown, password: unknown } | undefined
}

interface Wire {
  method: 'GET' | 'POST' | 'DELETE'
  url: string
  headers: Record<string, string>
  payload: string | undefined
}

/** Header values as a client can send them (Node refuses control characters and code points over 0xFF). */
const headerSafe = (text: string): string => text.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?')
/**
 * A cookie value as a client can send it: percent-encoded UTF-8. A mutation can leave a lone
 * surrogate, which has no UTF-8 form (encodeURIComponent throws): a client would send U+FFFD.
 * The same goes for URL parts.
 */
const wellFormed = (text: string): string => text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD')
const cookieText = (text: string): string => encodeURIComponent(wellFormed(text))
/** Encodes what a URL cannot carry, but keeps `%` raw so malformed escapes reach the server. */
const urlPart = (text: string): string => wellFormed(text).replace(/[^A-Za-z0-9\-._~%!$'()*+,;:@]/g, (c) => encodeURIComponent(c))
/** Strips optional whitespace the way HTTP parsers do around a header value. */
const trimOws = (text: string): string => text.replace(/^[ \t]+|[ \t]+$/g, '')

function tokenOf (run: Run, value: Extract<Value, { ref: unknown }>): string {
  const list = value.ref.token === 'access' ? run.access : run.refresh
  const base = (value.ref.generation === 'first' ? list[0] : list.at(-1)) as string
  return mutate(base, value.ref.mutations, run.donors)
}

function jsonOf (run: Run, value: Value): unknown {
  if ('ref' in value) return tokenOf(run, value)
  if ('text' in value) return value.text
  if ('json' in value) return value.json
  return { username: USERNAME, password: PASSWORD, otherUsername: OTHER_USERNAME, otherPassword: OTHER_PASSWORD }[value.credential]
}

const textOf = (run: Run, value: Value): string => {
  const json = jsonOf(run, value)
  return typeof json === 'string' ? json : JSON.stringify(json)
}

function bodyText (run: Run, body: Body): string | undefined {
  switch (body.kind) {
    case 'none': return undefined
    case 'text': return body.text
    case 'json': return JSON.stringify(body.value)
    // Written pair by pair: duplicate keys and `__proto__` reach the server as sent.
    case 'fields': return `{${body.pairs.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(jsonOf(run, value)) ?? 'null'}`).join(',')}}`
    case 'nested': return body.open === 'array' ? '['.repeat(body.depth) + ']'.repeat(body.depth) : '{"a":'.repeat(body.depth) + '1' + '}'.repeat(body.depth)
    case 'huge': return JSON.stringify({ [body.field]: 'x'.repeat(body.length) })
  }
}

const PATHS = { login: '/auth/login', refresh: '/auth/refresh', logout: '/auth/logout', sessions: '/auth/sessions', deleteSession: '/auth/sessions/', me: '/me', jwks: '/.well-known/jwks.json' }
const METHODS = { login: 'POST', refresh: 'POST', logout: 'POST', sessions: 'GET', deleteSession: 'DELETE', me: 'GET', jwks: 'GET' } as const

function resolve (run: Run, request: FuzzRequest): { wire: Wire, presented: Presented } {
  let url = PATHS[request.route]
  if (request.route === 'deleteSession') {
    const id = request.sessionId
    url += 'own' in id ? run.sessionId : 'other' in id ? run.otherSessionId : id.encode ? encodeURIComponent(wellFormed(id.text)) : urlPart(id.text)
  }
  if (request.query.length > 0) url += '?' + request.query.map(([key, value]) => `${urlPart(key)}=${urlPart(value)}`).join('&')

  const headers: Record<string, string> = {}
  if (request.contentType !== undefined) headers['content-type'] = headerSafe(request.contentType)
  if (request.authorization !== undefined) {
    const auth = request.authorization
    headers.authorization = headerSafe('raw' in auth ? auth.raw : `${auth.scheme}${auth.separator}${textOf(run, auth.token)}`)
  }
  if (request.cookies.length > 0) {
    headers.cookie = request.cookies.map(({ name, value, encode }) => {
      const text = textOf(run, value)
      return `${headerSafe(name)}=${encode ? cookieText(text) : headerSafe(text)}`
    }).join('; ')
  }
  if (request.origin !== undefined) headers.origin = request.origin
  if (request.secFetchSite !== undefined) headers['sec-fetch-site'] = request.secFetchSite
  if (request.userAgent !== undefined) headers['user-agent'] = headerSafe(request.userAgent)
  if (request.hugeHeader > 0) headers['x-fuzz-padding'] = 'p'.repeat(request.hugeHeader)
  const payload = bodyText(run, request.body)

  let parsed: unknown
  try {
    parsed = payload === undefined ? undefined : JSON.parse(payload)
  } catch {}
  const object = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed as Record<string, unknown> : undefined

  const refresh: string[] = []
  if (run.transport !== 'body' && headers.cookie !== undefined) refresh.push(...cookieValues(headers.cookie, COOKIE_NAME))
  if (run.transport !== 'cookie' && typeof object?.refreshToken === 'string') refresh.push(object.refreshToken)
  const authorization = headers.authorization === undefined ? undefined : trimOws(headers.authorization)
  const access = authorization !== undefined && /^bearer /i.test(authorization) ? authorization.slice(7) : undefined
  return {
    wire: { method: METHODS[request.route], url, headers, payload },
    presented: { access, refresh, login: object === undefined ? undefined : { username: object.username, password: object.password } }
  }
}

/** Every value the cookie `name` could have in this header: raw, unquoted and URL-decoded. */
function cookieValues (header: string, name: string): string[] {
  const values: string[] = []
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue
    let value = part.slice(eq + 1).trim()
    if (value.length > 1 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    values.push(value)
    try {
      values.push(decodeURIComponent(value))
    } catch {}
  }
  return values.filter((value) => value !== '')
}

function isLegitLogin (login: Presented['login']): boolean {
  return (login?.username === USERNAME && login.password === PASSWORD) || (login?.username === OTHER_USERNAME && login.password === OTHER_PASSWORD)
}

/**
 * The route properties, for one answer: 2xx or 4xx only; errors coded; a token leaves only a
 * 200 of login (right password) or refresh (a token this run was issued, session alive), and
 * only the new ones; a success on a protected route needs this run's live access token.
 */
function checkAnswer (run: Run, request: FuzzRequest, { wire, presented }: { wire: Wire, presented: Presented }, answer: Answer): void {
  const { status } = answer
  const { route } = request
  assert.ok((status >= 200 && status < 300) || (status >= 400 && status < 500), `2xx or 4xx, got ${status}: ${answer.body.slice(0, 200)}`)
  const code = status >= 400 ? assertCodedError(answer) : undefined
  // Errors the router raises before any hook (a malformed path) skip the routes' headers.
  if (wire.url.startsWith('/auth/') && code !== 'FST_ERR_BAD_URL') {
    assert.equal(headerOf(answer, 'cache-control'), 'no-store', 'auth answers are never cached')
  }

  const legitAccess = presented.access !== undefined && run.access.includes(presented.access) && !run.revoked
  const legitRefresh = presented.refresh.some((token) => run.refresh.includes(token)) && !run.revoked
  const issuing = status === 200 && (route === 'login' || route === 'refresh')
  if (route === 'login' && issuing) assert.ok(isLegitLogin(presented.login), 'tokens only for the right password')
  if (route === 'refresh' && issuing) assert.ok(legitRefresh, 'tokens only for an issued refresh token of a live session')

  let fresh: string[] = []
  if (issuing) {
    const body = JSON.parse(answer.body) as Record<string, unknown>
    assert.equal(body.tokenType, 'Bearer')
    assert.ok(Number.isSafeInteger(body.expiresIn) && (body.expiresIn as number) > 0, 'expiresIn')
    assert.equal(typeof body.accessToken, 'string')
    const inCookie = setCookiesOf(answer).find((cookie) => cookie.name === COOKIE_NAME && cookie.value !== '')?.value
    const inBody = body.refreshToken
    assert.ok((inCookie === undefined) !== (inBody === undefined), 'the refresh token travels one way')
    if (run.transport === 'cookie') assert.ok(inCookie !== undefined, 'cookie transport: in the cookie')
    if (run.transport === 'body') assert.equal(typeof inBody, 'string', 'body transport: in the body')
    const refreshToken = (inCookie ?? inBody) as string
    fresh = [body.accessToken as string, refreshToken]
    for (const token of fresh) {
      assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/)
      assert.ok(token !== presented.access && !presented.refresh.includes(token), 'a presented token is never handed back')
    }
    if (route === 'refresh') {
      run.access.push(fresh[0] as string)
      run.refresh.push(refreshToken)
    }
  }
  // No other token text anywhere in the answer: not echoed, not leaked, not minted.
  const cookieText = setCookiesOf(answer).map((cookie) => cookie.value).join(' ')
  for (const found of `${answer.body} ${cookieText}`.match(JWT_LIKE) ?? []) {
    assert.ok(fresh.includes(found), `no token in the answer but the ones just issued: ${found.slice(0, 40)}...`)
  }
  const clearSiteData = run.clearSiteData && route === 'logout' && status === 204
  assert.equal(headerOf(answer, 'clear-site-data'), clearSiteData ? CLEAR_SITE_DATA : undefined, 'Clear-Site-Data on a logout only')
  for (const cookie of setCookiesOf(answer)) {
    assert.equal(cookie.name, COOKIE_NAME, 'the only cookie is the refresh cookie')
    assert.notEqual(run.transport, 'body', 'body transport sets no cookie')
    assert.equal(cookie.attributes.get('path'), '/auth')
    assert.ok(cookie.attributes.has('httponly') && cookie.attributes.has('secure'), 'HttpOnly; Secure')
    assert.equal(cookie.attributes.get('samesite'), 'Strict')
    if (cookie.value === '') assert.equal(cookie.attributes.get('max-age'), '0', 'a cleared cookie expires now')
    else assert.ok(Number(cookie.attributes.get('max-age')) > 0, 'a set cookie has a lifetime')
  }

  if (status >= 300) return
  switch (route) {
    case 'me':
      assert.ok(legitAccess, '/me answers only a live access token of the run')
      assert.deepEqual(JSON.parse(answer.body), { id: run.userId, sid: run.sessionId })
      break
    case 'sessions': {
      assert.ok(legitAccess, 'the sessions list needs a live access token of the run')
      const { sessions } = JSON.parse(answer.body) as { sessions: Array<{ id: string, current: boolean }> }
      assert.deepEqual(sessions.filter((session) => session.current).map((session) => session.id), [run.sessionId])
      break
    }
    case 'deleteSession':
      assert.equal(status, 204)
      assert.ok(legitAccess, 'ending a session needs a live access token of the run')
      assert.ok('own' in request.sessionId, 'only the user\'s own session can be ended')
      run.revoked = true
      break
    case 'logout': {
      assert.equal(status, 204)
      assert.equal(answer.body, '')
      const all = request.query.length === 1 && request.query[0]?.[0] === 'all' && request.query[0][1] === 'true'
      if (all) assert.ok(legitAccess, 'logout everywhere needs a live access token of the run')
      // Only the cases where the session certainly ended; the model stays conservative otherwise.
      if (all || (presented.refresh.length > 0 ? presented.refresh.every((token) => run.refresh.includes(token)) : legitAccess)) run.revoked = true
      break
    }
    case 'jwks': {
      assert.equal(status, 200)
      assert.equal(headerOf(answer, 'cache-control'), 'public, max-age=300')
      const { keys } = JSON.parse(answer.body) as { keys: Array<Record<string, unknown>> }
      assert.ok(keys.length > 0)
      for (const key of keys) {
        assert.equal(key.use, 'sig')
        assert.ok(typeof key.kid === 'string' && typeof key.alg === 'string' && typeof key.kty === 'string')
        for (const member of PRIVATE_JWK_MEMBERS) assert.ok(!(member in key), `no private member "${member}" in the JWKS`)
      }
      break
    }
    default:
      assert.equal(status, 200)
  }
}

// ---- Transports -------------------------------------------------------------------------------

async function inject (app: FastifyInstance, wire: Wire): Promise<Answer> {
  const response = await app.inject({ method: wire.method, url: wire.url, headers: wire.headers, ...(wire.payload === undefined ? {} : { payload: wire.payload }) })
  return { status: response.statusCode, headers: response.headers, body: response.body }
}

/** One request on its own connection, through Node's HTTP client and the server's real parser. */
function overHttp (port: number, wire: Wire): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // Node's client frames a GET or DELETE body only with an explicit Content-Length.
    const headers = wire.payload === undefined ? wire.headers : { ...wire.headers, 'content-length': String(Buffer.byteLength(wire.payload)) }
    const request = httpRequest({ host: '127.0.0.1', port, method: wire.method, path: wire.url, headers, agent: false }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('error', reject)
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString() }))
    })
    request.on('error', reject)
    request.end(wire.payload)
  })
}

interface RouteApp { transport: RefreshTokenTransport, clearSiteData: boolean, otherSessionId: string, donors: string[] }

async function startRun (app: FastifyInstance, config: RouteApp, index: number): Promise<Run> {
  const userId = `fuzz-${index}`
  const tokens = await app.tokenAuth.issueSession({ id: userId, claims: { username: userId, role: 'user' } }, { ip: '127.0.0.1', userAgent: 'fuzz' })
  return { ...config, userId, sessionId: tokens.sessionId, access: [tokens.accessToken], refresh: [tokens.refreshToken], revoked: false }
}

/**
 * Tokens of an ended session, to splice segments from: correctly signed, so a splice tests the
 * binding of signature to content, and never a live token, so a splice that rebuilds one whole
 * gets nothing either.
 */
async function deadDonors (app: FastifyInstance): Promise<string[]> {
  const donor = await app.tokenAuth.issueSession({ id: 'donor' })
  await app.tokenAuth.revokeSession(donor.sessionId)
  return [donor.accessToken, donor.refreshToken]
}

/** The app still works after the fuzzing: a new session's token is accepted, a login goes through (or is throttled). */
async function assertHealthy (t: Test, app: FastifyInstance, otherAccessToken: string): Promise<void> {
  const fresh = await app.tokenAuth.issueSession({ id: 'after-fuzz' })
  const probe = await me(app, fresh.accessToken)
  t.equal(probe.statusCode, 200, 'a protected route still answers')
  t.same(probe.json(), { id: 'after-fuzz', sid: fresh.sessionId })
  const login = await app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: PASSWORD } })
  t.ok([200, 429].includes(login.statusCode), `login still answers (${login.statusCode})`)
  t.equal(app.tokenAuth.verifyAccessToken(otherAccessToken).sub, OTHER_USER_ID, 'the bystander session survived every run')
  // Bodies carried `__proto__` and `constructor.prototype` keys with these fields.
  const blank = {} as Record<string, unknown>
  t.same([blank.polluted, blank.isAdmin], [undefined, undefined], 'Object.prototype is untouched')
}

/**
 * One app per refresh-token transport, each signing access tokens its own way. The cookie app
 * keeps the default login limits (per IP and per account), so throttling is fuzzed too; the
 * others turn them off so login bodies reach validation and verifyCredentials. The `both` app
 * rotates keys (an ES256 key still verifies), publishes a JWKS and sends Clear-Site-Data.
 */
const ROUTE_APPS: Array<{ transport: RefreshTokenTransport, algorithm: Algorithm, options: () => Partial<TokenAuthOptions> }> = [
  { transport: 'cookie', algorithm: 'HS256', options: () => ({}) },
  { transport: 'body', algorithm: 'ES256', options: () => ({ ...withKeys(keyFor('ES256').signing), loginRateLimit: false, accountRateLimit: false }) },
  {
    transport: 'both',
    algorithm: 'EdDSA',
    options: () => ({
      ...withKeys(keyFor('EdDSA').signing, keyFor('ES256').verifying),
      jwks: true,
      clearSiteData: true,
      loginRateLimit: false,
      accountRateLimit: false
    })
  }
]

for (const { transport, algorithm, options } of ROUTE_APPS) {
  t.test(`routes under random and mutated requests (refreshTokenTransport: ${transport}, ${algorithm})`, async (t) => {
    const overrides = { refreshTokenTransport: transport, ...options() }
    const app = await build(t, overrides)
    const other = await app.tokenAuth.issueSession({ id: OTHER_USER_ID, claims: { username: OTHER_USERNAME } })
    const config: RouteApp = { transport, clearSiteData: overrides.clearSiteData === true, otherSessionId: other.sessionId, donors: await deadDonors(app) }
    let index = 0
    const seen = new Map<string, number>()
    const held = await holds(t, 'only 2xx/4xx, coded errors, no unearned token', fc.asyncProperty(
      fc.array(fuzzRequest({ transport, jwks: overrides.jwks === true }), { minLength: 1, maxLength: 4 }),
      async (requests) => {
        const run = await startRun(app, config, index++)
        for (const request of requests) {
          const resolved = resolve(run, request)
          const answer = await inject(app, resolved.wire)
          const key = `${request.route} ${answer.status}`
          seen.set(key, (seen.get(key) ?? 0) + 1)
          checkAnswer(run, request, resolved, answer)
        }
        assert.equal(app.tokenAuth.verifyAccessToken(other.accessToken).sub, OTHER_USER_ID, 'no request ended another user\'s session')
      }
    ), RUNS.routes)
    t.comment([...seen].sort().map(([key, count]) => `${key}: ${count}`).join(', '))
    // The generator reaches both sides of the property: successes and refusals on every route.
    // (Behind the cookie app's login limits, few logins get past the throttle.)
    const reached = ['refresh 200', 'refresh 401', 'logout 204', 'me 200', 'me 401', 'sessions 200', 'deleteSession 204', 'deleteSession 404']
    reached.push(...(transport === 'cookie' ? ['login 429'] : ['login 200', 'login 400', 'login 401']))
    if (overrides.jwks === true) reached.push('jwks 200')
    if (held) t.same(reached.filter((key) => !seen.has(key)), [], 'every route answered both ways')
    await assertHealthy(t, app, other.accessToken)
  })
}

t.test('routes over real HTTP (Node\'s parser and its limits)', async (t) => {
  const app = await build(t, { ...withKeys(keyFor('RS256').signing), loginRateLimit: false, accountRateLimit: false })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const other = await app.tokenAuth.issueSession({ id: OTHER_USER_ID, claims: { username: OTHER_USERNAME } })
  const config: RouteApp = { transport: 'cookie', clearSiteData: false, otherSessionId: other.sessionId, donors: await deadDonors(app) }
  let index = 0
  let overflowed = 0
  await holds(t, 'only 2xx/4xx over the wire, coded errors, no unearned token', fc.asyncProperty(
    fc.array(fuzzRequest({ transport: 'cookie', hugeHeaders: true }), { minLength: 1, maxLength: 3 }),
    async (requests) => {
      const run = await startRun(app, config, index++)
      for (const request of requests) {
        const resolved = resolve(run, request)
        const answer = await overHttp(port, resolved.wire)
        if (answer.status === 431) {
          // Refused by Node's parser before any route: allowed only for a head past its limit.
          overflowed++
          // UTF-8 bytes: an upper bound of what the client wrote for non-ASCII header values.
          const head = Object.entries(resolved.wire.headers).reduce((size, [name, value]) => size + Buffer.byteLength(`${name}: ${value}\r\n`), resolved.wire.url.length)
          assert.ok(head > MAX_HEADER_SIZE - 1024, `431 only for an oversized head (${head} bytes)`)
          assert.deepEqual(JSON.parse(answer.body), HEADER_OVERFLOW_BODY)
          continue
        }
        checkAnswer(run, request, resolved, answer)
      }
    }
  ), RUNS.http)
  t.ok(overflowed > 0, `Node's header limit was reached (${overflowed} times)`)
  const fresh = await app.tokenAuth.issueSession({ id: 'after-fuzz' })
  const probe = await overHttp(port, { method: 'GET', url: '/me', headers: { authorization: `Bearer ${fresh.accessToken}` }, payload: undefined })
  t.equal(probe.status, 200, 'the server still answers over HTTP')
  t.equal(app.tokenAuth.verifyAccessToken(other.accessToken).sub, OTHER_USER_ID, 'the bystander session survived')
})

// ---- The token parser -------------------------------------------------------------------------

/** The outcome of verifyAccessToken: accepted, or the coded error it threw. */
function verdictOf (verify: () => unknown): { accepted: true } | { accepted: false, code: string, statusCode: number } {
  try {
    verify()
    return { accepted: true }
  } catch (error) {
    const { code, statusCode } = error as { code: string, statusCode: number }
    return { accepted: false, code, statusCode }
  }
}

/**
 * Each algorithm signs with a new key while a previous one still verifies (rotation), so
 * splices can carry the other key's `kid`, `alg` or signature.
 */
const ROTATIONS: Array<[current: Algorithm, previous: Algorithm]> = [['HS256', 'HS256'], ['EdDSA', 'HS256'], ['ES256', 'ES256'], ['RS256', 'EdDSA']]

for (const [algorithm, previousAlgorithm] of ROTATIONS) {
  t.test(`mutated ${algorithm} access tokens are never accepted (verifyAccessToken and GET /me; previous key ${previousAlgorithm})`, async (t) => {
    const current = keyFor(algorithm)
    const previous = keyFor(previousAlgorithm)
    const app = await build(t, withKeys(current.signing, previous.verifying))
    const retired = await build(t, withKeys(previous.signing))
    const session = await app.tokenAuth.issueSession({ id: 'fuzz-access', claims: { role: 'user' } })
    const other = await app.tokenAuth.issueSession({ id: OTHER_USER_ID, claims: { role: 'admin' } })
    const original = session.accessToken
    // Donors for splicing: the same session under the retired key, another session, another
    // token of this session, and the refresh tokens (another key, another typ).
    const donors = [
      retired.tokenAuth.signAccessToken('fuzz-access', session.sessionId).token,
      other.accessToken,
      app.tokenAuth.signAccessToken('fuzz-access', session.sessionId).token,
      session.refreshToken,
      other.refreshToken
    ]
    t.same(verdictOf(() => app.tokenAuth.verifyAccessToken(original)), { accepted: true }, 'control: the original is accepted')
    t.equal((await me(app, original)).statusCode, 200, 'control: GET /me accepts the original')
    t.same(verdictOf(() => app.tokenAuth.verifyAccessToken(donors[0] as string)), { accepted: true }, 'control: the retired key still verifies')
    if (algorithm === 'ES256') {
      const highS = mutate(original, [{ op: 'highS' }], [])
      t.not(highS, original, 'control: the high-S twin is another text')
      t.match(verdictOf(() => app.tokenAuth.verifyAccessToken(highS)), { accepted: false, code: 'FST_TOKEN_AUTH_INVALID_TOKEN' }, 'control: and it is refused')
    }
    const issued = new Set([original, ...donors.filter((token) => verdictOf(() => app.tokenAuth.verifyAccessToken(token)).accepted)])
    let mutated = 0
    const held = await holds(t, 'a mutated access token is refused with a coded 4xx', fc.asyncProperty(mutations, async (list) => {
      const token = mutate(original, list, donors)
      const verdict = verdictOf(() => app.tokenAuth.verifyAccessToken(token))
      if (issued.has(token)) {
        // Unmutated, or spliced back into a whole token the plugin issued: not a forgery.
        assert.deepEqual(verdict, { accepted: true }, 'an issued token is accepted')
        return
      }
      mutated++
      assert.equal(verdict.accepted, false, `accepted a mutated token: ${JSON.stringify(token)}`)
      if (!verdict.accepted) {
        assert.match(verdict.code, /^FST_TOKEN_AUTH_/)
        assert.equal(verdict.statusCode, 401)
      }
      // Over HTTP the header must be sendable; surrounding whitespace is not part of its value.
      const header = `Bearer ${token}`
      if (headerSafe(header) !== header || issued.has(trimOws(header).slice(7))) return
      const response = await me(app, token)
      const answer = { status: response.statusCode, headers: response.headers, body: response.body }
      assert.ok(answer.status >= 400 && answer.status < 500, `GET /me refused a mutated token with 4xx, got ${answer.status}`)
      assert.match(assertCodedError(answer), /^FST_TOKEN_AUTH_/)
    }), RUNS.access)
    if (held) t.ok(mutated >= RUNS.access * 0.75, `${mutated} of ${RUNS.access} runs mutated the token`)
  })
}

t.test('mutated refresh tokens are never accepted (POST /auth/refresh, cookie and body)', async (t) => {
  const app = await build(t, { refreshTokenTransport: 'both' })
  const donors = await deadDonors(app)
  let mutated = 0

  async function present (token: string, via: 'cookie' | 'body'): Promise<Answer> {
    const response = via === 'cookie'
      ? await app.inject({ method: 'POST', url: '/auth/refresh', headers: { cookie: `${COOKIE_NAME}=${cookieText(token)}` } })
      : await app.inject({ method: 'POST', url: '/auth/refresh', payload: { refreshToken: token } })
    return { status: response.statusCode, headers: response.headers, body: response.body }
  }

  const held = await holds(t, 'a mutated refresh token is refused and leaves the session untouched', fc.asyncProperty(mutations, fc.constantFrom('cookie' as const, 'body' as const), async (list, via) => {
    const session = await app.tokenAuth.issueSession({ id: 'fuzz-refresh' })
    const original = session.refreshToken
    const token = mutate(original, list, [...donors, session.accessToken])
    const answer = await present(token, via)
    if (token === original) {
      assert.equal(answer.status, 200, 'the unmutated token rotates')
      return
    }
    mutated++
    assert.ok(answer.status >= 400 && answer.status < 500, `refused with 4xx, got ${answer.status}: ${answer.body.slice(0, 120)} for ${JSON.stringify(token)}`)
    assert.match(assertCodedError(answer), /^FST_(TOKEN_AUTH_|ERR_VALIDATION$)/)
    assert.equal(answer.body.match(JWT_LIKE), null, 'no token in the answer')
    for (const cookie of setCookiesOf(answer)) assert.equal(cookie.value, '', 'a refused refresh only clears the cookie')
    // Control: the session was not rotated or ended; its real token still rotates, once.
    const control = await present(original, via)
    assert.equal(control.status, 200, `the original still rotates after the mutated attempt: ${control.body.slice(0, 120)}`)
  }), RUNS.refresh)
  if (held) t.ok(mutated >= RUNS.refresh * 0.75, `${mutated} of ${RUNS.refresh} runs mutated the token`)
})

t.test('a duplicated refresh cookie is refused (400 AMBIGUOUS_REFRESH_TOKEN) and changes nothing', async (t) => {
  for (const transport of ['cookie', 'both'] as const) {
    const app = await build(t, { refreshTokenTransport: transport })
    const changes: string[] = []
    for (const event of ['refresh', 'logout', 'sessionRevoked', 'reuseDetected'] as const) app.tokenAuth.events.on(event, () => { changes.push(event) })
    const cookieValue = fc.oneof(
      fc.constant({ original: true as const }),
      mutations.map((list) => ({ list })),
      fc.string({ maxLength: 20 }).map((text) => ({ text }))
    )
    await holds(t, `${transport}: nothing rotated or revoked`, fc.asyncProperty(
      fc.constantFrom('/auth/refresh', '/auth/logout'), fc.array(cookieValue, { minLength: 2, maxLength: 3 }), fc.boolean(),
      async (url, values, bearer) => {
        const session = await app.tokenAuth.issueSession({ id: 'fuzz-duplicate' })
        const cookie = values.map((value) => {
          const text = 'original' in value ? session.refreshToken : 'list' in value ? mutate(session.refreshToken, value.list, []) : value.text
          return `${COOKIE_NAME}=${cookieText(text)}`
        }).join('; ')
        changes.length = 0
        const response = await app.inject({ method: 'POST', url, headers: { cookie, ...(bearer ? { authorization: `Bearer ${session.accessToken}` } : {}) } })
        const answer = { status: response.statusCode, headers: response.headers, body: response.body }
        assert.equal(answer.status, 400, `400 for ${cookie.slice(0, 80)}..., got ${answer.status} ${answer.body.slice(0, 120)}`)
        assert.equal(assertCodedError(answer), 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN')
        assert.equal(answer.body.match(JWT_LIKE), null, 'no token issued')
        assert.deepEqual(changes, [], 'no rotation, logout or revocation')
        assert.equal(app.tokenAuth.verifyAccessToken(session.accessToken).sid, session.sessionId, 'the session is alive')
      }
    ), RUNS.duplicates)
  }
})
