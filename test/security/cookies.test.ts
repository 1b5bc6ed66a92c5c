// Checklist group F: the refresh cookie's attributes, spoofed forwarding headers
// (CVE-2026-3635), login CSRF (CVE-2022-41919 class) and CORS preflights. Real HTTP against the
// example app in its production configuration (NODE_ENV=production: Secure cookies).
import t, { type Test } from 'tap'
import {
  alive, COOKIE, type Cookie, cookieOf, eventsSince, login, loginRequest, noIncidents, refresh, refreshRequest,
  refused, type Reply, send, startExample
} from './harness.js'

const REFRESH_TTL = 3600
const production = await startExample(t, { NODE_ENV: 'production', REFRESH_TOKEN_TTL: String(REFRESH_TTL) })
const HOST_COOKIE = `__Host-${COOKIE}`

/** The attributes of a refresh cookie, Max-Age aside (it counts down between two answers). */
function flags (cookie: Cookie | undefined): Record<string, string> {
  const { 'max-age': _maxAge, ...rest } = cookie?.attributes ?? {}
  return rest
}

function hardened (t: Test, reply: Reply, name: string, path: string): void {
  const cookie = cookieOf(reply, name)
  t.ok(cookie, `Set-Cookie ${name}`)
  const attributes = cookie?.attributes ?? {}
  t.ok('httponly' in attributes, 'HttpOnly')
  t.ok('secure' in attributes, 'Secure')
  t.equal(attributes.samesite, 'Strict', 'SameSite=Strict (never None)')
  t.equal(attributes.path, path, `Path=${path}`)
  t.notOk('domain' in attributes, 'no Domain: bound to this host')
  const maxAge = Number(attributes['max-age'])
  t.ok(maxAge > 0 && maxAge <= REFRESH_TTL, `0 < Max-Age (${maxAge}) <= the refresh lifetime`)
  t.ok(maxAge <= 400 * 24 * 3600, 'Max-Age <= 400 days')
  t.ok(Buffer.byteLength(cookie?.raw ?? '') <= 4096, `the whole cookie is ${Buffer.byteLength(cookie?.raw ?? '')} <= 4096 bytes`)
}

