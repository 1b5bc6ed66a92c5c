// Checklist group C: where tokens are read from, and what the answers carry (RFC 6750, OWASP
// Session Management, ASVS 3.1.1 / v5 14.2.1). Real HTTP against the example app.
import t from 'tap'
import {
  alive, BOB, CHALLENGE, COOKIE, cookieOf, decodePayload, eventsSince, get, INVALID_REQUEST, INVALID_TOKEN, login, loginRequest, noIncidents,
  refresh, refreshRequest, refused, send, startExample
} from './harness.js'

const example = await startExample(t)
const alice = await login(example)
const bob = await login(example, BOB)

t.test('C1 an access token in the query string is never read', async (t) => {
  for (const name of ['access_token', 'token', 'accessToken']) {
    const reply = await get(example, `/me?${name}=${alice.accessToken}`)
    await refused(t, example, reply, { status: 401, code: 'FST_TOKEN_AUTH_MISSING_TOKEN', challenge: CHALLENGE, sent: [alice.accessToken] })
  }
  // Nor as a form field of a POST.
  const form = await send(example, 'POST', '/me/password', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `access_token=${alice.accessToken}`
  })
  await refused(t, example, form, { status: 401, code: 'FST_TOKEN_AUTH_MISSING_TOKEN', challenge: CHALLENGE, sent: [alice.accessToken] })
})

