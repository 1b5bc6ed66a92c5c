import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import { exportJWK, SignJWT } from 'jose'
import { Token } from 'structured-headers'
import t, { type Test } from 'tap'
import tokenAuth, { collectMetrics, MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import { type BrowserSession, dbscKey, type DbscKey, dbscProof, parseList, ScriptedBrowser, sfString } from './dbsc-client.js'
import { dpopKey, proof as dpopProof } from './dpop-helpers.js'
import { assertBootFails, baseOptions, handClock, PASSWORD, pollOnly, refreshTokenOf, USERNAME } from './helpers.js'

// Device Bound Session Credentials (docs/design.md, «Device Bound Session Credentials (DBSC)";
// W3C DBSC) end to end over real HTTP: the plugin on 127.0.0.1, and the scripted spec-following
// browser of ./dbsc-client.ts (third-party structured-field parser, jose signatures) or raw
// requests for what a browser would never send.

const INVALID_PROOF = 'FST_TOKEN_AUTH_INVALID_DBSC_PROOF'
const CHALLENGE = 'FST_TOKEN_AUTH_DBSC_CHALLENGE'
const DEVICE_REQUIRED = 'FST_TOKEN_AUTH_DEVICE_COOKIE_REQUIRED'
const ALREADY_BOUND = 'FST_TOKEN_AUTH_SESSION_ALREADY_BOUND'
const MISSING_REFRESH = 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN'
const INVALID_REFRESH = 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'
const SUPERSEDED = 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED'
const REGISTRATION = '/auth/dbsc/registration'
const DEVICE_REFRESH = '/auth/dbsc/refresh'
const CREDENTIALS = { username: USERNAME, password: PASSWORD }
/** A registration or refresh challenge, or a device cookie: `<expiry>.<HMAC>`. */
/** A device cookie: an expiry and a MAC. */
const STAMPED = /^\d+\.[A-Za-z0-9_-]{22}$/
/** A challenge: an expiry, a nonce and a MAC. */
const CHALLENGE_SHAPE = /^\d+\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}$/
/** The device cookie's lifetime by default, in ms. */
const COOKIE_LIFETIME = 600_000

interface Served { app: FastifyInstance, origin: string }

/** The plugin with `dbsc` on (unless overridden), listening on 127.0.0.1; closed at teardown. */
async function serve (t: Test, overrides: Partial<TokenAuthOptions> = {}): Promise<Served> {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ dbsc: true, ...overrides }))
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address() as { port: number }
  return { app, origin: `http://127.0.0.1:${address.port}` }
}

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: any
  /** Every `Set-Cookie` line. */
  setCookies: string[]
}

interface CallOptions {
  method?: string
  cookies?: Record<string, string | undefined>
  /** An array sends the header once per value. */
  headers?: Record<string, string | string[]>
  json?: unknown
}

/** One request with node:http (which can repeat a header, as no browser does), from the server's own origin. */
async function call (origin: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const cookies = Object.entries(options.cookies ?? {}).filter(([, value]) => value !== undefined).map(([name, value]) => `${name}=${value}`)
  const payload = options.json === undefined ? undefined : JSON.stringify(options.json)
  const headers: Record<string, string | string[]> = {
    origin,
    ...(cookies.length > 0 ? { cookie: cookies.join('; ') } : {}),
    ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
    ...options.headers
  }
  return await new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, origin), { method: options.method ?? 'POST', headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let body: unknown = text
        try {
          body = text === '' ? undefined : JSON.parse(text)
        } catch {}
        resolve({ status: res.statusCode as number, headers: res.headers, body, setCookies: res.headers['set-cookie'] ?? [] })
      })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

interface SetCookie { value: string, attributes: string[] }

/** The `Set-Cookie` of `name` among `lines`, its attributes as sent. */
function cookieSet (lines: string[], name: string): SetCookie | undefined {
  for (const line of lines) {
    const [pair, ...attributes] = line.split(';').map((part) => part.trim())
    if (pair?.startsWith(`${name}=`) === true) return { value: pair.slice(name.length + 1), attributes }
  }
  return undefined
}

interface Offer { algorithms: string[], path: unknown, challenge: unknown }

/** `Secure-Session-Registration`, as the third-party parser reads it; undefined when absent. */
function offerOf (field: string | null | undefined): Offer | undefined {
  if (field === null || field === undefined) return undefined
  const members = parseList(field)
  if (members.length !== 1) throw new Error(`one registration offered, got ${field}`)
  const [entry, params] = members[0] as [unknown, Map<string, unknown>]
  if (!Array.isArray(entry)) throw new Error(`not an inner list: ${field}`)
  return {
    algorithms: (entry as Array<[unknown, unknown]>).map(([item]) => item instanceof Token ? item.toString() : `not a token: ${String(item)}`),
    path: params.get('path'),
    challenge: params.get('challenge')
  }
}

/** `Secure-Session-Challenge`'s one challenge and its `id`. */
function challengeOf (field: string | null | undefined): { challenge: unknown, id: unknown } | undefined {
  if (field === null || field === undefined) return undefined
  const members = parseList(field)
  if (members.length !== 1) throw new Error(`one challenge, got ${field}`)
  const [challenge, params] = members[0] as [unknown, Map<string, unknown>]
  return { challenge, id: params.get('id') }
}

interface BearerLogin { refreshToken: string, challenge: string, accessToken: string }

/** A login by raw request: the bearer session's refresh token and the registration challenge offered. */
async function bearerLogin (origin: string): Promise<BearerLogin> {
  const login = await call(origin, '/auth/login', { json: CREDENTIALS })
  if (login.status !== 200) throw new Error(`login failed: ${login.status}`)
  const challenge = offerOf(login.headers['secure-session-registration'] as string | undefined)?.challenge
  if (typeof challenge !== 'string') throw new Error('no registration offered')
  return { refreshToken: cookieSet(login.setCookies, 'refresh_token')?.value as string, challenge, accessToken: login.body.accessToken }
}

/** POST /auth/dbsc/registration with the refresh cookie `token` and `Secure-Session-Response` (none when undefined). */
async function register (origin: string, token: string | undefined, response: string | string[] | undefined, cookies: Record<string, string> = {}): Promise<Answer> {
  return await call(origin, REGISTRATION, {
    cookies: { refresh_token: token, ...cookies },
    headers: response === undefined ? {} : { 'secure-session-response': response }
  })
}

/** POST /auth/refresh with these cookies. */
async function refreshWith (origin: string, cookies: Record<string, string | undefined>): Promise<Answer> {
  return await call(origin, '/auth/refresh', { cookies })
}

/** A browser logged in as alice (its DBSC registration, if any, done on the way). */
async function browserLogin (browser: ScriptedBrowser): Promise<Response> {
  return await browser.fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(CREDENTIALS) })
}

async function browserRefresh (browser: ScriptedBrowser): Promise<Response> {
  return await browser.fetch('/auth/refresh', { method: 'POST' })
}

/** A browser's one DBSC session. */
function onlySession (browser: ScriptedBrowser): BrowserSession {
  const sessions = [...browser.sessions.values()]
  if (sessions.length !== 1) throw new Error(`one DBSC session expected, the browser has ${sessions.length}`)
  return sessions[0] as BrowserSession
}