t.test('F1 the refresh cookie is HttpOnly, Secure, SameSite=Strict, host-only, path-scoped, bounded', async (t) => {
  const session = await login(production)
  hardened(t, session.reply, COOKIE, '/auth')
  const rotated = await refresh(production, session.refreshToken)
  hardened(t, rotated.reply, COOKIE, '/auth')

  t.test('with COOKIE_HOST_PREFIX: __Host-refresh_token, Secure, Path=/, no Domain; only that exact name is read', async (t) => {
    const prefixed = await startExample(t, { COOKIE_HOST_PREFIX: 'true', REFRESH_TOKEN_TTL: String(REFRESH_TTL) })
    const first = await login(prefixed)
    t.notOk(cookieOf(first.reply, COOKIE), 'no unprefixed cookie')
    hardened(t, first.reply, HOST_COOKIE, '/')
    const token = cookieOf(first.reply, HOST_COOKIE)?.value ?? ''
    prefixed.secrets.push(token)
    // A sibling subdomain can plant `refresh_token` (no prefix), never `__Host-refresh_token`.
    const planted = await send(prefixed, 'POST', '/auth/refresh', { headers: { cookie: `${COOKIE}=${token}` } })
    await refused(t, prefixed, planted, { status: 401, code: 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', sent: [token] })
    const tossed = await send(prefixed, 'POST', '/auth/refresh', { headers: { cookie: `${COOKIE}=evil; ${HOST_COOKIE}=${token}` } })
    t.equal(tossed.status, 200, 'a tossed unprefixed cookie next to the real one changes nothing')
    prefixed.secrets.push(cookieOf(tossed, HOST_COOKIE)?.value ?? '', tossed.json.accessToken)
    const twice = await send(prefixed, 'POST', '/auth/refresh', { headers: { cookie: `${HOST_COOKIE}=evil; ${HOST_COOKIE}=${token}` } })
    await refused(t, prefixed, twice, { status: 400, code: 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN', sent: [token] })
    await prefixed.close()
  })

  t.test('the development configuration (plain http) drops only Secure, and only from configuration', async (t) => {
    const development = await startExample(t)
    const reply = await loginRequest(development, 'alice', undefined, { 'x-forwarded-proto': 'https' })
    const cookie = cookieOf(reply)
    development.secrets.push(cookie?.value ?? '', reply.json.accessToken)
    t.notOk('secure' in (cookie?.attributes ?? {}), 'no Secure outside NODE_ENV=production, whatever X-Forwarded-Proto says')
    t.ok('httponly' in (cookie?.attributes ?? {}))
    t.equal(cookie?.attributes.samesite, 'Strict')
    await development.close()
  })
})

t.test('F2 X-Forwarded-Proto / -Host from an untrusted client change neither the cookie nor the origin check (CVE-2026-3635)', async (t) => {
  const baseline = flags(cookieOf((await login(production)).reply))
  // The default (no trustProxy) and a restrictive trustProxy that does not include this client.
  const restrictive = await startExample(t, { NODE_ENV: 'production', REFRESH_TOKEN_TTL: String(REFRESH_TTL) }, { trustProxy: '10.0.0.1' })
  for (const example of [production, restrictive]) {
    const forwarded: Array<Record<string, string>> = [
      { 'x-forwarded-proto': 'http' },
      { 'x-forwarded-proto': 'https' },
      { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
      { 'x-forwarded-for': '10.0.0.1', 'x-forwarded-host': 'evil.example' }
    ]
    for (const spoof of forwarded) {
      const reply = await loginRequest(example, 'alice', undefined, spoof)
      t.equal(reply.status, 200)
      example.secrets.push(cookieOf(reply)?.value ?? '', reply.json.accessToken)
      t.same(flags(cookieOf(reply)), baseline, `cookie flags unchanged with ${JSON.stringify(spoof)}`)
    }
    const session = await login(example)
    // An attacker page claims, through forwarding headers, to be the server's own origin.
    const spoofs: Array<Record<string, string>> = [
      { origin: 'https://evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
      { origin: `https://127.0.0.1:${example.port}`, 'x-forwarded-proto': 'https' },
      { origin: 'http://evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-for': '10.0.0.1' }
    ]
    for (const headers of spoofs) {
      const reply = await refreshRequest(example, session.refreshToken, headers)
      await refused(t, example, reply, { status: 403, code: 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST', sent: [session.refreshToken] })
    }
    t.equal((await refresh(example, session.refreshToken)).reply.status, 200, 'the session was never touched')
  }
  await restrictive.close()
})

t.test('F3 login CSRF (CVE-2022-41919 class): a cross-site or non-JSON login with valid credentials sets no cookie', async (t) => {
  const body = JSON.stringify({ username: 'alice', password: 'correct-horse-battery-staple' })
  const mark = production.events.length
  const attempts: Array<[Record<string, string>, number, string]> = [
    [{ 'content-type': 'application/json', origin: 'https://evil.example' }, 403, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST'],
    [{ 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' }, 403, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST'],
    [{ 'content-type': 'application/json', origin: 'null' }, 403, 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST'],
    // The CORS-simple content types a cross-site form or fetch can send without a preflight.
    [{ 'content-type': 'text/plain' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    [{ 'content-type': 'text/plain;charset=UTF-8' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    [{ 'content-type': 'application/x-www-form-urlencoded' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    [{ 'content-type': 'multipart/form-data; boundary=x' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE']
  ]
  for (const [headers, status, code] of attempts) {
    const reply = await send(production, 'POST', '/auth/login', { headers, body })
    await refused(t, production, reply, { status, code })
    t.same(reply.setCookies, [], 'no cookie at all')
  }
  t.same(eventsSince(production, mark), [], 'no session was started')
})

t.test('F4 a preflight from another origin gets no CORS grant', async (t) => {
  for (const path of ['/auth/refresh', '/auth/login', '/auth/logout']) {
    const reply = await send(production, 'OPTIONS', path, {
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
    })
    t.not(reply.status, 500)
    t.ok(reply.status >= 400, `${path}: preflight not granted (${reply.status})`)
    for (const header of ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-allow-methods', 'access-control-allow-headers']) {
      t.notOk(header in reply.headers, `${path}: no ${header}`)
    }
    t.same(reply.setCookies, [])
  }
  await alive(t, production)
})

t.test('H6 no unhandled rejection during the cookie cases', async (t) => {
  noIncidents(t, production)
})