t.test('C2 Authorization header variants: one documented answer each, never 500', async (t) => {
  const cases: Array<[string, number, string, string]> = [
    // HTTP strips trailing whitespace from a field value (RFC 9110 §5.5), so `Bearer ` reaches
    // the app as a bare `Bearer`: no token offered (401), where the checklist suggests 400.
    ['Bearer', 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', CHALLENGE],
    ['Bearer ', 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', CHALLENGE],
    ['Bearer  x', 400, 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION', INVALID_REQUEST],
    ['Bearer a b', 400, 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION', INVALID_REQUEST],
    [`Bearer  ${alice.accessToken}`, 400, 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION', INVALID_REQUEST],
    [`Bearer ${alice.accessToken} ${alice.accessToken}`, 400, 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION', INVALID_REQUEST],
    ['Basic x', 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', CHALLENGE],
    [`Basic ${Buffer.from('alice:correct-horse-battery-staple').toString('base64')}`, 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', CHALLENGE],
    ['Token x', 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', CHALLENGE],
    [`Token ${alice.accessToken}`, 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', CHALLENGE],
    [`Bearer${alice.accessToken}`, 401, 'FST_TOKEN_AUTH_MISSING_TOKEN', CHALLENGE],
    ['Bearer x', 401, 'FST_TOKEN_AUTH_INVALID_TOKEN', INVALID_TOKEN],
    [`Bearer ${alice.accessToken}x`, 401, 'FST_TOKEN_AUTH_INVALID_TOKEN', INVALID_TOKEN],
    [`Bearer ${alice.refreshToken}`, 401, 'FST_TOKEN_AUTH_INVALID_TOKEN', INVALID_TOKEN]
  ]
  for (const [header, status, code, challenge] of cases) {
    t.test(JSON.stringify(header.length > 40 ? `${header.slice(0, 40)}...` : header), async (t) => {
      const reply = await send(example, 'GET', '/me', { headers: { authorization: header } })
      await refused(t, example, reply, { status, code, challenge, sent: [alice.accessToken, alice.refreshToken] })
    })
  }
  // The scheme is case-insensitive (RFC 7235 §2.1).
  for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
    const reply = await send(example, 'GET', '/me', { headers: { authorization: `${scheme} ${alice.accessToken}` } })
    t.equal(reply.status, 200, `${scheme} <valid> is 200`)
    t.same(reply.json, { id: 'user-1', username: 'alice' })
  }
})

t.test('C3 one token source: the Authorization header; cookies never authenticate a protected route', async (t) => {
  // Alice's access token in the header, Bob's refresh cookie alongside: Alice, and only Alice.
  const mixed = await send(example, 'GET', '/me', { headers: { authorization: `Bearer ${alice.accessToken}`, cookie: `${COOKIE}=${bob.refreshToken}` } })
  t.equal(mixed.status, 200)
  t.same(mixed.json, { id: 'user-1', username: 'alice' }, 'claims are never merged across sources')

  // An invalid header is not rescued by a valid cookie of any name.
  for (const cookie of [`${COOKIE}=${bob.refreshToken}`, `access_token=${bob.accessToken}`, `token=${bob.accessToken}`]) {
    const reply = await send(example, 'GET', '/me', { headers: { authorization: 'Bearer not-a-token', cookie } })
    await refused(t, example, reply, { status: 401, code: 'FST_TOKEN_AUTH_INVALID_TOKEN', challenge: INVALID_TOKEN, sent: [bob.accessToken, bob.refreshToken] })
  }
  // No header at all: a cookie carrying a valid access or refresh token gets nowhere.
  for (const cookie of [`${COOKIE}=${bob.refreshToken}`, `access_token=${bob.accessToken}`, `authorization=Bearer%20${bob.accessToken}`]) {
    const reply = await send(example, 'GET', '/me', { headers: { cookie } })
    await refused(t, example, reply, { status: 401, code: 'FST_TOKEN_AUTH_MISSING_TOKEN', challenge: CHALLENGE, sent: [bob.accessToken, bob.refreshToken] })
  }
  // Two Authorization headers: Node keeps the first and discards the rest, so the plugin counts
  // them itself and refuses the request as malformed, whichever header is good (never a mix, never first-wins).
  for (const pair of [
    [`Bearer ${alice.accessToken}`, `Bearer ${bob.accessToken}`],
    ['Bearer not-a-token', `Bearer ${bob.accessToken}`],
    [`Bearer ${alice.accessToken}`, `Bearer ${alice.accessToken}`],
    [`Bearer ${alice.accessToken}`, 'Basic eDp5']
  ]) {
    const twice = await send(example, 'GET', '/me', { headers: pair.map((value) => ['Authorization', value] as [string, string]) })
    await refused(t, example, twice, { status: 400, code: 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION', challenge: INVALID_REQUEST, sent: [alice.accessToken, bob.accessToken] })
  }
  // Logout's optional access token: two headers name no session, so nothing ends (204).
  const mark = example.events.length
  const logout = await send(example, 'POST', '/auth/logout', { headers: [['authorization', `Bearer ${alice.accessToken}`], ['authorization', `Bearer ${alice.accessToken}`]] })
  t.equal(logout.status, 204)
  t.same(eventsSince(example, mark).filter((event) => event.startsWith('sessionRevoked')), [], 'two Authorization headers end no session')
  t.equal((await get(example, '/me', alice.accessToken)).status, 200, 'alice is still signed in')
})

t.test('C4 duplicate refresh cookies are refused as ambiguous, not first-wins; nothing is rotated or revoked', async (t) => {
  const victim = await login(example)
  const attacker = await login(example, BOB)
  const mark = example.events.length
  for (const route of ['/auth/refresh', '/auth/logout']) {
    for (const cookie of [
      `${COOKIE}=${attacker.refreshToken}; ${COOKIE}=${victim.refreshToken}`,
      `${COOKIE}=${victim.refreshToken}; ${COOKIE}=${attacker.refreshToken}`,
      `${COOKIE}=evil; ${COOKIE}=${victim.refreshToken}`
    ]) {
      const reply = await send(example, 'POST', route, { headers: { cookie } })
      await refused(t, example, reply, { status: 400, code: 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN', sent: [victim.refreshToken, attacker.refreshToken] })
      t.notOk(cookieOf(reply), `${route}: the cookie is neither set nor cleared`)
    }
    // Two Cookie header lines carry the same ambiguity.
    const lines = await send(example, 'POST', route, { headers: [['cookie', `${COOKIE}=${attacker.refreshToken}`], ['cookie', `${COOKIE}=${victim.refreshToken}`]] })
    t.equal(lines.status, 400, `${route}: two Cookie lines`)
    t.equal(lines.json?.code, 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN')
  }
  t.same(eventsSince(example, mark), [], 'nothing was rotated, revoked or logged out')
  // Neither token was spent nor its session ended: both still rotate, as a first use.
  for (const tokens of [victim, attacker]) t.equal((await refresh(example, tokens.refreshToken)).reply.status, 200)
  t.same(example.events.slice(mark).map((event) => [event.name, event.payload.grace]), [['refresh', false], ['refresh', false]])
  // The plain name does not stand in for a `__Host-` one, or the reverse: this app reads only
  // its exact cookie name (the `__Host-` deployment is checked in cookies.test.ts, F1).
  const prefixed = await send(example, 'POST', '/auth/refresh', { headers: { cookie: `__Host-${COOKIE}=${victim.refreshToken}` } })
  await refused(t, example, prefixed, { status: 401, code: 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN' })
})

t.test('C5 token responses are never cached and no token travels in a URL', async (t) => {
  const loggedIn = await loginRequest(example)
  const rotated = await refreshRequest(example, cookieOf(loggedIn)?.value ?? '')
  const failed = await loginRequest(example, 'alice', 'wrong-password-1')
  const refreshFailed = await refreshRequest(example, 'garbage')
  for (const [name, reply] of Object.entries({ login: loggedIn, refresh: rotated, 'failed login': failed, 'failed refresh': refreshFailed })) {
    t.equal(reply.headers['cache-control'], 'no-store', `${name}: Cache-Control: no-store`)
    t.equal(reply.headers.pragma, 'no-cache', `${name}: Pragma: no-cache`)
    t.notOk('location' in reply.headers, `${name}: no Location header`)
  }
  t.equal(loggedIn.status, 200)
  t.equal(rotated.status, 200)
  // Every cookie attribute is a path, never a URL carrying a token.
  t.equal(cookieOf(rotated)?.attributes.path, '/auth')
  t.equal(decodePayload(rotated.json.accessToken).sub, 'user-1')
  await alive(t, example)
})

t.test('H6 no unhandled rejection during the transport cases', async (t) => {
  noIncidents(t, example)
})