/** A browser bound to a DBSC session by its login. */
async function boundBrowser (t: Test, origin: string, options: ConstructorParameters<typeof ScriptedBrowser>[1] = {}): Promise<ScriptedBrowser> {
  const browser = new ScriptedBrowser(origin, options)
  const login = await browserLogin(browser)
  t.equal(login.status, 200, 'login')
  t.equal(browser.events.at(-1)?.status, 200, 'the browser registered')
  t.equal(browser.sessions.size, 1, 'the browser keeps a DBSC session')
  return browser
}

function jarValue (browser: ScriptedBrowser, name: string): string {
  const cookie = browser.jar.get(name)
  if (cookie === undefined) throw new Error(`no ${name} in the jar`)
  return cookie.value
}

/** An unsigned JWT (`alg` none). */
function unsigned (header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${part(header)}.${part(claims)}.`
}

/** A JWS signed RS256 by node:crypto, whatever the key's size. */
function rs256 (header: Record<string, unknown>, claims: Record<string, unknown>, privateKey: KeyObject): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const input = `${part(header)}.${part(claims)}`
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
}

/** Asserts an answer's status and error code, and that it left the refresh cookie alone. */
function refused (t: Test, answer: Answer, status: number, code: string, label: string): void {
  t.equal(answer.status, status, `${label}: ${status}`)
  t.equal(answer.body?.code, code, `${label}: ${code}`)
  t.equal(cookieSet(answer.setCookies, 'refresh_token'), undefined, `${label}: the refresh cookie is neither set nor cleared`)
}

t.test('login offers registration to a bearer browser session; the refresh of a bearer session offers it again', async (t) => {
  const { origin } = await serve(t)
  const login = await call(origin, '/auth/login', { json: CREDENTIALS })
  t.equal(login.status, 200)
  const offer = offerOf(login.headers['secure-session-registration'] as string)
  t.same(offer?.algorithms, ['ES256', 'RS256'], 'an inner list of the tokens ES256 and RS256')
  t.equal(offer?.path, REGISTRATION, 'path: the registration endpoint')
  t.match(offer?.challenge, CHALLENGE_SHAPE, 'challenge: an expiry, a nonce and a MAC')
  const token = cookieSet(login.setCookies, 'refresh_token')?.value as string
  t.equal(token.split('.').length, 3, 'a bearer session\'s token')

  const refreshed = await refreshWith(origin, { refresh_token: token })
  t.equal(refreshed.status, 200)
  const again = offerOf(refreshed.headers['secure-session-registration'] as string)
  t.same(again?.algorithms, ['ES256', 'RS256'], 'offered again on the refresh of the bearer session')
  t.equal(again?.path, REGISTRATION)
  t.match(again?.challenge, CHALLENGE_SHAPE)
})

t.test('no offer with dbsc off, with the token in the body, or for a DPoP-bound login', async (t) => {
  const off = await serve(t, { dbsc: false })
  const offLogin = await call(off.origin, '/auth/login', { json: CREDENTIALS })
  t.equal(offLogin.status, 200)
  t.equal(offLogin.headers['secure-session-registration'], undefined, 'dbsc off: no offer on login')
  const offRefresh = await refreshWith(off.origin, { refresh_token: cookieSet(offLogin.setCookies, 'refresh_token')?.value })
  t.equal(offRefresh.status, 200)
  t.equal(offRefresh.headers['secure-session-registration'], undefined, 'dbsc off: no offer on refresh')

  const both = await serve(t, { refreshTokenTransport: 'both' })
  const inBody = await call(both.origin, '/auth/login', { json: { ...CREDENTIALS, refreshTokenTransport: 'body' } })
  t.equal(inBody.status, 200)
  t.type(inBody.body.refreshToken, 'string', 'the token went in the body')
  t.equal(inBody.headers['secure-session-registration'], undefined, 'token in the body: no offer on login')
  const bodyRefresh = await call(both.origin, '/auth/refresh', { json: { refreshToken: inBody.body.refreshToken } })
  t.equal(bodyRefresh.status, 200)
  t.equal(bodyRefresh.headers['secure-session-registration'], undefined, 'token in the body: no offer on refresh')
  const inCookie = await call(both.origin, '/auth/login', { json: CREDENTIALS })
  t.ok(offerOf(inCookie.headers['secure-session-registration'] as string), 'with \'both\', a login whose token goes in the cookie is offered')

  const dpop = await serve(t, { dpop: 'optional' })
  const key = await dpopKey()
  const bound = await call(dpop.origin, '/auth/login', { json: CREDENTIALS, headers: { dpop: await dpopProof(key, 'POST', `${dpop.origin}/auth/login`) } })
  t.equal(bound.status, 200)
  t.equal(bound.body.tokenType, 'DPoP', 'a DPoP-bound session')
  t.equal(bound.headers['secure-session-registration'], undefined, 'DPoP-bound login: no offer')
  const boundToken = cookieSet(bound.setCookies, 'refresh_token')?.value as string
  const boundRefresh = await call(dpop.origin, '/auth/refresh', {
    cookies: { refresh_token: boundToken }, headers: { dpop: await dpopProof(key, 'POST', `${dpop.origin}/auth/refresh`) }
  })
  t.equal(boundRefresh.status, 200)
  t.equal(boundRefresh.headers['secure-session-registration'], undefined, 'DPoP-bound refresh: no offer')
  const registration = await register(dpop.origin, cookieSet(boundRefresh.setCookies, 'refresh_token')?.value, undefined)
  refused(t, registration, 400, ALREADY_BOUND, 'a DPoP-bound session registering')
  const bearer = await call(dpop.origin, '/auth/login', { json: CREDENTIALS })
  t.ok(offerOf(bearer.headers['secure-session-registration'] as string), 'dpop optional: a login without a proof is offered')
})

for (const alg of ['ES256', 'RS256'] as const) {
  for (const keyIn of ['header', 'claims'] as const) {
    t.test(`registration with an ${alg} key in the ${keyIn === 'header' ? 'header jwk' : 'claims key'}: bound token, device cookie, instructions, challenge`, async (t) => {
      const { origin } = await serve(t)
      const browser = new ScriptedBrowser(origin, { algorithms: [alg], keyIn })
      const login = await browserLogin(browser)
      t.equal(login.status, 200)
      const bearerToken = cookieSet(login.headers.getSetCookie(), 'refresh_token')?.value as string
      t.equal(browser.events.length, 1)
      const registration = browser.events[0]!
      t.equal(registration.kind, 'registration')
      t.equal(registration.status, 200, 'registered')
      const session = onlySession(browser)
      t.equal(session.key.alg, alg)
      const sid = refreshTokenOf(bearerToken).sid

      const lines = registration.headers.getSetCookie()
      const rotated = cookieSet(lines, 'refresh_token')
      t.ok(rotated, 'the refresh token rotated')
      t.not(rotated?.value, bearerToken)
      t.ok(rotated?.value.includes(`.dbsc-${session.key.jkt}.`), 'the successor names the key\'s thumbprint after dbsc-')
      t.equal(refreshTokenOf(rotated?.value as string).sid, sid, 'same session')
      t.equal(jarValue(browser, 'refresh_token'), rotated?.value)

      const device = cookieSet(lines, 'device_session')
      t.match(device?.value, STAMPED, 'the device cookie: an expiry and a MAC')
      for (const attribute of ['HttpOnly', 'Path=/auth', 'SameSite=Strict', 'Max-Age=600', 'Secure']) {
        t.ok(device?.attributes.includes(attribute), `device cookie: ${attribute}`)
      }

      const members = alg === 'ES256'
        ? { crv: session.key.jwk.crv, kty: 'EC', x: session.key.jwk.x, y: session.key.jwk.y }
        : { e: session.key.jwk.e, kty: 'RSA', n: session.key.jwk.n }
      const identifier = `${sid}.${Buffer.from(JSON.stringify(members)).toString('base64url')}`
      t.same(registration.body, {
        session_identifier: identifier,
        refresh_url: DEVICE_REFRESH,
        scope: { include_site: false },
        credentials: [{ type: 'cookie', name: 'device_session', attributes: 'Path=/auth; Secure; HttpOnly; SameSite=Strict' }]
      }, 'the session instructions')
      t.equal(session.id, identifier)
      const next = challengeOf(registration.headers.get('secure-session-challenge'))
      t.equal(next?.id, identifier, 'Secure-Session-Challenge names the session identifier')
      t.match(next?.challenge, CHALLENGE_SHAPE)
      t.equal(session.cachedChallenge, next?.challenge, 'the browser cached it')

      const refreshed = await browserRefresh(browser)
      t.equal(refreshed.status, 200, 'the bound session refreshes beside its device cookie')
      t.equal(refreshed.headers.get('secure-session-registration'), null, 'a DBSC-bound session is not offered registration again')
      t.ok(cookieSet(refreshed.headers.getSetCookie(), 'refresh_token')?.value.includes(`.dbsc-${session.key.jkt}.`), 'the successor stays bound')
      t.equal(browser.events.length, 1, 'no device refresh needed while the cookie lives')
    })
  }
}

t.test('with cookie.secure false the device cookie and its credential have no Secure', async (t) => {
  const { origin } = await serve(t, { cookie: { secure: false } })
  const browser = await boundBrowser(t, origin)
  const registration = browser.events[0]!
  const device = cookieSet(registration.headers.getSetCookie(), 'device_session')
  t.same(device?.attributes.filter((attribute) => !attribute.startsWith('Expires=')), ['Max-Age=600', 'Path=/auth', 'HttpOnly', 'SameSite=Strict'])
  t.same((registration.body as { credentials: unknown }).credentials, [{ type: 'cookie', name: 'device_session', attributes: 'Path=/auth; HttpOnly; SameSite=Strict' }])
})

t.test('a cookie domain and SameSite=Lax go to the device cookie and its credential', async (t) => {
  const { origin } = await serve(t, { cookie: { domain: 'example.test', sameSite: 'lax' } })
  const browser = await boundBrowser(t, origin)
  const registration = browser.events[0]!
  const device = cookieSet(registration.headers.getSetCookie(), 'device_session')
  for (const attribute of ['Domain=example.test', 'SameSite=Lax', 'Path=/auth', 'Secure', 'HttpOnly']) t.ok(device?.attributes.includes(attribute), attribute)
  t.same((registration.body as { credentials: unknown }).credentials,
    [{ type: 'cookie', name: 'device_session', attributes: 'Path=/auth; Domain=example.test; Secure; HttpOnly; SameSite=Lax' }])
})

t.test('past cookieMaxAge the browser renews the device cookie through the refresh endpoint, and the refresh goes on', async (t) => {
  const clock = handClock(t)
  const { origin } = await serve(t)
  const browser = await boundBrowser(t, origin)
  const session = onlySession(browser)
  const jkt = session.key.jkt

  t.equal((await browserRefresh(browser)).status, 200, 'while the device cookie lives')
  clock.advance(COOKIE_LIFETIME + 1000)
  const afterExpiry = await browserRefresh(browser)
  t.equal(afterExpiry.status, 200, 'refreshed after the device cookie expired')
  t.ok(cookieSet(afterExpiry.headers.getSetCookie(), 'refresh_token')?.value.includes(`.dbsc-${jkt}.`), 'the successor stays bound')
  const renewals = browser.events.slice(1)
  t.same(renewals.map((event) => [event.kind, event.status]), [['refresh', 200]], 'the cached challenge was signed: no 403 round')
  const renewal = renewals[0]!
  t.same(renewal.body, browser.events[0]!.body, 'the same instructions')
  const device = cookieSet(renewal.headers.getSetCookie(), 'device_session')
  t.match(device?.value, STAMPED, 'a new device cookie')
  t.ok(device?.attributes.includes('Max-Age=600'))
  t.equal(cookieSet(renewal.headers.getSetCookie(), 'refresh_token'), undefined, 'the device refresh does not touch the refresh cookie')
  t.equal(challengeOf(renewal.headers.get('secure-session-challenge'))?.id, session.id, 'and the next challenge')

  // The browser replaced its session record with the refresh's instructions.
  onlySession(browser).cachedChallenge = undefined
  clock.advance(COOKIE_LIFETIME + 1000)
  const withoutChallenge = await browserRefresh(browser)
  t.equal(withoutChallenge.status, 200, 'refreshed after a challenge round')
  const rounds = browser.events.slice(2)
  t.same(rounds.map((event) => [event.kind, event.status]), [['refresh', 403], ['refresh', 200]], 'a 403 with a challenge, then 200')
  t.equal((rounds[0]!.body as { code: string }).code, CHALLENGE)
  const issued = challengeOf(rounds[0]!.headers.get('secure-session-challenge'))
  t.equal(issued?.id, session.id, 'the 403 carries a challenge for the session')
  t.match(issued?.challenge, CHALLENGE_SHAPE)
  t.equal(rounds[0]!.headers.getSetCookie().length, 0, 'a 403 sets no cookie')
  const successor = cookieSet(withoutChallenge.headers.getSetCookie(), 'refresh_token')?.value as string
  t.ok(successor.includes(`.dbsc-${jkt}.`), 'the successor stays bound')
  t.equal((await browserRefresh(browser)).status, 200, 'and refreshes again')
})

t.test('a challenge the server hands out is never one spent already, even within the same second', async (t) => {
  // The clock stays still: a 403 round and its signed retry, answered in the same second, as a
  // browser does them. The brief: the browser signs the 403's challenge and retries; the 200's
  // next challenge serves the next renewal, with no 403 round.
  const clock = handClock(t)
  const { origin } = await serve(t)
  const browser = await boundBrowser(t, origin)
  onlySession(browser).cachedChallenge = undefined
  clock.advance(COOKIE_LIFETIME + 1000)
  t.equal((await browserRefresh(browser)).status, 200)
  const round = browser.events.slice(1)
  t.same(round.map((event) => event.status), [403, 200], 'a 403 round, then 200')
  const spent = challengeOf(round[0]?.headers.get('secure-session-challenge'))?.challenge
  const next = challengeOf(round[1]?.headers.get('secure-session-challenge'))?.challenge
  t.not(next, spent, 'the 200\'s next challenge is not the one its request just spent')
  clock.advance(COOKIE_LIFETIME + 1000)
  t.equal((await browserRefresh(browser)).status, 200)
  t.same(browser.events.slice(3).map((event) => event.status), [200], 'the next renewal signs the cached challenge: no 403 round')

  // A spent challenge is answered 403 with a new one, which the browser signs on its one retry:
  // here the challenge the browser cached was spent by another request in the second it was issued.
  const session = onlySession(browser)
  clock.advance(1000)
  const issue = await call(origin, DEVICE_REFRESH, { cookies: { refresh_token: jarValue(browser, 'refresh_token') }, headers: { 'sec-secure-session-id': sfString(session.id) } })
  t.equal(issue.status, 403)
  const cached = challengeOf(issue.headers['secure-session-challenge'] as string)?.challenge as string
  session.cachedChallenge = cached
  const spend = await call(origin, DEVICE_REFRESH, {
    cookies: { refresh_token: jarValue(browser, 'refresh_token') },
    headers: { 'sec-secure-session-id': sfString(session.id), 'secure-session-response': sfString(await dbscProof(session.key, cached)) }
  })
  t.equal(spend.status, 200, 'the cached challenge spent by another request')
  t.equal(await browser.refreshSession(session), 'refreshed', 'the 403\'s new challenge, signed, renews the cookie')
})

t.test('a bound session\'s refresh and re-authentication need a valid device cookie; the refusal keeps the refresh cookie', async (t) => {
  const clock = handClock(t)
  const { origin } = await serve(t)
  const browser = await boundBrowser(t, origin)
  const other = await boundBrowser(t, origin)
  const device = jarValue(browser, 'device_session')
  const expiry = device.split('.')[0] as string

  const cases: Array<[string, string | undefined]> = [
    ['no device cookie', undefined],
    ['a forged device cookie', `${expiry}.${'A'.repeat(22)}`],
    ['a device cookie that is not one', 'garbage'],
    ['another session\'s device cookie', jarValue(other, 'device_session')]
  ]
  for (const [label, value] of cases) {
    const token = jarValue(browser, 'refresh_token')
    refused(t, await refreshWith(origin, { refresh_token: token, device_session: value }), 401, DEVICE_REQUIRED, `refresh, ${label}`)
    refused(t, await call(origin, '/auth/reauthenticate', { cookies: { refresh_token: token, device_session: value }, json: CREDENTIALS }),
      401, DEVICE_REQUIRED, `reauthenticate, ${label}`)
    t.equal((await browserRefresh(browser)).status, 200, `${label}: the session still works on the device`)
  }

  clock.advance(COOKIE_LIFETIME + 1000)
  const token = jarValue(browser, 'refresh_token')
  refused(t, await refreshWith(origin, { refresh_token: token, device_session: device }), 401, DEVICE_REQUIRED, 'refresh, an expired device cookie')
  refused(t, await call(origin, '/auth/reauthenticate', { cookies: { refresh_token: token, device_session: device }, json: CREDENTIALS }),
    401, DEVICE_REQUIRED, 'reauthenticate, an expired device cookie')

  // The browser stops doing DBSC: it sends the refresh cookie alone once the device cookie expired.
  const session = onlySession(browser)
  browser.sessions.clear()
  const withoutDbsc = await browserRefresh(browser)
  t.equal(withoutDbsc.status, 401, 'a browser that no longer does DBSC')
  t.equal((await withoutDbsc.json()).code, DEVICE_REQUIRED)
  t.same(withoutDbsc.headers.getSetCookie(), [], 'no Set-Cookie')
  t.equal(browser.jar.get('refresh_token')?.value, token, 'the refresh cookie is kept')
  browser.sessions.set(session.id, session)
  const back = await browserRefresh(browser)
  t.equal(back.status, 200, 'with DBSC back, the device renews its cookie and refreshes')

  const reauthenticated = await browser.fetch('/auth/reauthenticate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(CREDENTIALS) })
  t.equal(reauthenticated.status, 200, 're-authentication beside the device cookie')
  t.ok(cookieSet(reauthenticated.headers.getSetCookie(), 'refresh_token')?.value.includes(`.dbsc-${session.key.jkt}.`), 'its successor stays bound')
  t.equal(reauthenticated.headers.get('secure-session-registration'), null)
  t.equal((await browserRefresh(browser)).status, 200)
})

t.test('logout and revocation end a bound session only beside its device cookie', async (t) => {
  const { origin } = await serve(t)
  const browser = await boundBrowser(t, origin)

  const logout = await call(origin, '/auth/logout', { cookies: { refresh_token: jarValue(browser, 'refresh_token') } })
  t.equal(logout.status, 204, 'logout without the device cookie answers as always')
  t.equal((await browserRefresh(browser)).status, 200, 'but ended nothing')
  const revoke = await call(origin, '/auth/revoke', { json: { token: jarValue(browser, 'refresh_token') } })
  t.equal(revoke.status, 200, 'revocation without the device cookie answers 200')
  t.equal((await browserRefresh(browser)).status, 200, 'but ended nothing')
  const forged = await call(origin, '/auth/revoke', { json: { token: jarValue(browser, 'refresh_token') }, cookies: { device_session: 'garbage' } })
  t.equal(forged.status, 200)
  t.equal((await browserRefresh(browser)).status, 200, 'nor with a forged device cookie')

  const token = jarValue(browser, 'refresh_token')
  const device = jarValue(browser, 'device_session')
  const loggedOut = await browser.fetch('/auth/logout', { method: 'POST' })
  t.equal(loggedOut.status, 204, 'the browser logs out with both cookies')
  t.equal(cookieSet(loggedOut.headers.getSetCookie(), 'refresh_token')?.value, '', 'the refresh cookie is cleared')
  const after = await refreshWith(origin, { refresh_token: token, device_session: device })
  t.equal(after.status, 401, 'the session ended')
  t.not(after.body.code, DEVICE_REQUIRED, 'refused by the store, not for the device cookie')

  const second = await boundBrowser(t, origin)
  const secondToken = jarValue(second, 'refresh_token')
  const secondDevice = jarValue(second, 'device_session')
  const revoked = await call(origin, '/auth/revoke', { json: { token: secondToken }, cookies: { device_session: secondDevice } })
  t.equal(revoked.status, 200)
  const refusedAfter = await refreshWith(origin, { refresh_token: secondToken, device_session: secondDevice })
  t.equal(refusedAfter.status, 401, 'revocation beside the device cookie ended the session')
  t.not(refusedAfter.body.code, DEVICE_REQUIRED)
})

t.test('registration refusals: 400 (or 401 for the refresh cookie), nothing rotated', async (t) => {
  // A login per case: more than the login throttle lets one address make.
  const { origin } = await serve(t, { loginRateLimit: false, accountRateLimit: false })
  const key = await dbscKey()
  const otherKey = await dbscKey()
  const rsaKey = await dbscKey('RS256')
  const privateJwk = await exportJWK(key.privateKey)
  const ed25519 = await dpopKey('EdDSA')
  // jose refuses to make or use an RSA key under 2048 bits: node:crypto signs this one.
  const weakRsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const weakJwk = weakRsa.publicKey.export({ format: 'jwk' })
  const other = await bearerLogin(origin)

  type Build = (login: BearerLogin) => Promise<{ token?: string, response?: string | string[] }>
  const registration = (login: BearerLogin, options: Parameters<typeof dbscProof>[2] = {}, signer: DbscKey = key) =>
    dbscProof(signer, login.challenge, { registration: true, ...options })
  const cases: Array<[string, number, string, Build]> = [
    ['no refresh cookie', 401, MISSING_REFRESH, async (login) => ({ token: undefined, response: sfString(await registration(login)) })],
    ['a refresh cookie that is not ours', 401, INVALID_REFRESH, async (login) => ({ token: 'garbage', response: sfString(await registration(login)) })],
    ['a forged refresh cookie', 401, INVALID_REFRESH, async (login) => ({ token: login.refreshToken.slice(0, -2) + (login.refreshToken.endsWith('AA') ? 'BB' : 'AA'), response: sfString(await registration(login)) })],
    ['no Secure-Session-Response', 400, INVALID_PROOF, async () => ({})],
    ['two Secure-Session-Response', 400, INVALID_PROOF, async (login) => ({ response: [sfString(await registration(login)), sfString(await registration(login))] })],
    ['a value that is not an sf-string', 400, INVALID_PROOF, async (login) => ({ response: await registration(login) })],
    ['an sf-list of two strings', 400, INVALID_PROOF, async (login) => ({ response: `${sfString(await registration(login))}, "x"` })],
    ['not a JWT', 400, INVALID_PROOF, async () => ({ response: sfString('not.a-jwt') })],
    ['typ JWT', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { header: { typ: 'JWT' } })) })],
    ['no typ', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { header: { typ: undefined } })) })],
    ['alg none', 400, INVALID_PROOF, async (login) => ({ response: sfString(unsigned({ alg: 'none', typ: 'dbsc+jwt', jwk: key.jwk }, { jti: login.challenge })) })],
    ['alg HS256', 400, INVALID_PROOF, async (login) => ({
      response: sfString(await new SignJWT({ jti: login.challenge }).setProtectedHeader({ alg: 'HS256', typ: 'dbsc+jwt', jwk: key.jwk } as { alg: string }).sign(Buffer.alloc(32, 7)))
    })],
    ['alg EdDSA', 400, INVALID_PROOF, async (login) => ({
      response: sfString(await new SignJWT({ jti: login.challenge }).setProtectedHeader({ alg: 'EdDSA', typ: 'dbsc+jwt', jwk: ed25519.jwk } as { alg: string }).sign(ed25519.privateKey))
    })],
    ['an RS256 proof naming an EC key', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { header: { jwk: key.jwk } }, rsaKey)) })],
    ['an ES256 proof naming an RSA key', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { header: { jwk: rsaKey.jwk } }, key)) })],
    ['an RSA key of 1024 bits', 400, INVALID_PROOF, async (login) => ({
      response: sfString(rs256({ alg: 'RS256', typ: 'dbsc+jwt', jwk: weakJwk }, { jti: login.challenge }, weakRsa.privateKey))
    })],
    ['no key', 400, INVALID_PROOF, async (login) => ({ response: sfString(await dbscProof(key, login.challenge)) })],
    ['a jwk with its private member', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { header: { jwk: privateJwk } })) })],
    ['a claims key with its private member', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { keyIn: 'claims', claims: { key: privateJwk } })) })],
    ['header jwk and claims key differing', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { claims: { key: otherKey.jwk } })) })],
    ['claims key not a JWK', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { claims: { key: 'x' } })) })],
    ['a signature by another key', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { header: { jwk: key.jwk } }, otherKey)) })],
    ['no jti', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { claims: { jti: undefined } })) })],
    ['a jti that is no challenge of ours', 400, INVALID_PROOF, async (login) => ({ response: sfString(await registration(login, { claims: { jti: 'made-up' } })) })],
    ['a challenge of another session', 400, INVALID_PROOF, async (login) => ({ response: sfString(await dbscProof(key, other.challenge, { registration: true })) })]
  ]
  for (const [label, status, code, build] of cases) {
    const login = await bearerLogin(origin)
    const { token = login.refreshToken, response } = await build(login)
    refused(t, await register(origin, label === 'no refresh cookie' ? undefined : token, response), status, code, label)
    const refreshed = await refreshWith(origin, { refresh_token: login.refreshToken })
    t.equal(refreshed.status, 200, `${label}: the refresh cookie still refreshes (nothing rotated)`)
    if (code === INVALID_PROOF && label !== 'no Secure-Session-Response') {
      // The challenge was spent only if a proof passed every check (none did here): it still registers.
      const retry = await register(origin, cookieSet(refreshed.setCookies, 'refresh_token')?.value, sfString(await registration(login)))
      t.equal(retry.status, 200, `${label}: the offered challenge still registers`)
    }
  }
  const second = await register(origin, other.refreshToken, sfString(await dbscProof(otherKey, other.challenge, { registration: true })))
  t.equal(second.status, 200, 'the other session\'s challenge, refused for the first, still registers its own')
})

t.test('registration refusals that depend on time, spending and binding', async (t) => {
  const clock = handClock(t)
  const { origin } = await serve(t)
  const key = await dbscKey()

  await t.test('an expired challenge', async (t) => {
    const login = await bearerLogin(origin)
    clock.advance((600 + 300) * 1000 + 1000)
    refused(t, await register(origin, login.refreshToken, sfString(await dbscProof(key, login.challenge, { registration: true }))), 400, INVALID_PROOF, 'expired')
    t.equal((await refreshWith(origin, { refresh_token: login.refreshToken })).status, 200, 'nothing rotated')
  })

  await t.test('a challenge just before its expiry still registers', async (t) => {
    const login = await bearerLogin(origin)
    clock.advance((600 + 300) * 1000 - 1000)
    const answer = await register(origin, login.refreshToken, sfString(await dbscProof(key, login.challenge, { registration: true })))
    t.equal(answer.status, 200)
  })

  await t.test('a challenge used twice', async (t) => {
    // The first use is spent by a registration that fails later (its token superseded): the
    // second, with the session's current token, is refused for the spent challenge alone.
    const login = await bearerLogin(origin)
    // A second later: a challenge issued in the same second as another for the same session is
    // the same string (see the test of fresh challenges below).
    clock.advance(1000)
    const refreshed = await refreshWith(origin, { refresh_token: login.refreshToken })
    t.equal(refreshed.status, 200)
    const current = cookieSet(refreshed.setCookies, 'refresh_token')?.value as string
    const proof = sfString(await dbscProof(key, login.challenge, { registration: true }))
    const first = await register(origin, login.refreshToken, proof)
    refused(t, first, 401, SUPERSEDED, 'first use, with the rotated token')
    refused(t, await register(origin, current, proof), 400, INVALID_PROOF, 'second use')
    t.match((await register(origin, current, proof)).body?.message, /expired or used/)
    const next = offerOf(refreshed.headers['secure-session-registration'] as string)?.challenge as string
    const answer = await register(origin, current, sfString(await dbscProof(key, next, { registration: true })))
    t.equal(answer.status, 200, 'the refresh\'s own challenge registers')
  })

  await t.test('a session bound already: 400 SESSION_ALREADY_BOUND before the proof', async (t) => {
    const login = await bearerLogin(origin)
    const refreshed = await refreshWith(origin, { refresh_token: login.refreshToken })
    const next = offerOf(refreshed.headers['secure-session-registration'] as string)?.challenge as string
    const bound = await register(origin, cookieSet(refreshed.setCookies, 'refresh_token')?.value, sfString(await dbscProof(key, next, { registration: true })))
    t.equal(bound.status, 200)
    const boundToken = cookieSet(bound.setCookies, 'refresh_token')?.value as string
    const device = cookieSet(bound.setCookies, 'device_session')?.value as string
    const otherKey = await dbscKey()
    refused(t, await register(origin, boundToken, sfString(await dbscProof(otherKey, login.challenge, { registration: true }))), 400, ALREADY_BOUND, 'an unspent challenge of the session')
    refused(t, await register(origin, boundToken, undefined), 400, ALREADY_BOUND, 'no proof at all')
    refused(t, await register(origin, boundToken, undefined, { device_session: device }), 400, ALREADY_BOUND, 'beside its device cookie')
    const still = await refreshWith(origin, { refresh_token: boundToken, device_session: device })
    t.equal(still.status, 200, 'the bound session goes on')
    t.ok(cookieSet(still.setCookies, 'refresh_token')?.value.includes(`.dbsc-${key.jkt}.`), 'with its key')
  })
})

t.test('a registration racing a refresh of the same token: the racer is superseded, the session goes on', async (t) => {
  // A frozen clock: both requests rotate at the same instant, as a real race would.
  handClock(t)
  const { origin } = await serve(t)
  const key = await dbscKey()

  await t.test('the registration first, then the refresh of the token it rotated', async (t) => {
    const login = await bearerLogin(origin)
    const bound = await register(origin, login.refreshToken, sfString(await dbscProof(key, login.challenge, { registration: true })))
    t.equal(bound.status, 200)
    const racer = await refreshWith(origin, { refresh_token: login.refreshToken })
    refused(t, racer, 401, SUPERSEDED, 'the refresh inside reuseGrace')
    const token = cookieSet(bound.setCookies, 'refresh_token')?.value as string
    const device = cookieSet(bound.setCookies, 'device_session')?.value as string
    const next = await refreshWith(origin, { refresh_token: token, device_session: device })
    t.equal(next.status, 200, 'the bound session goes on: not ended as a theft')
    t.ok(cookieSet(next.setCookies, 'refresh_token')?.value.includes(`.dbsc-${key.jkt}.`))
  })

  await t.test('the refresh first, then the registration with the token it rotated', async (t) => {
    const login = await bearerLogin(origin)
    const refreshed = await refreshWith(origin, { refresh_token: login.refreshToken })
    t.equal(refreshed.status, 200)
    const racer = await register(origin, login.refreshToken, sfString(await dbscProof(key, login.challenge, { registration: true })))
    refused(t, racer, 401, SUPERSEDED, 'the registration inside reuseGrace')
    t.equal(cookieSet(racer.setCookies, 'device_session'), undefined, 'no device cookie')
    const next = await refreshWith(origin, { refresh_token: cookieSet(refreshed.setCookies, 'refresh_token')?.value })
    t.equal(next.status, 200, 'the bearer session goes on')
  })
})

t.test('the device refresh endpoint: refusals, challenges, and never the refresh cookie', async (t) => {
  const clock = handClock(t)
  const { origin } = await serve(t)
  const browser = await boundBrowser(t, origin)
  const session = onlySession(browser)
  const other = await boundBrowser(t, origin)
  const otherSession = onlySession(other)
  const bearer = await bearerLogin(origin)
  const otherKey = await dbscKey()
  const rsaKey = await dbscKey('RS256')
  const sid = session.id.split('.')[0] as string
  const token = () => jarValue(browser, 'refresh_token')
  const deviceRefresh = async (headers: Record<string, string | string[]>, cookies: Record<string, string | undefined> = { refresh_token: token() }) =>
    await call(origin, DEVICE_REFRESH, { headers, cookies })
  const id = { 'sec-secure-session-id': sfString(session.id) }
  /** A fresh challenge for the session, from a 403 (a second later than any before: see the test of fresh challenges). */
  const challenge = async (): Promise<string> => {
    clock.advance(1000)
    const answer = await deviceRefresh(id)
    t.equal(answer.status, 403)
    return challengeOf(answer.headers['secure-session-challenge'] as string)?.challenge as string
  }
  const signed = async (value: string, signer: DbscKey = session.key, options: Parameters<typeof dbscProof>[2] = {}) =>
    ({ ...id, 'secure-session-response': sfString(await dbscProof(signer, value, options)) })
  const otherMembers = Buffer.from(JSON.stringify({ crv: otherKey.jwk.crv, kty: 'EC', x: otherKey.jwk.x, y: otherKey.jwk.y })).toString('base64url')

  const identifierCases: Array<[string, Record<string, string | string[]>, Record<string, string | undefined> | undefined, number, string]> = [
    ['no Sec-Secure-Session-Id', {}, undefined, 400, INVALID_PROOF],
    ['an identifier that is not an sf-string', { 'sec-secure-session-id': session.id }, undefined, 400, INVALID_PROOF],
    ['two identifiers', { 'sec-secure-session-id': [sfString(session.id), sfString(session.id)] }, undefined, 400, INVALID_PROOF],
    ['a malformed identifier', { 'sec-secure-session-id': sfString('not-an-identifier') }, undefined, 400, INVALID_PROOF],
    ['an identifier whose key is no JSON', { 'sec-secure-session-id': sfString(`${sid}.bm90LWpzb24`) }, undefined, 400, INVALID_PROOF],
    ['an identifier whose key is not EC or RSA', { 'sec-secure-session-id': sfString(`${sid}.${Buffer.from(JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: 'AA' })).toString('base64url')}`) }, undefined, 400, INVALID_PROOF],
    ['an identifier whose EC key is invalid', { 'sec-secure-session-id': sfString(`${sid}.${Buffer.from(JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' })).toString('base64url')}`) }, undefined, 400, INVALID_PROOF],
    ['the identifier with another key (thumbprint mismatch)', { 'sec-secure-session-id': sfString(`${sid}.${otherMembers}`) }, undefined, 401, INVALID_REFRESH],
    ['another session\'s identifier', { 'sec-secure-session-id': sfString(otherSession.id) }, undefined, 401, INVALID_REFRESH],
    ['an identifier with an escaped quote', { 'sec-secure-session-id': `"${session.id}\\""` }, undefined, 400, INVALID_PROOF],
    ['an identifier with an invalid escape', { 'sec-secure-session-id': `"${session.id}\\x"` }, undefined, 400, INVALID_PROOF],
    ['an unterminated sf-string', { 'sec-secure-session-id': `"${session.id}` }, undefined, 400, INVALID_PROOF],
    ['an sf-string with a tab', { 'sec-secure-session-id': `"${session.id}\t"` }, undefined, 400, INVALID_PROOF],
    ['an sf-string with bad parameters', { 'sec-secure-session-id': `${sfString(session.id)};X` }, undefined, 400, INVALID_PROOF],
    ['no refresh cookie', id, {}, 401, MISSING_REFRESH],
    ['a refresh cookie that is not ours', id, { refresh_token: 'garbage' }, 401, INVALID_REFRESH],
    ['a bearer session\'s refresh cookie', id, { refresh_token: bearer.refreshToken }, 401, INVALID_REFRESH],
    ['the bearer refresh token of the same session, before binding', { 'sec-secure-session-id': sfString(`${refreshTokenOf(bearer.refreshToken).sid}.${otherMembers}`) }, { refresh_token: bearer.refreshToken }, 401, INVALID_REFRESH]
  ]
  for (const [label, headers, cookies, status, code] of identifierCases) {
    const answer = await deviceRefresh(headers, cookies)
    refused(t, answer, status, code, label)
    t.same(answer.setCookies, [], `${label}: no cookie set or cleared`)
    t.equal(answer.headers['secure-session-challenge'], undefined, `${label}: no challenge`)
  }

  const withParameters = await deviceRefresh({ 'sec-secure-session-id': ` ${sfString(session.id)};a=1;b="x;y" ` })
  t.equal(withParameters.status, 403, 'an identifier\'s parameters (and spaces around it) are ignored: it names the session, which needs a proof')
  t.equal(challengeOf(withParameters.headers['secure-session-challenge'] as string)?.id, session.id)

  const proofCases: Array<[string, (value: string) => Promise<Record<string, string | string[]>>]> = [
    ['a proof signed by another key', async (value) => await signed(value, otherKey)],
    ['an RS256 proof for an EC session key', async (value) => await signed(value, rsaKey)],
    ['typ JWT', async (value) => await signed(value, session.key, { header: { typ: 'JWT' } })],
    ['alg none', async (value) => ({ ...id, 'secure-session-response': sfString(unsigned({ alg: 'none', typ: 'dbsc+jwt' }, { jti: value })) })],
    ['a proof that is not an sf-string', async (value) => ({ ...id, 'secure-session-response': await dbscProof(session.key, value) })],
    ['two proofs', async (value) => ({ ...id, 'secure-session-response': [sfString(await dbscProof(session.key, value)), sfString(await dbscProof(session.key, value))] })],
    ['no jti', async () => await signed('x', session.key, { claims: { jti: undefined } })],
    ['garbage', async () => ({ ...id, 'secure-session-response': sfString('garbage') })]
  ]
  for (const [label, build] of proofCases) {
    const value = await challenge()
    const answer = await deviceRefresh(await build(value))
    refused(t, answer, 400, INVALID_PROOF, label)
    t.same(answer.setCookies, [], `${label}: no cookie set`)
    const retry = await deviceRefresh(await signed(value))
    t.equal(retry.status, 200, `${label}: the challenge was not spent; signed by the session key it passes`)
  }

  const wrongChallenges: Array<[string, () => Promise<string>]> = [
    ['a challenge that is no challenge of ours', async () => 'made-up'],
    ['a forged challenge', async () => `${(await challenge()).split('.')[0]}.${'A'.repeat(22)}`],
    ['another session\'s challenge', async () => otherSession.cachedChallenge as string],
    ['a registration challenge of this session', async () => bearer.challenge],
    ['a spent challenge', async () => {
      const value = await challenge()
      t.equal((await deviceRefresh(await signed(value))).status, 200, 'its first use')
      return value
    }],
    ['a stale challenge', async () => {
      const value = await challenge()
      clock.advance((600 + 300) * 1000 + 1000)
      return value
    }]
  ]
  for (const [label, pick] of wrongChallenges) {
    const value = await pick()
    clock.advance(1000)
    const answer = await deviceRefresh(await signed(value))
    refused(t, answer, 403, CHALLENGE, label)
    t.same(answer.setCookies, [], `${label}: no cookie set`)
    const next = challengeOf(answer.headers['secure-session-challenge'] as string)
    t.equal(next?.id, session.id, `${label}: a new challenge for the session`)
    t.match(next?.challenge, CHALLENGE_SHAPE)
    t.not(next?.challenge, value)
    const retry = await deviceRefresh(await signed(next?.challenge as string))
    t.equal(retry.status, 200, `${label}: the new challenge, signed, passes`)
    t.same(retry.setCookies.map((line) => line.split('=')[0]), ['device_session'], `${label}: a 200 sets the device cookie only`)
  }

  const rsa = await boundBrowser(t, origin, { algorithms: ['RS256'] })
  const rsaSession = onlySession(rsa)
  const esProof = await call(origin, DEVICE_REFRESH, {
    cookies: { refresh_token: jarValue(rsa, 'refresh_token') },
    headers: { 'sec-secure-session-id': sfString(rsaSession.id), 'secure-session-response': sfString(await dbscProof(otherKey, rsaSession.cachedChallenge as string)) }
  })
  refused(t, esProof, 400, INVALID_PROOF, 'an ES256 proof for an RSA session key')
  const rsaRefresh = await call(origin, DEVICE_REFRESH, {
    cookies: { refresh_token: jarValue(rsa, 'refresh_token') },
    headers: { 'sec-secure-session-id': sfString(rsaSession.id), 'secure-session-response': sfString(await dbscProof(rsaSession.key, rsaSession.cachedChallenge as string)) }
  })
  t.equal(rsaRefresh.status, 200, 'an RSA session renews its device cookie')
  t.equal(challengeOf(rsaRefresh.headers['secure-session-challenge'] as string)?.id, rsaSession.id)
})

