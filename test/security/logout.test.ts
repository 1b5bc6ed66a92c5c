// Checklist group E: logout and revocation (RFC 7009, ASVS 3.3.x / v5 7.4.x, OWASP Session
// Management). Real HTTP against the example app.
//
// Logout answers 204 (documented), not the checklist's "200/204" choice, and a token that no
// longer verifies answers 401 with a specific code rather than OAuth's 400 `invalid_grant`.
import t, { type Test } from 'tap'
import {
  alive, ALICE_ID, BOB, BOB_ID, BOB_PASSWORD, clearsCookie, COOKIE, cookieOf, decodePayload, eventsSince, forge, get, INVALID_TOKEN,
  login, loginRequest, logoutRequest, noIncidents, noLeak, noTokenIssued, REFRESH_SECRET, refresh, refreshRequest, refused, send,
  sleep, startExample
} from './harness.js'
import { randomId } from './forge.js'

const example = await startExample(t, { ACCESS_TOKEN_TTL: '30' })
const REVOKED = 'FST_TOKEN_AUTH_SESSION_REVOKED'

/** A 204 logout: no body, no token, the refresh cookie expired with the attributes it was set with. */
async function loggedOut (t: Test, reply: Awaited<ReturnType<typeof logoutRequest>>): Promise<void> {
  t.equal(reply.status, 204, 'logout answers 204')
  t.equal(reply.text, '', 'no body')
  t.notOk('location' in reply.headers, 'no redirect')
  t.ok(clearsCookie(reply), 'the refresh cookie is expired')
  const cleared = cookieOf(reply)
  t.equal(cleared?.attributes.path, '/auth', 'same Path as when it was set')
  t.notOk('domain' in (cleared?.attributes ?? {}), 'no Domain, as when it was set')
  t.ok('httponly' in (cleared?.attributes ?? {}))
  noTokenIssued(t, reply)
  await alive(t, example)
}

