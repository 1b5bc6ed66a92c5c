import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, compactVerify, decodeJwt, decodeProtectedHeader, importJWK, type JWK } from 'jose'
import t, { type Test } from 'tap'
import {
  AuthClientError, createAuthClient, createDpopSigner, type DpopKeyStorage, indexedDbKeyStorage, memoryKeyStorage, parseWwwAuthenticate, stepUpRequired,
  type AuthClientOptions, type LogoutReason, type TokenInfo
} from '../lib/client.js'
import tokenAuth, { MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import type { RevocationContext, RotateRequest, RotateResult, SessionRecord } from '../lib/stores/types.js'
import { baseOptions, BOB, BOB_PASSWORD, PASSWORD, sleep, USER_ID, USERNAME } from './helpers.js'

// The client helper in Node against a real app over real HTTP. Its browser side (cookie mode,
// a real page under CSP) is driven in Chromium by test/browser.test.ts.

interface Hit { method: string, url: string, authorization: string | undefined, dpop: string | undefined }

/**
 * The plugin (transport 'both' unless overridden, no login throttling), `GET /me`, `POST /echo`
 * (protected, answers its JSON body), `GET /app-401` (an app's own 401, not the plugin's),
 * `GET /sensitive` (step-up: a sign-in at most 1 s old), `GET /claims` (role and cv), and
 * every request it receives, recorded by an onRequest hook.
 */
async function serve (t: Test, overrides: Partial<TokenAuthOptions> = {}) {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ refreshTokenTransport: 'both', loginRateLimit: false, ...overrides }))
  const hits: Hit[] = []
  app.addHook('onRequest', async (request) => {
    hits.push({ method: request.method, url: request.url, authorization: request.headers.authorization, dpop: request.headers.dpop as string | undefined })
  })
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub, sid: request.user.sid }))
  app.post('/echo', { onRequest: app.authenticate }, async (request) => ({ body: request.body }))
  app.get('/app-401', async (_request, reply) => reply.code(401).send({ code: 'APP_DENIED' }))
  app.get('/sensitive', { onRequest: app.tokenAuth.requireAuth({ maxAge: 1 }) }, async (request) => ({ sid: request.user.sid }))
  app.get('/claims', { onRequest: app.authenticate }, async (request) => ({ role: request.user.role, cv: request.user.cv }))
  t.teardown(() => app.close())
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const count = (method: string, url: string) => hits.filter((hit) => hit.method === method && hit.url === url).length
  return { app, base, hits, count }
}

/** Records what the client reports through its callbacks. */
function spies () {
  const logouts: LogoutReason[] = []
  const tokens: TokenInfo[] = []
  const options: AuthClientOptions = { onLogout: (reason) => logouts.push(reason), onTokens: (info) => tokens.push(info) }
  return { logouts, tokens, options }
}

/** Sleeps until the client's access token has expired on the server too (its `exp` is never later). */
async function untilExpired (expiresAt: number | undefined): Promise<void> {
  await sleep(Math.max(0, (expiresAt as number) - Date.now()) + 20)
}

/**
 * A fetch that holds the responses of the requests `hold` picks until `release()`; `answered`
 * resolves once the server has answered one of them.
 */
function gatedFetch (hold: (request: Request) => boolean) {
  let release!: () => void
  let answer!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  const answered = new Promise<void>((resolve) => { answer = resolve })
  const gated: typeof fetch = async (input, init) => {
    const request = new Request(input, init)
    const response = await fetch(request)
    if (hold(request)) {
      answer()
      await released
    }
    return response
  }
  return { fetch: gated, release, answered }
}

/** A fetch that keeps the refresh cookie the way a browser does, for the auth routes only. */
function cookieJar () {
  const jar = { cookie: undefined as string | undefined, credentials: [] as Array<RequestCredentials | undefined> }
  const jarFetch: typeof fetch = async (input, init) => {
    const request = new Request(input, init)
    const auth = new URL(request.url).pathname.startsWith('/auth/')
    if (auth) jar.credentials.push(init?.credentials)
    if (auth && jar.cookie !== undefined) request.headers.set('cookie', jar.cookie)
    const response = await fetch(request)
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';')[0] as string
      jar.cookie = pair.endsWith('=') ? undefined : pair
    }
    return response
  }
  return Object.assign(jar, { fetch: jarFetch })
}

async function json (response: Response): Promise<Record<string, unknown>> {
  return await response.json() as Record<string, unknown>
}