t.test('store failures: 503 on registration (cookie kept) and on the device refresh (the browser skips)', async (t) => {
  const store = new FlakyStore()
  t.teardown(() => store.close())
  const { app, origin } = await serve(t, { store })
  const metrics = collectMetrics(app.tokenAuth.events)
  t.teardown(() => metrics.close())
  const key = await dbscKey()

  const login = await bearerLogin(origin)
  store.failRotate = true
  const down = await register(origin, login.refreshToken, sfString(await dbscProof(key, login.challenge, { registration: true })))
  t.equal(down.status, 503, 'the rotation failed')
  t.equal(cookieSet(down.setCookies, 'refresh_token'), undefined, 'the refresh cookie is kept')
  t.equal(cookieSet(down.setCookies, 'device_session'), undefined, 'no device cookie')
  t.equal(metrics.snapshot()['fastify_token_auth_unavailable_responses_total{route="dbscRegistration"}'], 1)
  store.failRotate = false

  const browser = await boundBrowser(t, origin)
  const session = onlySession(browser)
  store.failUseOnce = true
  const answer = await call(origin, DEVICE_REFRESH, {
    cookies: { refresh_token: jarValue(browser, 'refresh_token') },
    headers: { 'sec-secure-session-id': sfString(session.id), 'secure-session-response': sfString(await dbscProof(session.key, session.cachedChallenge as string)) }
  })
  t.equal(answer.status, 503, 'the challenge could not be spent')
  t.same(answer.setCookies, [], 'no cookie set or cleared')
  t.equal(metrics.snapshot()['fastify_token_auth_unavailable_responses_total{route="dbscRefresh"}'], 1)
  t.equal(await browser.refreshSession(session), 'skipped', 'the browser skips the refresh on a 5xx and keeps its session')
  t.equal(browser.sessions.size, 1)
  // Past the device cookie's life, the page's refresh goes out without it, saying the renewal was skipped.
  browser.jar.delete('device_session')
  const tokenBefore = jarValue(browser, 'refresh_token')
  const skipped = await browser.fetch('/auth/refresh', { method: 'POST' })
  t.equal(skipped.status, 503, 'a refresh the browser could not prepare: 503, retry')
  t.equal((await skipped.json()).code, 'FST_TOKEN_AUTH_DEVICE_REFRESH_SKIPPED')
  t.equal(skipped.headers.get('retry-after'), '1')
  t.same(skipped.headers.getSetCookie(), [], 'the refresh cookie is kept')
  t.equal(jarValue(browser, 'refresh_token'), tokenBefore)
  store.failUseOnce = false
  const retried = await browser.fetch('/auth/refresh', { method: 'POST' })
  t.equal(retried.status, 200, 'once the store is back, the retry renews the device cookie first and refreshes')
  t.match(jarValue(browser, 'refresh_token'), /\.dbsc-[\w-]{43}\./, 'still bound')
  t.same(browser.events.slice(-1).map((event) => [event.kind, event.status]), [['refresh', 200]])
  const unsaid = await refreshWith(origin, { refresh_token: jarValue(browser, 'refresh_token') })
  t.equal(unsaid.status, 401, 'without the cookie and without the browser saying it skipped: 401')
  t.equal(unsaid.body.code, 'FST_TOKEN_AUTH_DEVICE_COOKIE_REQUIRED')
})

