import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { type TokenAuthOptions } from '../../lib/index.js'
import { ACCESS_KID, baseOptions, decodePayload, handClock, login, PASSWORD, refresh, refreshCookie, REVOKED, USER_ID, USERNAME } from '../helpers.js'
import { claimsOf, encode, forgeHmac, headerOf } from './forge.js'

// What step-up authentication must withstand (docs/design.md, «Step-up authentication»): an
// auth_time, acr, amr or cv an attacker (or an app's claims) could choose, and tokens of an
// authentication that is no longer the session's.

const ACCESS_SECRET_OF_OTHERS = 'o'.repeat(32) + '-a-secret-that-is-not-ours'

async function app (t: Test, overrides: Partial<TokenAuthOptions> = {}): Promise<FastifyInstance> {
  const server = Fastify()
  await server.register(tokenAuth, baseOptions(overrides))
  server.get('/recent', { onRequest: server.tokenAuth.requireAuth({ maxAge: 300 }) }, async () => ({ ok: true }))
  server.get('/strong', { onRequest: server.tokenAuth.requireAuth({ acr: ['mfa'] }) }, async () => ({ ok: true }))
  t.teardown(() => server.close())
  await server.ready()
  return server
}

const get = (server: FastifyInstance, url: string, token: string) =>
  server.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } })
const reauthenticate = (server: FastifyInstance, refreshToken: string) =>
  server.inject({ method: 'POST', url: '/auth/reauthenticate', cookies: { refresh_token: refreshToken }, payload: { username: USERNAME, password: PASSWORD } })

t.test('a refreshed token never carries a later auth_time than the session\'s authentication', async (t) => {
  const clock = handClock(t)
  const server = await app(t)
  const loggedInAt = Math.floor(clock.now() / 1000)
  let { refreshToken } = await login(server)
  for (let i = 0; i < 3; i++) {
    clock.advance(200_000)
    const response = await refresh(server, refreshToken)
    const claims = decodePayload(response.json().accessToken)
    t.equal(claims.auth_time, loggedInAt, `refresh ${i + 1}: the login's auth_time`)
    t.ok((claims.iat as number) > loggedInAt, 'though signed later')
    refreshToken = refreshCookie(response)!.value
  }
  const last = await refresh(server, refreshToken)
  t.equal((await get(server, '/recent', last.json().accessToken)).statusCode, 401, 'refreshes never make a session recent')
})

t.test('app claims named auth_time, acr, amr or cv are ignored, at login and on refresh', async (t) => {
  const clock = handClock(t)
  const forged = { role: 'admin', auth_time: 9_999_999_999, acr: 'mfa', amr: ['hwk'], cv: 99 }
  const server = await app(t, {
    verifyCredentials: async () => ({ id: USER_ID, claims: forged }),
    loadUser: async () => ({ id: USER_ID, claims: forged })
  })
  const loggedInAt = Math.floor(clock.now() / 1000)
  const { accessToken, refreshToken } = await login(server)
  for (const [label, token] of [['login', accessToken], ['refresh', (await refresh(server, refreshToken)).json().accessToken]] as const) {
    const claims = decodePayload(token)
    t.equal(claims.role, 'admin', `${label}: the app's other claims are kept`)
    t.equal(claims.auth_time, loggedInAt, `${label}: auth_time is the plugin's`)
    t.notOk('acr' in claims, `${label}: no acr`)
    t.notOk('amr' in claims, `${label}: no amr`)
    t.notOk('cv' in claims, `${label}: no cv`)
    const strong = await get(server, '/strong', token)
    t.equal(strong.statusCode, 401, `${label}: the acr requirement is not met by a claim`)
    t.equal(strong.json().code, 'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION')
  }
  const signed = server.tokenAuth.signAccessToken(USER_ID, decodePayload(accessToken).sid as string, forged as never)
  t.notOk('auth_time' in decodePayload(signed.token), 'signAccessToken drops them too')
  t.notOk('acr' in decodePayload(signed.token))
})

t.test('the tokens of an old re-authentication response, rotated away, are refused', async (t) => {
  const server = await app(t, { reuseGrace: 0 })
  const { refreshToken } = await login(server)
  const step = await reauthenticate(server, refreshToken)
  t.equal(step.statusCode, 200)
  const stepped = refreshCookie(step)!.value
  const next = await refresh(server, stepped)
  const after = await refresh(server, refreshCookie(next)!.value)
  t.equal(after.statusCode, 200, 'the successor was used')
  const replayed = await reauthenticate(server, stepped)
  t.equal(replayed.statusCode, 401)
  t.equal(replayed.json().code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED', 'theft detection, as on the refresh route')
  const replayedRefresh = await reauthenticate(server, refreshToken)
  t.equal(replayedRefresh.statusCode, 401, 'the token before the re-authentication too')
  t.equal((await get(server, '/recent', after.json().accessToken)).json().code, REVOKED, 'the session ended')
})

t.test('an access token forged with a later auth_time or a stronger acr fails its signature', async (t) => {
  const clock = handClock(t)
  const server = await app(t)
  const { accessToken } = await login(server)
  clock.advance(600_000)
  t.equal((await get(server, '/recent', accessToken)).statusCode, 401, 'too old, as issued')
  const header = headerOf(accessToken)
  const moved = { ...claimsOf(accessToken), auth_time: Math.floor(clock.now() / 1000), acr: 'mfa' }
  const [, , signature] = accessToken.split('.')
  const edited = `${encode(header)}.${encode(moved)}.${signature as string}`
  for (const [label, token] of [
    ['the payload edited, the signature kept', edited],
    ['signed with another key under our kid', forgeHmac({ alg: 'HS256', typ: 'at+jwt', kid: ACCESS_KID }, moved, ACCESS_SECRET_OF_OTHERS)]
  ] as const) {
    for (const url of ['/recent', '/strong']) {
      const response = await get(server, url, token)
      t.equal(response.statusCode, 401, `${label} on ${url}`)
      t.equal(response.json().code, 'FST_TOKEN_AUTH_INVALID_TOKEN', `${label} on ${url}: invalid, not a step-up question`)
    }
  }
})

t.test('requireAuth refuses the token of a revoked session before any step-up question', async (t) => {
  const server = await app(t)
  const { accessToken } = await login(server)
  t.equal((await get(server, '/recent', accessToken)).statusCode, 200)
  await server.tokenAuth.revokeSession(decodePayload(accessToken).sid as string)
  const response = await get(server, '/recent', accessToken)
  t.equal(response.statusCode, 401)
  t.equal(response.json().code, REVOKED)
  t.equal(response.headers['www-authenticate'], 'Bearer error="invalid_token"')
})