t.test('E1 logout ends the session: the cookie is expired, Clear-Site-Data sent, then RT and AT are 401', async (t) => {
  const session = await login(example)
  const mark = example.events.length
  const reply = await logoutRequest(example, session.refreshToken)
  await loggedOut(t, reply)
  t.equal(reply.headers['clear-site-data'], '"cache", "cookies", "storage"', 'Clear-Site-Data on a successful logout')
  t.same(eventsSince(example, mark), ['sessionRevoked', 'logout'])
  await refused(t, example, await refreshRequest(example, session.refreshToken), { status: 401, code: 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', sent: [session.refreshToken] })
  // The access token dies at once (sid denylist), not at its 30 s expiry.
  await refused(t, example, await get(example, '/me', session.accessToken), { status: 401, code: REVOKED, challenge: INVALID_TOKEN, sent: [session.accessToken] })

  // Logout with only the Bearer token ends that session the same way.
  const bearer = await login(example)
  await loggedOut(t, await send(example, 'POST', '/auth/logout', { headers: { authorization: `Bearer ${bearer.accessToken}` } }))
  await refused(t, example, await refreshRequest(example, bearer.refreshToken), { status: 401, code: 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN' })
  await refused(t, example, await get(example, '/me', bearer.accessToken), { status: 401, code: REVOKED })
})

t.test('E2 repeated logout, and logout with no, invalid or expired tokens: 204 every time (RFC 7009)', async (t) => {
  const session = await login(example)
  const expired = forge({ alg: 'HS256', typ: 'rt+jwt' }, { sub: ALICE_ID, sid: randomId(), jti: randomId(), iat: 1_000_000, exp: 1_000_060 }, REFRESH_SECRET)
  const [, payload, signature] = session.refreshToken.split('.')
  const attempts: Array<[string, string | undefined, Record<string, string>]> = [
    ['first logout', session.refreshToken, {}],
    ['the same token again', session.refreshToken, {}],
    ['no token at all', undefined, {}],
    ['garbage cookie', 'garbage', {}],
    ['tampered token', `eyJhbGciOiJub25lIn0.${payload}.${signature}`, {}],
    ['expired token', expired, {}],
    ['empty cookie', '', {}],
    ['invalid Bearer only', undefined, { authorization: 'Bearer not-a-token' }],
    ['revoked access token', undefined, { authorization: `Bearer ${session.accessToken}` }]
  ]
  for (const [name, token, headers] of attempts) {
    t.comment(name)
    const reply = await logoutRequest(example, token, headers)
    await loggedOut(t, reply)
    t.notOk('www-authenticate' in reply.headers, 'no challenge on a logout')
  }
  // The cookie name with no `=` and no value at all.
  await loggedOut(t, await send(example, 'POST', '/auth/logout', { headers: { cookie: `${COOKIE}` } }))
})

t.test('E3 password change with "log out other sessions": the other device\'s RT and AT die, this one lives', async (t) => {
  const here = await login(example, BOB)
  const other = await login(example, BOB)
  const newPassword = 'bob-new-password-5678'
  const wrong = await send(example, 'POST', '/me/password', {
    headers: { authorization: `Bearer ${here.accessToken}` },
    body: { currentPassword: 'not-bobs-password', newPassword, logoutOtherSessions: true }
  })
  await refused(t, example, wrong, { status: 403, code: 'WRONG_PASSWORD' })
  t.equal((await get(example, '/me', other.accessToken)).status, 200, 'a refused change ends nothing')

  const changed = await send(example, 'POST', '/me/password', {
    headers: { authorization: `Bearer ${here.accessToken}` },
    body: { currentPassword: BOB_PASSWORD, newPassword, logoutOtherSessions: true }
  })
  t.equal(changed.status, 204)
  example.secrets.push(newPassword)
  await refused(t, example, await refreshRequest(example, other.refreshToken), { status: 401, code: 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', sent: [other.refreshToken] })
  await refused(t, example, await get(example, '/me', other.accessToken), { status: 401, code: REVOKED, challenge: INVALID_TOKEN, sent: [other.accessToken] })
  t.equal((await get(example, '/me', here.accessToken)).status, 200, 'the device that changed it stays signed in')
  t.equal((await refresh(example, here.refreshToken)).reply.status, 200)
  await refused(t, example, await loginRequest(example, BOB, BOB_PASSWORD), { status: 401, code: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS' })
  t.equal((await loginRequest(example, BOB, newPassword)).status, 200, 'the new password works')
  // Put Bob's password back for the cases below.
  const reset = await send(example, 'POST', '/me/password', { headers: { authorization: `Bearer ${here.accessToken}` }, body: { currentPassword: newPassword, newPassword: BOB_PASSWORD } })
  t.equal(reset.status, 204)
})

t.test('E4 a disabled account: refresh 401, access token 401, login 401; only an admin can disable', async (t) => {
  const admin = await login(example)
  const victim = await login(example, BOB)
  const second = await login(example, BOB)
  // Bob (role user) cannot disable anyone, himself included.
  const forbidden = await send(example, 'POST', `/admin/users/${ALICE_ID}/disable`, { headers: { authorization: `Bearer ${victim.accessToken}` } })
  await refused(t, example, forbidden, { status: 403, code: 'FORBIDDEN' })
  t.equal((await get(example, '/me', admin.accessToken)).status, 200, 'Alice is untouched')

  const disabled = await send(example, 'POST', `/admin/users/${BOB_ID}/disable`, { headers: { authorization: `Bearer ${admin.accessToken}` } })
  t.equal(disabled.status, 204)
  await refused(t, example, await get(example, '/me', victim.accessToken), { status: 401, code: REVOKED, challenge: INVALID_TOKEN })
  await refused(t, example, await get(example, '/me', second.accessToken), { status: 401, code: REVOKED })
  // loadUser is asked before the store: a disabled user's refresh token is refused as such.
  await refused(t, example, await refreshRequest(example, victim.refreshToken), { status: 401, code: 'FST_TOKEN_AUTH_USER_UNAVAILABLE', sent: [victim.refreshToken] })
  await refused(t, example, await loginRequest(example, BOB), { status: 401, code: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS' })
  const unknown = await send(example, 'POST', '/admin/users/nobody/disable', { headers: { authorization: `Bearer ${admin.accessToken}` } })
  await refused(t, example, unknown, { status: 404, code: 'USER_NOT_FOUND' })
})

t.test('E5 fixation: each login is a new session; a client-supplied refresh token is never adopted', async (t) => {
  const first = await login(example)
  const second = await login(example)
  t.not(decodePayload(first.accessToken).sid, decodePayload(second.accessToken).sid, 'two logins, two session ids')
  t.not(first.refreshToken, second.refreshToken)

  // Log in while presenting a planted token and then a real one: a fresh session either way.
  const planted = forge({ alg: 'HS256', typ: 'rt+jwt' }, { sub: ALICE_ID, sid: 'attacker-chosen-sid', jti: randomId(), iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 }, randomId())
  for (const presented of [planted, first.refreshToken]) {
    const reply = await loginRequest(example, 'alice', undefined, { cookie: `${COOKIE}=${presented}` })
    t.equal(reply.status, 200)
    const issued = cookieOf(reply)?.value ?? ''
    example.secrets.push(issued, reply.json.accessToken)
    t.not(issued, presented, 'the login sets its own refresh token')
    const sid = decodePayload(reply.json.accessToken).sid
    t.not(sid, decodePayload(first.accessToken).sid, 'a new session id')
    t.not(sid, 'attacker-chosen-sid')
  }
  // The planted token itself is refused and never becomes a session.
  await refused(t, example, await refreshRequest(example, planted), { status: 401, code: 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', sent: [planted] })
  const sessions = await send(example, 'GET', '/auth/sessions', { headers: { authorization: `Bearer ${first.accessToken}` } })
  t.equal(sessions.status, 200)
  t.notOk(sessions.json.sessions.some((session: { id: string }) => session.id === 'attacker-chosen-sid'))
  noLeak(t, example, sessions)
})

t.test('E6 a cross-site logout is refused and the session survives', async (t) => {
  const session = await login(example)
  const mark = example.events.length
  const crossSite: Array<Record<string, string>> = [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }]
  for (const headers of crossSite) {
    const reply = await logoutRequest(example, session.refreshToken, headers)
    await refused(t, example, reply, { status: 403, code: 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST', sent: [session.refreshToken] })
    t.notOk(cookieOf(reply), 'the cookie is not cleared')
    t.notOk('clear-site-data' in reply.headers)
  }
  // A cross-site "log out everywhere" with a stolen-looking bearer is refused the same way.
  const all = await send(example, 'POST', '/auth/logout?all=true', { headers: { authorization: `Bearer ${session.accessToken}`, origin: 'https://evil.example' } })
  await refused(t, example, all, { status: 403, code: 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST', sent: [session.accessToken] })
  t.same(eventsSince(example, mark), [], 'nothing was revoked')
  t.equal((await get(example, '/me', session.accessToken)).status, 200, 'the access token still works')
  await sleep(10)
  t.equal((await refresh(example, session.refreshToken)).reply.status, 200, 'the refresh token still works')
})

t.test('H6 no unhandled rejection during the logout cases', async (t) => {
  noIncidents(t, example)
})