t.test('dbsc off: a DBSC-bound token minted while on is refused as unknown; the DBSC routes are 404', async (t) => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const on = await serve(t, { store })
  const browser = await boundBrowser(t, on.origin)
  const token = jarValue(browser, 'refresh_token')
  const device = jarValue(browser, 'device_session')
  const off = await serve(t, { store, dbsc: false })
  const refreshed = await refreshWith(off.origin, { refresh_token: token, device_session: device })
  t.equal(refreshed.status, 401)
  t.equal(refreshed.body.code, INVALID_REFRESH)
  const reauthenticated = await call(off.origin, '/auth/reauthenticate', { cookies: { refresh_token: token, device_session: device }, json: CREDENTIALS })
  t.equal(reauthenticated.status, 401)
  t.equal(reauthenticated.body.code, INVALID_REFRESH)
  t.equal((await call(off.origin, REGISTRATION, { cookies: { refresh_token: token } })).status, 404)
  t.equal((await call(off.origin, DEVICE_REFRESH, { cookies: { refresh_token: token } })).status, 404)
  const still = await refreshWith(on.origin, { refresh_token: token, device_session: device })
  t.equal(still.status, 200, 'the session itself was not touched: it refreshes where dbsc is on')
})

t.test('options: boot refusals, the __Host- device cookie, a route left out', async (t) => {
  await assertBootFails(t, { dbsc: true, refreshTokenTransport: 'body' }, 'dbsc', 'refresh token in the body')
  await assertBootFails(t, { dbsc: true, store: pollOnly(new MemoryStore()) }, 'store', 'a store without useOnce')
  await assertBootFails(t, { dbsc: { cookieName: 'refresh_token' } }, 'dbsc.cookieName', 'the refresh cookie\'s name')
  await assertBootFails(t, { dbsc: { cookieName: 'sid' }, cookie: { name: 'sid' } }, 'dbsc.cookieName', 'a custom refresh cookie\'s name')
  await assertBootFails(t, { dbsc: { cookieMaxAge: 9 } }, 'dbsc.cookieMaxAge', 'cookieMaxAge below 10')
  await assertBootFails(t, { dbsc: { cookieMaxAge: 86401 } }, 'dbsc.cookieMaxAge', 'cookieMaxAge above a day')
  await assertBootFails(t, { dbsc: 'on' }, 'dbsc', 'not a boolean or an object')
  await assertBootFails(t, { dbsc: true, routes: { dbscRefresh: false } }, 'routes.dbscRefresh', 'registration without a refresh endpoint')

  await t.test('cookie.hostPrefix: __Host-device_session at Path=/', async (t) => {
    const { origin } = await serve(t, { cookie: { hostPrefix: true } })
    const browser = await boundBrowser(t, origin)
    const registration = browser.events[0]!
    const device = cookieSet(registration.headers.getSetCookie(), '__Host-device_session')
    t.ok(device, 'the device cookie has the prefix')
    t.ok(device?.attributes.includes('Path=/'))
    t.ok(device?.attributes.includes('Secure'))
    t.same((registration.body as { credentials: unknown }).credentials,
      [{ type: 'cookie', name: '__Host-device_session', attributes: 'Path=/; Secure; HttpOnly; SameSite=Strict' }])
    t.ok(jarValue(browser, '__Host-refresh_token').includes(`.dbsc-${onlySession(browser).key.jkt}.`))
    t.equal((await browserRefresh(browser)).status, 200)
  })

  await t.test('a custom cookie name and lifetime', async (t) => {
    const clock = handClock(t)
    const { origin } = await serve(t, { dbsc: { cookieName: 'dev', cookieMaxAge: 30 } })
    const browser = await boundBrowser(t, origin)
    const device = cookieSet(browser.events[0]!.headers.getSetCookie(), 'dev')
    t.ok(device?.attributes.includes('Max-Age=30'))
    clock.advance(31_000)
    t.equal((await browserRefresh(browser)).status, 200)
    t.same(browser.events.slice(1).map((event) => [event.kind, event.status]), [['refresh', 200]], 'renewed after 30 s')
  })

  await t.test('routes.dbscRegistration false: no offer, no route', async (t) => {
    const { origin } = await serve(t, { routes: { dbscRegistration: false } })
    const login = await call(origin, '/auth/login', { json: CREDENTIALS })
    t.equal(login.status, 200)
    t.equal(login.headers['secure-session-registration'], undefined, 'no offer')
    const token = cookieSet(login.setCookies, 'refresh_token')?.value
    t.equal((await call(origin, REGISTRATION, { cookies: { refresh_token: token } })).status, 404)
    const refreshed = await refreshWith(origin, { refresh_token: token })
    t.equal(refreshed.status, 200)
    t.equal(refreshed.headers['secure-session-registration'], undefined, 'no offer on refresh either')
  })

  await t.test('a registration path of its own', async (t) => {
    const { origin } = await serve(t, { routes: { dbscRegistration: { path: '/bind' }, dbscRefresh: { path: '/renew' } } })
    const login = await call(origin, '/auth/login', { json: CREDENTIALS })
    t.equal(offerOf(login.headers['secure-session-registration'] as string)?.path, '/auth/bind')
    const browser = await boundBrowser(t, origin)
    t.equal((browser.events[0]!.body as { refresh_url: string }).refresh_url, '/auth/renew')
  })
})