t.test('login, authenticated fetch; the token goes to its own origin only', async (t) => {
  const { base, hits, count } = await serve(t)
  const { logouts, tokens, options } = spies()
  const client = createAuthClient({ baseUrl: base, ...options })

  const refused = await client.login(USERNAME, 'wrong-password').catch((error: unknown) => error)
  t.ok(refused instanceof AuthClientError, 'a refused login throws an AuthClientError')
  t.match(refused, { name: 'AuthClientError', statusCode: 401, code: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS', message: 'Invalid username or password', retryAfter: undefined })
  t.equal(client.accessToken, undefined)
  t.equal(tokens.length, 0)

  const before = Date.now()
  await client.login(USERNAME, PASSWORD)
  t.type(client.accessToken, 'string')
  t.ok((client.expiresAt as number) >= before + 900_000 && (client.expiresAt as number) <= Date.now() + 900_000, 'expiresAt = now + expiresIn')
  t.same(tokens, [{ accessToken: client.accessToken, expiresAt: client.expiresAt }], 'onTokens got the new token')

  const me = await client.fetch('/me')
  t.equal(me.status, 200)
  t.match(await json(me), { id: USER_ID })
  t.equal(hits.at(-1)?.authorization, `Bearer ${client.accessToken}`, 'the server saw the Bearer token')
  t.equal((await client.fetch(new URL(`${base}/me`))).status, 200, 'a URL input')
  t.equal((await client.fetch(new Request(`${base}/me`))).status, 200, 'a Request input')

  const own = await client.fetch('/me', { headers: { authorization: 'Bearer not-a-jwt' } })
  t.equal(own.status, 401, "the caller's own Authorization is sent as is")
  t.equal((await json(own)).code, 'FST_TOKEN_AUTH_INVALID_TOKEN')
  const app401 = await client.fetch('/app-401')
  t.equal(app401.status, 401, "an app's own 401 is returned as is")
  t.same(await json(app401), { code: 'APP_DENIED' })
  t.equal(count('POST', '/auth/refresh'), 0, 'neither 401 triggered a refresh')

  // Another origin: a plain HTTP server that records the headers it receives and answers 500 text.
  const seen: IncomingHttpHeaders[] = []
  const foreign = createServer((request, response) => {
    seen.push(request.headers)
    response.writeHead(500, { 'content-type': 'text/plain' }).end('oops')
  })
  foreign.listen(0, '127.0.0.1')
  await once(foreign, 'listening')
  t.teardown(() => { foreign.close() })
  const foreignBase = `http://127.0.0.1:${(foreign.address() as AddressInfo).port}`
  t.equal((await client.fetch(`${foreignBase}/collect`)).status, 500)
  t.equal(seen[0]?.authorization, undefined, 'no token for another origin')

  // An answer that is not the plugin's JSON still becomes an AuthClientError.
  const elsewhere = createAuthClient({ baseUrl: foreignBase })
  await t.rejects(elsewhere.login(USERNAME, PASSWORD), { statusCode: 500, code: undefined, message: 'HTTP 500' })
  t.same(logouts, [])
})

t.test('expiry: concurrent calls share ONE refresh, then are retried with their bodies', async (t) => {
  const { base, hits, count } = await serve(t, { accessTokenTtl: 1 })
  const { logouts, tokens, options } = spies()
  const client = createAuthClient({ baseUrl: base, ...options })
  await client.login(USERNAME, PASSWORD)
  const expired = client.accessToken
  await untilExpired(client.expiresAt)

  const headers = { 'content-type': 'application/json' }
  const responses = await Promise.all([
    client.fetch('/me'),
    client.fetch('/me'),
    client.fetch('/me'),
    client.fetch('/echo', { method: 'POST', headers, body: JSON.stringify({ n: 1 }) }),
    client.fetch(new Request(`${base}/echo`, { method: 'POST', headers, body: JSON.stringify({ n: 2 }) }))
  ])
  t.same(responses.map((response) => response.status), [200, 200, 200, 200, 200], 'every call succeeded')
  t.same(await json(responses[3] as Response), { body: { n: 1 } }, 'the init body was sent again')
  t.same(await json(responses[4] as Response), { body: { n: 2 } }, 'the Request body was sent again')
  t.equal(count('POST', '/auth/refresh'), 1, 'exactly one refresh')
  t.equal(count('GET', '/me'), 6, 'each /me sent twice: 401, then the retry')
  t.equal(count('POST', '/echo'), 4)
  const fresh = client.accessToken
  t.not(fresh, expired, 'a new access token')
  t.same(hits.filter((hit) => hit.url !== '/auth/refresh').slice(-10).map((hit) => hit.authorization).sort(),
    [...Array(5).fill(`Bearer ${expired}`), ...Array(5).fill(`Bearer ${fresh}`)].sort(), 'first the expired token, then the new one')
  t.equal(tokens.length, 2, 'onTokens: login and one refresh')
  t.same(logouts, [])
})

t.test('a 401 that comes back after another caller refreshed is retried without a second refresh', async (t) => {
  const { base, count } = await serve(t, { accessTokenTtl: 1 })
  const gate = gatedFetch((request) => request.headers.has('x-slow'))
  const client = createAuthClient({ baseUrl: base, fetch: gate.fetch })
  await client.login(USERNAME, PASSWORD)
  await untilExpired(client.expiresAt)

  const slow = client.fetch('/me', { headers: { 'x-slow': '1' } })
  const quick = await client.fetch('/me')
  t.equal(quick.status, 200, 'the quick call refreshed and succeeded')
  t.equal(count('POST', '/auth/refresh'), 1)
  gate.release()
  t.equal((await slow).status, 200, 'the slow call, 401 with the old token, retried with the new one')
  t.equal(count('POST', '/auth/refresh'), 1, 'still one refresh')
  t.equal(count('GET', '/me'), 4)
})

t.test('a refused refresh ends the session: onLogout("expired"), the first 401 is returned', async (t) => {
  const { app, base, count } = await serve(t, { accessTokenTtl: 1 })
  const { logouts, options } = spies()
  const client = createAuthClient({ baseUrl: base, ...options })
  await client.login(USERNAME, PASSWORD)
  // Not through client.fetch: with a 1 s lifetime (exp is in whole seconds) the token may be expired already.
  const [session] = await app.tokenAuth.listSessions(USER_ID)
  await app.tokenAuth.revokeSession(session!.id)
  await untilExpired(client.expiresAt)

  const response = await client.fetch('/me')
  t.equal(response.status, 401)
  t.equal((await json(response)).code, 'FST_TOKEN_AUTH_TOKEN_EXPIRED', "the request's own 401, not the refresh's")
  t.equal(response.headers.get('www-authenticate'), 'Bearer error="invalid_token"')
  t.equal(count('POST', '/auth/refresh'), 1)
  t.same(logouts, ['expired'])
  t.equal(client.accessToken, undefined)
  t.equal(client.expiresAt, undefined)

  const after = await client.fetch('/me')
  t.equal(after.status, 401)
  t.equal((await json(after)).code, 'FST_TOKEN_AUTH_MISSING_TOKEN')
  t.equal(await client.refresh(), false, 'no refresh token left: false')
  t.equal(count('POST', '/auth/refresh'), 1, 'and no request for it')
  t.same(logouts, ['expired'], 'onLogout once per session')

  // refresh() itself: false and the same callback.
  const other = spies()
  const second = createAuthClient({ baseUrl: base, ...other.options })
  await second.login(USERNAME, PASSWORD)
  await app.tokenAuth.revokeUserSessions(USER_ID)
  t.equal(await second.refresh(), false)
  t.same(other.logouts, ['expired'])
})

t.test('a refresh token whose successor was used ends the session: onLogout("revoked"); superseded in body mode ends it too', async (t) => {
  // [label, options, how many times the thief refreshes, the code the client gets, its logout reason]
  for (const [label, overrides, thefts, code, reason] of [
    // The thief also spends the successor, so the client's token is two generations old: theft.
    // (Had the thief stopped at one, the client's refresh would be recovered, not refused.)
    ['reuse (no grace)', { reuseGrace: 0 }, 2, 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED', 'revoked'],
    ['superseded (grace, no grace answers left)', { reuseGraceLimit: 0 }, 1, 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED', 'expired']
  ] as const) {
    const { base } = await serve(t, overrides)
    // The login's refresh token, read off the wire, is used by someone else first.
    let stolen = ''
    const codes: unknown[] = []
    const { logouts, options } = spies()
    const client = createAuthClient({
      baseUrl: base,
      ...options,
      fetch: async (input, init) => {
        const response = await fetch(input, init)
        const body = await json(response.clone())
        if (String(input).endsWith('/auth/login')) stolen = body.refreshToken as string
        if (String(input).endsWith('/auth/refresh')) codes.push(body.code)
        return response
      }
    })
    await client.login(USERNAME, PASSWORD)
    for (let use = 1; use <= thefts; use++) {
      const thief = await fetch(`${base}/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: stolen }) })
      t.equal(thief.status, 200, `${label}: the thief's use ${use} rotates`)
      stolen = (await json(thief)).refreshToken as string
    }
    t.equal(await client.refresh(), false, `${label}: the client's refresh is refused`)
    t.same(codes, [code], `${label}: ${code}`)
    t.same(logouts, [reason], `${label}: onLogout('${reason}')`)
    t.equal(client.accessToken, undefined)
  }
})

t.test('a revoked session ends without a refresh: onLogout("revoked")', async (t) => {
  const { app, base, count } = await serve(t)
  const { logouts, options } = spies()
  const client = createAuthClient({ baseUrl: base, ...options })
  await client.login(USERNAME, PASSWORD)
  const { sid } = await json(await client.fetch('/me'))
  await app.tokenAuth.revokeSession(sid as string)
  const response = await client.fetch('/me')
  t.equal(response.status, 401)
  t.equal((await json(response)).code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  t.equal(count('POST', '/auth/refresh'), 0, 'no refresh attempted')
  t.same(logouts, ['revoked'])
  t.equal(client.accessToken, undefined)
})

/** A MemoryStore that is unreachable for refreshes and revocations while `down`. */
class DownableStore extends MemoryStore {
  down = false

  override async rotate (request: RotateRequest): Promise<RotateResult> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
    return await super.rotate(request)
  }

  override async revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
    return await super.revokeSession(sessionId, userId, context)
  }
}

t.test('store down (503): no logout, tokens kept; everything works once it is back', async (t) => {
  const store = new DownableStore()
  const { base, count } = await serve(t, { accessTokenTtl: 1, store })
  const { logouts, options } = spies()
  const client = createAuthClient({ baseUrl: base, ...options })
  await client.login(USERNAME, PASSWORD)
  const token = client.accessToken
  await untilExpired(client.expiresAt)
  store.down = true

  const responses = await Promise.all([client.fetch('/me'), client.fetch('/me'), client.fetch('/me')])
  t.equal(count('POST', '/auth/refresh'), 1, 'one refresh for the three calls')
  for (const response of responses) {
    t.equal(response.status, 503, "each caller gets the refresh's 503")
    t.equal(response.headers.get('retry-after'), '1')
    t.equal((await json(response)).code, 'FST_TOKEN_AUTH_STORE_UNAVAILABLE', 'each with a readable body')
  }
  await t.rejects(client.refresh(), { name: 'AuthClientError', statusCode: 503, code: 'FST_TOKEN_AUTH_STORE_UNAVAILABLE', retryAfter: 1 })
  await t.rejects(client.logout(), { statusCode: 503, code: 'FST_TOKEN_AUTH_STORE_UNAVAILABLE' }, 'a logout the server could not do throws')
  t.equal(client.accessToken, token, 'the tokens are kept')
  t.same(logouts, [], 'a 503 is not a logout')

  store.down = false
  const me = await client.fetch('/me')
  t.equal(me.status, 200, 'the kept refresh token works once the store is back')
  t.not(client.accessToken, token)
})

t.test('logout and logout everywhere', async (t) => {
  const { app, base, count } = await serve(t)
  const a = spies()
  const b = spies()
  const c = spies()
  const clientA = createAuthClient({ baseUrl: base, ...a.options })
  const clientB = createAuthClient({ baseUrl: base, ...b.options })
  const clientC = createAuthClient({ baseUrl: base, ...c.options })
  for (const client of [clientA, clientB, clientC]) await client.login(USERNAME, PASSWORD)

  const tokenA = clientA.accessToken
  await clientA.logout()
  t.same(a.logouts, ['logout'])
  t.equal(clientA.accessToken, undefined)
  const old = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${tokenA}` } })
  t.equal(old.status, 401, "the logged-out session's access token fails at once")
  t.equal((await json(old)).code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  t.equal((await clientB.fetch('/me')).status, 200, 'the other sessions live on')
  t.equal((await app.tokenAuth.listSessions(USER_ID)).length, 2)

  await clientB.logout({ everywhere: true })
  t.equal(count('POST', '/auth/logout?all=true'), 1)
  t.same(b.logouts, ['logout'])
  t.same(await app.tokenAuth.listSessions(USER_ID), [], 'no session left')
  const ended = await clientC.fetch('/me')
  t.equal(ended.status, 401)
  t.equal((await json(ended)).code, 'FST_TOKEN_AUTH_SESSION_REVOKED', "C's session was ended too")
  t.same(c.logouts, ['revoked'])

  // Logging out without a session: nothing to end, no error, no second callback.
  await clientA.logout({ everywhere: true })
  t.same(a.logouts, ['logout'])
  t.equal(count('POST', '/auth/refresh'), 0)
})

t.test('logout everywhere with an expired access token refreshes it first', async (t) => {
  const { app, base, count } = await serve(t, { accessTokenTtl: 1 })
  const { logouts, options } = spies()
  const client = createAuthClient({ baseUrl: base, ...options })
  await client.login(USERNAME, PASSWORD)
  await untilExpired(client.expiresAt)
  await client.logout({ everywhere: true })
  t.equal(count('POST', '/auth/logout?all=true'), 2, 'a 401, then the retry')
  t.equal(count('POST', '/auth/refresh'), 1)
  t.same(logouts, ['logout'])
  t.same(await app.tokenAuth.listSessions(USER_ID), [], 'no session left')
})

t.test('a refresh in flight does not undo a logout or a login', async (t) => {
  const { base } = await serve(t)
  const gate = gatedFetch((request) => request.url.endsWith('/auth/refresh'))
  const client = createAuthClient({ baseUrl: base, fetch: gate.fetch })
  await client.login(USERNAME, PASSWORD)
  const duringLogout = client.refresh()
  await gate.answered
  await client.logout()
  gate.release()
  t.equal(await duringLogout, false, 'the refresh, answered 200 before the logout, reports no session')
  t.equal(client.accessToken, undefined, 'and stores nothing')

  const next = gatedFetch((request) => request.url.endsWith('/auth/refresh'))
  const other = createAuthClient({ baseUrl: base, fetch: next.fetch })
  await other.login(USERNAME, PASSWORD)
  const duringLogin = other.refresh()
  await next.answered
  await other.login(USERNAME, PASSWORD)
  const loggedIn = other.accessToken
  next.release()
  t.equal(await duringLogin, true)
  t.equal(other.accessToken, loggedIn, "the new login's token is kept")
})

t.test("transports: a 'body' server with a custom prefix; a cookie-only server refuses a body client", async (t) => {
  const bodyOnly = await serve(t, { refreshTokenTransport: 'body', prefix: '/session' })
  const client = createAuthClient({ baseUrl: bodyOnly.base, prefix: '/session' })
  await client.login(USERNAME, PASSWORD)
  t.equal(await client.refresh(), true)
  t.equal((await client.fetch('/me')).status, 200)

  const cookieOnly = await serve(t, { refreshTokenTransport: 'cookie' })
  await t.rejects(createAuthClient({ baseUrl: cookieOnly.base }).login(USERNAME, PASSWORD),
    { statusCode: 400, code: 'FST_ERR_VALIDATION' }, 'a server without body transport cannot serve a body client')
})

t.test('cookie transport, as in a browser: the cookie restores the session; superseded is not a logout', async (t) => {
  const { base, count } = await serve(t, { refreshTokenTransport: 'cookie', reuseGraceLimit: 0 })
  const jar = cookieJar()

  // A page: `location` exists, so relative URLs and the cookie transport are the defaults.
  const globals = globalThis as { location?: { href: string } }
  globals.location = { href: `${base}/index.html` }
  t.teardown(() => { delete globals.location })
  const { logouts, options } = spies()
  const page = createAuthClient({ fetch: jar.fetch, ...options })
  await page.login(USERNAME, PASSWORD)
  t.type(jar.cookie, 'string', 'the refresh token is in the cookie')
  t.same(jar.credentials, ['include'], "auth requests are sent with credentials: 'include'")
  t.equal((await page.fetch('/me')).status, 200)

  // A reload: a new client with no token, the same cookie.
  const reloaded = createAuthClient({ fetch: jar.fetch })
  t.equal(await reloaded.refresh(), true, 'refresh() restores the session')
  t.type(reloaded.accessToken, 'string')
  const another = createAuthClient({ fetch: jar.fetch })
  const me = await another.fetch('/me')
  t.equal(me.status, 200, 'fetch without a token: 401 MISSING_TOKEN, refresh, retry')
  t.equal(count('POST', '/auth/refresh'), 2)

  // Another tab rotated the cookie and this one still sends the previous value: superseded.
  const previous = jar.cookie
  t.equal(await reloaded.refresh(), true)
  jar.cookie = previous
  const superseded = await reloaded.refresh().catch((error: unknown) => error)
  t.match(superseded, { statusCode: 401, code: 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED' }, 'refresh() throws: the session lives on')
  t.type(reloaded.accessToken, 'string', 'the tokens are kept')

  await page.logout()
  t.same(logouts, ['logout'])
  t.equal(jar.cookie, undefined, 'logout cleared the cookie')
  t.equal(await another.refresh(), false, 'no cookie: no session')
  t.equal(another.accessToken, undefined)
})

t.test('parseWwwAuthenticate: schemes, token68, tokens and quoted strings with escapes, several challenges', async (t) => {
  t.same(parseWwwAuthenticate(''), [])
  t.same(parseWwwAuthenticate('Bearer'), [{ scheme: 'bearer', params: {} }])
  t.same(parseWwwAuthenticate('Bearer error="invalid_token"'), [{ scheme: 'bearer', params: { error: 'invalid_token' } }])
  t.same(parseWwwAuthenticate(
    'Bearer error="insufficient_user_authentication", error_description="a \\"fresh\\" sign-in, please \\\\ now", max_age=300, acr_values="mfa phr"'
  ), [{
    scheme: 'bearer',
    params: { error: 'insufficient_user_authentication', error_description: 'a "fresh" sign-in, please \\ now', max_age: '300', acr_values: 'mfa phr' }
  }], 'quoted strings unescaped, commas inside them kept, a token value, several params')
  t.same(parseWwwAuthenticate('Basic realm="fastify-token-auth", charset="UTF-8", BEARER Realm = api ,Error="x,y"'), [
    { scheme: 'basic', params: { realm: 'fastify-token-auth', charset: 'UTF-8' } },
    { scheme: 'bearer', params: { realm: 'api', error: 'x,y' } }
  ], 'two challenges; names and schemes lower-cased; spaces around "="')
  t.same(parseWwwAuthenticate('Negotiate a87421000492aa874209af8bc028==, Bearer'), [
    { scheme: 'negotiate', params: {}, token68: 'a87421000492aa874209af8bc028==' },
    { scheme: 'bearer', params: {} }
  ], 'a token68')
  t.same(parseWwwAuthenticate('Bearer error=first, error=second'), [{ scheme: 'bearer', params: { error: 'first' } }], 'a repeated name: the first wins')
  t.same(parseWwwAuthenticate('Bearer error="unterminated, max_age=1'), [{ scheme: 'bearer', params: {} }], 'an unterminated quoted string ends the parse')
  t.same(parseWwwAuthenticate('Bearer max_age=1, error=@'), [{ scheme: 'bearer', params: { max_age: '1' } }], 'a value that is neither token nor quoted string ends it')
  t.same(parseWwwAuthenticate('Bearer max_age=1, "x"'), [{ scheme: 'bearer', params: { max_age: '1' } }], 'so does a stray quoted string')
  const [challenge] = parseWwwAuthenticate('Bearer __proto__="x"')
  t.same(Object.entries(challenge?.params ?? {}), [['__proto__', 'x']], 'a param named __proto__ is plain data')
})

t.test('stepUpRequired: the RFC 9470 challenge of a 401 as a typed outcome, nothing else', async (t) => {
  const answer = (status: number, header?: string) => new Response(null, { status, headers: header === undefined ? {} : { 'www-authenticate': header } })
  t.same(stepUpRequired(answer(401, 'Bearer error="insufficient_user_authentication", error_description="too old", max_age=300, acr_values="mfa  hwk"')),
    { kind: 'step-up-required', maxAge: 300, acrValues: ['mfa', 'hwk'] })
  t.same(stepUpRequired(answer(401, 'Bearer error="insufficient_user_authentication"')), { kind: 'step-up-required' }, 'no max_age, no acr_values')
  t.same(stepUpRequired(answer(401, 'Bearer error="insufficient_user_authentication", max_age=soon, acr_values=""')), { kind: 'step-up-required' },
    'a max_age that is not a whole number and an empty acr_values are left out')
  t.same(stepUpRequired(answer(401, 'Basic realm="x", Bearer error=insufficient_user_authentication, max_age=5')), { kind: 'step-up-required', maxAge: 5 },
    'the Bearer challenge among several, its error as a token')
  t.equal(stepUpRequired(answer(401, 'Bearer error="invalid_token"')), undefined, 'another error')
  t.equal(stepUpRequired(answer(401, 'Basic error="insufficient_user_authentication"')), undefined, 'another scheme')
  t.equal(stepUpRequired(answer(401)), undefined, 'no challenge')
  t.equal(stepUpRequired(answer(403, 'Bearer error="insufficient_user_authentication"')), undefined, 'not a 401')
})

t.test('step-up: no refresh for it; reauthenticate keeps the session, a wrong password changes nothing (body mode)', async (t) => {
  const { base, count } = await serve(t)
  const { logouts, tokens, options } = spies()
  const client = createAuthClient({ baseUrl: base, ...options })
  await client.login(USERNAME, PASSWORD)
  t.equal((await client.fetch('/sensitive')).status, 200, 'a fresh sign-in passes')
  // auth_time is in whole seconds and the check is now - auth_time > maxAge.
  await sleep(2100)

  const refused = await client.fetch('/sensitive')
  t.equal(refused.status, 401)
  t.equal((await json(refused)).code, 'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION', 'the body is still readable')
  t.same(stepUpRequired(refused), { kind: 'step-up-required', maxAge: 1 })
  t.equal(count('POST', '/auth/refresh'), 0, 'no refresh attempted for it')
  t.equal(count('GET', '/sensitive'), 2, 'and no retry')
  const { sid } = await json(await client.fetch('/me'))

  await t.rejects(client.reauthenticate(USERNAME, 'wrong-password'), { name: 'AuthClientError', statusCode: 401, code: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS' })
  t.equal(tokens.length, 1, 'a wrong password: no new tokens')
  t.equal((await client.fetch('/sensitive')).status, 401, 'still too old')
  await t.rejects(client.reauthenticate(BOB, BOB_PASSWORD), { statusCode: 403, code: 'FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH' })

  const before = client.accessToken
  await client.reauthenticate(USERNAME, PASSWORD)
  t.not(client.accessToken, before, 'fresh tokens')
  t.equal(tokens.length, 2, 'onTokens told')
  const passed = await client.fetch('/sensitive')
  t.equal(passed.status, 200, 'the step-up route passes now')
  t.equal((await json(passed)).sid, sid, 'the same session')
  t.equal(count('POST', '/auth/reauthenticate'), 3)
  t.equal(await client.refresh(), true, 'the rotated refresh token is the one kept')
  t.same(logouts, [])
})

t.test('reauthenticate in cookie mode sends the cookie; with the session gone it ends it like a refused refresh', async (t) => {
  const { app, base } = await serve(t, { refreshTokenTransport: 'cookie' })
  const jar = cookieJar()
  const { logouts, options } = spies()
  const client = createAuthClient({ baseUrl: base, refreshTokenTransport: 'cookie', fetch: jar.fetch, ...options })
  await client.login(USERNAME, PASSWORD)
  const cookie = jar.cookie
  await client.reauthenticate(USERNAME, PASSWORD)
  t.not(jar.cookie, cookie, 'the cookie was rotated')
  t.same(jar.credentials, ['include', 'include'])
  t.equal(await client.refresh(), true)

  await app.tokenAuth.revokeUserSessions(USER_ID)
  const ended = await client.reauthenticate(USERNAME, PASSWORD).catch((error: unknown) => error)
  t.match(ended, { name: 'AuthClientError', statusCode: 401, code: 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN' })
  t.same(logouts, ['expired'], 'the session is over')
  t.equal(client.accessToken, undefined)
})

t.test('changed claims: the 401 is cured by one refresh and one retry, which carries the new claims', async (t) => {
  const { app, base, count } = await serve(t)
  const client = createAuthClient({ baseUrl: base })
  await client.login(USERNAME, PASSWORD)
  t.same(await json(await client.fetch('/claims')), { role: 'admin' })
  t.equal((await app.tokenAuth.updateUserClaims(USER_ID, { username: USERNAME, role: 'auditor' })).length, 1)

  const stale = await fetch(`${base}/claims`, { headers: { authorization: `Bearer ${client.accessToken}` } })
  t.equal(stale.status, 401, 'the old access token is refused')
  t.equal((await json(stale)).code, 'FST_TOKEN_AUTH_CLAIMS_CHANGED')
  t.match(stale.headers.get('www-authenticate'), /^Bearer error="invalid_token", error_description="/)
  const fresh = await client.fetch('/claims')
  t.equal(fresh.status, 200)
  t.same(await json(fresh), { role: 'auditor', cv: 1 }, 'the new claims and their version')
  t.equal(count('POST', '/auth/refresh'), 1, 'one refresh')
  t.equal(count('GET', '/claims'), 4, 'the first call, the raw fetch, the 401 and the retry')
})

t.test('a refresh the risk hook denies ends the session: onLogout("revoked"); a refused login over the cap is an AuthClientError', async (t) => {
  const { base } = await serve(t, {
    onRefresh: ({ client }) => client.userAgent === 'suspicious' ? { action: 'deny', reason: 'new device' } : undefined,
    maxSessionsPerUser: 1,
    sessionLimitPolicy: 'refuse'
  })
  const { logouts, options } = spies()
  const client = createAuthClient({
    baseUrl: base,
    ...options,
    fetch: async (input, init) => {
      const request = new Request(input, init)
      if (request.url.endsWith('/auth/refresh')) request.headers.set('user-agent', 'suspicious')
      return await fetch(request)
    }
  })
  await client.login(USERNAME, PASSWORD)
  const over = await createAuthClient({ baseUrl: base }).login(USERNAME, PASSWORD).catch((error: unknown) => error)
  t.ok(over instanceof AuthClientError)
  t.match(over, { statusCode: 403, code: 'FST_TOKEN_AUTH_SESSION_LIMIT_REACHED' }, 'one session allowed: the second login is refused')

  t.equal(await client.refresh(), false, 'the denied refresh: no session any more')
  t.same(logouts, ['revoked'], 'ended by the server')
  t.equal(client.accessToken, undefined)
  await t.resolves(createAuthClient({ baseUrl: base }).login(USERNAME, PASSWORD), 'the denied session no longer counts against the cap')
})

// DPoP (RFC 9449): lib/client-dpop.ts, and the client's `dpop` option. In Node there is no
// IndexedDB: the signer keeps its key in memory, and a fake IndexedDB below stands in for the
// browser's (the real one is driven in Chromium by test/browser.test.ts).

/** A proof's header and claims, and whether its signature verifies with its own jwk (jose, not our code). */
async function readProof (proof: string | undefined) {
  const header = decodeProtectedHeader(proof as string) as { typ: string, alg: string, jwk: JWK }
  await compactVerify(proof as string, await importJWK(header.jwk, 'ES256'))
  return { header, claims: decodeJwt(proof as string), jkt: await calculateJwkThumbprint(header.jwk) }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('base64url')

/** A fetch that records what it sends and answers from `answers` in turn (the last one repeats). */
function scriptedFetch (...answers: Array<() => Response>) {
  const sent: Request[] = []
  const scripted: typeof fetch = async (input, init) => {
    sent.push(new Request(input, init))
    return (answers[Math.min(sent.length, answers.length) - 1] as () => Response)()
  }
  return { fetch: scripted, sent }
}

t.test('DPoP: login binds the session to the key, fetch sends DPoP + proof with ath, refresh keeps the key, logout', async (t) => {
  const { base, hits, count } = await serve(t, { dpop: 'required' })
  let refreshToken = ''
  const kept: CryptoKeyPair[] = []
  const storage = memoryKeyStorage()
  const spy: DpopKeyStorage = { get: () => storage.get(), add: async (keys) => { kept.push(keys); return await storage.add(keys) } }
  const signer = createDpopSigner({ storage: spy })
  const recording: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input)
    const response = await fetch(input, init)
    if (response.ok && /\/auth\/(login|refresh)$/.test(url)) refreshToken = (await response.clone().json()).refreshToken
    return response
  }
  const client = createAuthClient({ baseUrl: base, dpop: signer, fetch: recording })

  await client.login(USERNAME, PASSWORD)
  const login = await readProof(hits.at(-1)?.dpop)
  t.same(login.header, { typ: 'dpop+jwt', alg: 'ES256', jwk: login.header.jwk }, 'typ, alg, jwk and nothing else')
  t.same(Object.keys(login.header.jwk).sort(), ['crv', 'kty', 'x', 'y'], 'the public members only')
  t.match(login.header.jwk, { kty: 'EC', crv: 'P-256' })
  t.match(login.claims, { htm: 'POST', htu: `${base}/auth/login`, jti: /^[\w-]{22}$/ })
  t.ok(Math.abs((login.claims.iat as number) - Date.now() / 1000) < 5, 'iat is now')
  t.notOk('ath' in login.claims || 'nonce' in login.claims, 'no ath, no nonce')
  t.equal(kept.length, 1, 'a key pair created at the first proof and stored')
  t.equal(kept[0]?.privateKey.extractable, false, 'the private key is not extractable')
  await t.rejects(crypto.subtle.exportKey('jwk', kept[0]?.privateKey as CryptoKey), 'nor can it be exported')
  t.equal(login.jkt, await signer.thumbprint(), 'thumbprint(): RFC 7638, as jose computes it')
  t.equal(refreshToken.split('.')[2], login.jkt, "the refresh token names the key's thumbprint")
  t.equal(decodePayloadOf(client.accessToken).cnf?.jkt, login.jkt, 'the access token is bound (cnf.jkt)')

  const me = await client.fetch('/me?tab=1#top')
  t.equal(me.status, 200)
  t.equal(hits.at(-1)?.authorization, `DPoP ${client.accessToken}`)
  const call = await readProof(hits.at(-1)?.dpop)
  t.match(call.claims, { htm: 'GET', htu: `${base}/me`, ath: sha256(client.accessToken as string) }, 'htu without query and fragment, ath')
  t.not(call.claims.jti, login.claims.jti, 'a new jti per proof')
  t.equal(call.jkt, login.jkt, 'the same key')

  const bound = refreshToken
  t.equal(await client.refresh(), true)
  t.equal((await readProof(hits.at(-1)?.dpop)).jkt, login.jkt)
  t.not(refreshToken, bound, 'rotated')
  t.equal(refreshToken.split('.')[2], login.jkt, 'and still bound to the same key')
  t.equal(kept.length, 1, 'the stored key was reused')

  // A copied refresh token with another key's proof is refused; nothing rotates.
  const stolen = await fetch(`${base}/auth/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', dpop: await createDpopSigner().proof('POST', `${base}/auth/refresh`) },
    body: JSON.stringify({ refreshToken })
  })
  t.equal(stolen.status, 400)
  t.equal((await json(stolen)).code, 'FST_TOKEN_AUTH_INVALID_DPOP_PROOF', "another key's proof is refused")
  t.equal((await client.fetch('/me')).status, 200, 'the owner is unaffected')

  const logouts = count('POST', '/auth/logout')
  await client.logout()
  t.equal(count('POST', '/auth/logout'), logouts + 1)
  t.equal((await readProof(hits.at(-1)?.dpop)).jkt, login.jkt, 'logout carries a proof of the key')
  t.equal(client.accessToken, undefined)
})

t.test('DPoP with server nonces: one retry with the nonce (400 on auth routes, 401 on protected ones)', async (t) => {
  const { base, hits, count } = await serve(t, { dpop: 'required', dpopNonce: true, refreshTokenTransport: 'cookie' })
  const jar = cookieJar()
  const storage = memoryKeyStorage()
  const client = createAuthClient({ baseUrl: base, dpop: createDpopSigner({ storage }), fetch: jar.fetch, refreshTokenTransport: 'cookie' })
  await client.login(USERNAME, PASSWORD)
  t.equal(count('POST', '/auth/login'), 2, 'a 400 use_dpop_nonce, then the retry with the nonce')
  const retried = await readProof(hits.at(-1)?.dpop)
  t.type(retried.claims.nonce, 'string', 'the retry carries the nonce')
  t.equal((await client.fetch('/me')).status, 200)
  t.equal(count('GET', '/me'), 1, 'the nonce is remembered: no retry')
  t.equal((await readProof(hits.at(-1)?.dpop)).claims.nonce, retried.claims.nonce)

  // A reload in cookie mode: a new client and signer, no token, no nonce, the same stored key.
  const page = createAuthClient({ baseUrl: base, dpop: createDpopSigner({ storage }), fetch: jar.fetch, refreshTokenTransport: 'cookie' })
  const refreshes = count('POST', '/auth/refresh')
  t.equal(await page.refresh(), true, 'the cookie and the same key restore the session')
  t.equal(count('POST', '/auth/refresh'), refreshes + 2, 'after one nonce retry')

  // A protected route and a proof without the nonce: a 401 use_dpop_nonce, then the retry.
  const fresh = createDpopSigner({ storage })
  const mes = count('GET', '/me')
  const me = await fresh.send(fetch, new Request(`${base}/me`), page.accessToken)
  t.equal(me.status, 200)
  t.equal(count('GET', '/me'), mes + 2, 'a 401, then the retry')

  // Logout after a reload, before any token: the proof alone names the key.
  const reloaded = createAuthClient({ baseUrl: base, dpop: createDpopSigner({ storage }), fetch: jar.fetch, refreshTokenTransport: 'cookie' })
  await reloaded.logout()
  const logout = hits.filter((hit) => hit.url === '/auth/logout').at(-1)
  t.equal(logout?.authorization, undefined, 'no token')
  t.equal((await readProof(logout?.dpop)).jkt, retried.jkt, 'a proof of the key')
  t.equal(jar.cookie, undefined, 'the session ended: the cookie is cleared')
  t.equal(await page.refresh(), false, 'and the session is over')
})

t.test('DPoP: the nonce retry, exactly when asked and only once (scripted answers)', async (t) => {
  const base = 'https://api.example.com'
  const signer = createDpopSigner({ storage: memoryKeyStorage() })
  const nonceOf = async (request: Request | undefined) => (await readProof(request?.headers.get('dpop') ?? undefined)).claims.nonce
  const ask401 = () => new Response('{}', { status: 401, headers: { 'www-authenticate': 'DPoP error="use_dpop_nonce", algs="ES256"', 'dpop-nonce': 'n-401' } })
  const ask400 = () => new Response(JSON.stringify({ code: 'FST_TOKEN_AUTH_USE_DPOP_NONCE' }), { status: 400, headers: { 'dpop-nonce': 'n-400' } })
  const ok = () => new Response('{"ok":true}', { status: 200 })

  let script = scriptedFetch(ask401, ok)
  const response = await signer.send(script.fetch, new Request(`${base}/me`, { method: 'POST', body: 'payload' }), 'token-1')
  t.equal(response.status, 200, 'a 401 use_dpop_nonce: retried')
  t.equal(script.sent.length, 2)
  t.equal(await nonceOf(script.sent[0]), undefined)
  t.equal(await nonceOf(script.sent[1]), 'n-401', 'the retry carries the nonce')
  t.equal(await script.sent[1]?.text(), 'payload', 'with the body')
  t.equal(script.sent[1]?.headers.get('authorization'), 'DPoP token-1')
  t.equal((await readProof(script.sent[1]?.headers.get('dpop') ?? undefined)).claims.ath, sha256('token-1'))

  script = scriptedFetch(ask400, ok)
  t.equal((await signer.send(script.fetch, new Request(`${base}/auth/login`, { method: 'POST' }))).status, 200, 'a 400 use_dpop_nonce: retried')
  t.equal(await nonceOf(script.sent[1]), 'n-400')
  t.equal(script.sent[1]?.headers.get('authorization'), null, 'no token, no Authorization')

  script = scriptedFetch(ask400)
  t.equal((await signer.send(script.fetch, new Request(`${base}/auth/login`, { method: 'POST' }))).status, 400, 'asked twice: retried once only')
  t.equal(script.sent.length, 2)

  const notAsking = {
    'a 401 of another error': () => new Response('{}', { status: 401, headers: { 'www-authenticate': 'DPoP error="invalid_dpop_proof"', 'dpop-nonce': 'x' } }),
    'a 401 use_dpop_nonce without DPoP-Nonce': () => new Response('{}', { status: 401, headers: { 'www-authenticate': 'DPoP error="use_dpop_nonce"' } }),
    'a 401 without WWW-Authenticate': () => new Response('{}', { status: 401, headers: { 'dpop-nonce': 'x' } }),
    'a 400 of another code': () => new Response('{"code":"FST_TOKEN_AUTH_INVALID_DPOP_PROOF"}', { status: 400, headers: { 'dpop-nonce': 'x' } }),
    'a 400 that is not JSON': () => new Response('nope', { status: 400, headers: { 'dpop-nonce': 'x' } }),
    'a 200 with a new nonce': () => new Response('{}', { status: 200, headers: { 'dpop-nonce': 'n-200' } })
  }
  for (const [name, answer] of Object.entries(notAsking)) {
    script = scriptedFetch(answer, ok)
    const status = (await signer.send(script.fetch, new Request(`${base}/x`))).status
    t.same([status, script.sent.length], [answer().status, 1], `${name}: answered as it is, no retry`)
  }
  script = scriptedFetch(ok)
  await signer.send(script.fetch, new Request(`${base}/x`))
  t.equal(await nonceOf(script.sent[0]), 'n-200', 'the last DPoP-Nonce of any answer is used')
  t.notOk('nonce' in (await readProof(await signer.proof('GET', 'https://other.example.com/'))).claims, 'per origin')
})

t.test("DPoP: a server without DPoP answers Bearer tokens, sent as Bearer without a proof; a signer's storage failure is not kept", async (t) => {
  const { base, hits } = await serve(t, {})
  const client = createAuthClient({ baseUrl: base, dpop: true })
  await client.login(USERNAME, PASSWORD)
  t.type(hits.at(-1)?.dpop, 'string', 'the login carried a proof, which the server ignores')
  t.equal((await client.fetch('/me')).status, 200)
  t.equal(hits.at(-1)?.authorization, `Bearer ${client.accessToken}`)
  t.equal(hits.at(-1)?.dpop, undefined, 'no proof with a Bearer token')

  let failures = 1
  const flaky: DpopKeyStorage = {
    get: async () => { if (failures-- > 0) throw new Error('storage down'); return undefined },
    add: async (keys) => keys
  }
  const signer = createDpopSigner({ storage: flaky })
  await t.rejects(signer.proof('GET', `${base}/me`), { message: 'storage down' })
  t.match(await signer.proof('GET', `${base}/me`), /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the next proof tries again')

  const memory = memoryKeyStorage()
  const first = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
  const second = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
  t.equal(await memory.get(), undefined)
  t.equal(await memory.add(first), first)
  t.equal(await memory.add(second), first, 'the first stored wins')
})

/** A minimal IndexedDB (open, upgrade, one store, get and put in transactions), for Node. */
function fakeIndexedDb (fail: { open?: boolean, abort?: Error | null } = {}) {
  const databases = new Map<string, Map<string, Map<string, unknown>>>()
  const log: string[] = []
  const later = (fn: () => void) => setTimeout(fn, 1)
  const factory = {
    open (name: string, version: number) {
      log.push(`open ${name} v${version}`)
      const request = {} as Record<string, unknown> & { onsuccess (): void, onerror (): void, onupgradeneeded (): void }
      later(() => {
        if (fail.open === true) {
          request.error = new Error('open refused')
          return request.onerror()
        }
        const known = databases.get(name)
        const stores = known ?? new Map<string, Map<string, unknown>>()
        request.result = {
          createObjectStore (store: string) { log.push(`create ${store}`); stores.set(store, new Map()) },
          close () { log.push('close') },
          transaction (store: string, mode: string) {
            log.push(`transaction ${store} ${mode}`)
            const records = stores.get(store) as Map<string, unknown>
            const tx = { error: null } as unknown as Record<string, unknown> & { oncomplete (): void, onabort (): void }
            let pending = 0
            const settle = () => later(() => {
              if (--pending > 0) return
              if (fail.abort === undefined) return tx.oncomplete()
              tx.error = fail.abort
              tx.onabort()
            })
            tx.objectStore = () => ({
              get (key: string) {
                pending++
                const read = {} as { result?: unknown, onsuccess (): void }
                later(() => { read.result = records.get(key); read.onsuccess(); settle() })
                return read
              },
              put (value: unknown, key: string) { records.set(key, value) }
            })
            return tx
          }
        }
        if (known === undefined) {
          databases.set(name, stores)
          request.onupgradeneeded()
        }
        request.onsuccess()
      })
      return request
    }
  }
  return { indexedDB: factory as unknown as IDBFactory, databases, log }
}

t.test('DPoP: the IndexedDB storage keeps the pair across "reloads", the first stored wins, failures reject', async (t) => {
  const fake = fakeIndexedDb()
  const globals = globalThis as { indexedDB?: IDBFactory }
  globals.indexedDB = fake.indexedDB
  t.teardown(() => { delete globals.indexedDB })

  // Defaults: the signer picks IndexedDB when it exists, in the database 'fastify-token-auth'.
  const page = createDpopSigner()
  const jkt = await page.thumbprint()
  t.same(fake.log, ['open fastify-token-auth v1', 'create fastify-token-auth-dpop-keys', 'transaction fastify-token-auth-dpop-keys readonly', 'close',
    'open fastify-token-auth v1', 'transaction fastify-token-auth-dpop-keys readwrite', 'close'])
  const stored = fake.databases.get('fastify-token-auth')?.get('fastify-token-auth-dpop-keys')?.get('default') as CryptoKeyPair
  t.equal(stored.privateKey.extractable, false, 'a non-extractable pair is what is stored')
  t.equal(await page.thumbprint(), jkt, 'loaded once per signer')
  t.equal(fake.log.length, 7)

  const reloaded = createDpopSigner({ storage: indexedDbKeyStorage() })
  t.equal(await reloaded.thumbprint(), jkt, 'a reload: the same key from IndexedDB')
  const proof = await readProof(await reloaded.proof('GET', 'https://api.example.com/me'))
  t.equal(proof.jkt, jkt, 'and it signs')

  const other = indexedDbKeyStorage({ database: 'fastify-token-auth-other', indexedDB: fake.indexedDB })
  t.equal(await other.get(), undefined)
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
  t.equal(await other.add(stored), stored)
  t.equal(await other.add(keys), stored, 'another tab stored one first: that one is used')

  await t.rejects(indexedDbKeyStorage({ indexedDB: fakeIndexedDb({ open: true }).indexedDB }).get(), { message: 'open refused' })
  await t.rejects(indexedDbKeyStorage({ indexedDB: fakeIndexedDb({ abort: new Error('quota') }).indexedDB }).add(keys), { message: 'quota' })
  await t.rejects(indexedDbKeyStorage({ indexedDB: fakeIndexedDb({ abort: null }).indexedDB }).get(), { message: 'IndexedDB: the transaction was aborted' })
})

function decodePayloadOf (token: string | undefined): { cnf?: { jkt?: string } } {
  return JSON.parse(Buffer.from((token as string).split('.')[1] as string, 'base64url').toString())
}