t.test('responseFormat oauth2: a refresh without the device cookie is invalid_grant', async (t) => {
  const { origin } = await serve(t, { responseFormat: 'oauth2' })
  const browser = await boundBrowser(t, origin)
  const answer = await refreshWith(origin, { refresh_token: jarValue(browser, 'refresh_token') })
  t.equal(answer.status, 400)
  t.match(answer.body, { error: 'invalid_grant', code: DEVICE_REQUIRED })
  t.equal(cookieSet(answer.setCookies, 'refresh_token'), undefined, 'the refresh cookie is kept')
  const refreshed = await browserRefresh(browser)
  t.equal(refreshed.status, 200, 'beside the device cookie it refreshes')
  t.type((await refreshed.json()).access_token, 'string')
})

t.test('cross-site registration and device refresh are refused', async (t) => {
  const { origin } = await serve(t)
  const login = await bearerLogin(origin)
  const key = await dbscKey()
  const crossSite = await call(origin, REGISTRATION, {
    cookies: { refresh_token: login.refreshToken },
    headers: { origin: 'https://evil.example', 'secure-session-response': sfString(await dbscProof(key, login.challenge, { registration: true })) }
  })
  t.equal(crossSite.status, 403)
  t.equal(crossSite.body.code, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST')
  const answer = await register(origin, login.refreshToken, sfString(await dbscProof(key, login.challenge, { registration: true })))
  t.equal(answer.status, 200, 'the challenge was not spent by the cross-site request')
  const refresh = await call(origin, DEVICE_REFRESH, { cookies: { refresh_token: cookieSet(answer.setCookies, 'refresh_token')?.value }, headers: { 'sec-fetch-site': 'cross-site' } })
  t.equal(refresh.status, 403)
  t.equal(refresh.body.code, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST')
})

/** A MemoryStore whose rotation or `useOnce` can be made to fail. */
class FlakyStore extends MemoryStore {
  failRotate = false
  failUseOnce = false

  override async rotate (...args: Parameters<MemoryStore['rotate']>): ReturnType<MemoryStore['rotate']> {
    if (this.failRotate) throw new Error('store down')
    return await super.rotate(...args)
  }

  override async useOnce (...args: Parameters<NonNullable<MemoryStore['useOnce']>>): Promise<boolean> {
    if (this.failUseOnce) throw new Error('store down')
    return await (super.useOnce as NonNullable<MemoryStore['useOnce']>)(...args)
  }
}
