import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { createSigner } from 'fast-jwt'
import t, { type Test } from 'tap'
import tokenAuth, { type TokenAuthOptions } from '../lib/index.js'
import {
  ACCESS_KID, ACCESS_SECRET, baseOptions, build, CHALLENGE, EXPIRED, INVALID, INVALID_REQUEST, INVALID_TOKEN, login, MALFORMED, me, MISSING,
  refreshCookie, REVOKED, sleep, USER_ID, USERNAME
} from './helpers.js'

const ISSUER = 'https://issuer.example.test'
const AUDIENCE = 'api://example-test'

type Claims = Record<string, unknown>

/**
 * An app with the plugin and routes that show what the hook hands over: `GET /whoami` (onRequest)
 * and `GET /pre` (preHandler) echo the whole `request.user`; `hits` counts handler runs.
 */
async function buildApp (t: Test, overrides: Partial<TokenAuthOptions> = {}): Promise<{ app: FastifyInstance, hits: { count: number } }> {
  const hits = { count: 0 }
  const app = Fastify()
  await app.register(tokenAuth, baseOptions(overrides))
  app.get('/whoami', { onRequest: app.authenticate }, async (request) => {
    hits.count++
    return { user: request.user }
  })
  app.get('/pre', { preHandler: app.authenticate }, async (request) => {
    hits.count++
    return { user: request.user }
  })
  t.teardown(() => app.close())
  await app.ready()
  return { app, hits }
}

function get (app: FastifyInstance, url: string, authorization?: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url, headers: authorization === undefined ? {} : { authorization } })
}

function claimsOf (token: string): Claims {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as Claims
}

/** A 401/400 from the hook: status, code, the RFC 6750 challenge, a JSON error body, nothing issued. */
function assertRefused (t: Test, response: LightMyRequestResponse, status: number, code: string, challenge: string): void {
  t.equal(response.statusCode, status, `status ${status}`)
  const body = response.json()
  t.equal(body.code, code, `code ${code}`)
  t.equal(body.statusCode, status, 'statusCode in the body')
  t.type(body.message, 'string', 'a message')
  t.notOk('user' in body, 'the handler did not run')
  t.equal(response.headers['www-authenticate'], challenge, `WWW-Authenticate: ${challenge}`)
  t.notOk(response.headers['set-cookie'], 'no cookie set')
}

/** Signs an access token with the real access secret and `typ`, with claims of our choosing. */
function forgeAccess (payload: Claims, options: Record<string, unknown> = {}): string {
  const sign = createSigner({ key: ACCESS_SECRET, header: { alg: 'HS256', typ: 'at+jwt', kid: ACCESS_KID }, ...options })
  return sign({ sub: USER_ID, sid: 'forged-session', jti: 'forged-jti', ...payload })
}

t.test('a valid access token reaches the handler with its claims in request.user', async (t) => {
  const { app, hits } = await buildApp(t)
  const { accessToken, response: loginResponse } = await login(app)
  t.equal(loginResponse.statusCode, 200)

  const response = await get(app, '/whoami', `Bearer ${accessToken}`)
  t.equal(response.statusCode, 200)
  t.equal(hits.count, 1, 'handler ran once')
  t.notOk(response.headers['www-authenticate'], 'no challenge on success')
  const { user } = response.json() as { user: Claims }
  t.equal(user.sub, USER_ID, 'sub is the user id')
  t.type(user.sid, 'string', 'sid present')
  t.ok((user.sid as string).length > 0, 'sid non-empty')
  t.type(user.jti, 'string', 'jti present')
  t.type(user.iat, 'number', 'iat present')
  t.type(user.exp, 'number', 'exp present')
  t.equal(user.exp, (user.iat as number) + 900, 'exp = iat + default accessTokenTtl (900 s)')
  t.equal(user.username, USERNAME, 'custom claim username from verifyCredentials')
  t.equal(user.role, 'admin', 'custom claim role from verifyCredentials')
  t.notOk('iss' in user, 'no iss without the issuer option')
  t.notOk('aud' in user, 'no aud without the audience option')
  t.same(user, claimsOf(accessToken), 'request.user is exactly the token payload')

  // The sid is the id of the session listed for the user.
  const sessions = await app.tokenAuth.listSessions(USER_ID)
  t.same(sessions.map((session) => session.id), [user.sid], 'sid names the live session')

  // The helpers' own GET /me works the same way.
  const app2 = await build(t)
  const second = await login(app2)
  const viaMe = await me(app2, second.accessToken)
  t.equal(viaMe.statusCode, 200)
  t.same(viaMe.json(), { id: USER_ID, sid: claimsOf(second.accessToken).sid })

  // bob gets his own claims.
  const bob = await login(app, 'bob')
  const bobResponse = await get(app, '/whoami', `Bearer ${bob.accessToken}`)
  t.equal(bobResponse.statusCode, 200)
  t.match(bobResponse.json(), { user: { sub: 'user-2', username: 'bob', role: 'user' } })
})

t.test('Authorization header parsing', async (t) => {
  const { app, hits } = await buildApp(t)
  const { accessToken } = await login(app)

  t.test('no Authorization header: 401 MISSING_TOKEN with a bare Bearer challenge', async (t) => {
    assertRefused(t, await get(app, '/whoami'), 401, MISSING, CHALLENGE)
  })

  for (const header of ['Basic x', 'Token x', 'Bearer', 'Basic dXNlcjpwYXNz', 'Bearerx', 'Bear', '', `Token ${accessToken}`, `Basic ${accessToken}`]) {
    t.test(`${JSON.stringify(header)}: another scheme or no token offered -> 401 MISSING_TOKEN`, async (t) => {
      assertRefused(t, await get(app, '/whoami', header), 401, MISSING, CHALLENGE)
    })
  }

  for (const header of ['Bearer ', 'Bearer  x', 'Bearer a b', `Bearer  ${accessToken}`, `Bearer ${accessToken} x`, 'Bearer   ']) {
    t.test(`${JSON.stringify(header.slice(0, 20))}: malformed Bearer header -> 400 MALFORMED_AUTHORIZATION`, async (t) => {
      assertRefused(t, await get(app, '/whoami', header), 400, MALFORMED, INVALID_REQUEST)
    })
  }

  for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
    t.test(`scheme "${scheme}" is case-insensitive -> 200`, async (t) => {
      const response = await get(app, '/whoami', `${scheme} ${accessToken}`)
      t.equal(response.statusCode, 200)
      t.equal(response.json().user.sub, USER_ID)
      t.notOk(response.headers['www-authenticate'])
    })
  }

  t.test('a token only in the query string is ignored -> 401 MISSING_TOKEN', async (t) => {
    for (const name of ['access_token', 'token', 'accessToken']) {
      const response = await app.inject({ method: 'GET', url: `/whoami?${name}=${accessToken}` })
      assertRefused(t, response, 401, MISSING, CHALLENGE)
    }
  })

  t.test('a token only in a cookie is ignored -> 401 MISSING_TOKEN', async (t) => {
    const response = await app.inject({ method: 'GET', url: '/whoami', cookies: { access_token: accessToken, token: accessToken } })
    assertRefused(t, response, 401, MISSING, CHALLENGE)
  })

  t.test('an invalid bearer token -> 401 INVALID_TOKEN with error="invalid_token"', async (t) => {
    assertRefused(t, await get(app, '/whoami', 'Bearer not-a-jwt'), 401, INVALID, INVALID_TOKEN)
    assertRefused(t, await get(app, '/whoami', `Bearer ${accessToken}x`), 401, INVALID, INVALID_TOKEN)
  })

  t.test('the handler never ran for a refused request', async (t) => {
    const before = hits.count
    await get(app, '/whoami')
    await get(app, '/whoami', 'Bearer  x')
    await get(app, '/whoami', 'Bearer nope')
    t.equal(hits.count, before)
  })
})

t.test('expired access tokens: 401 TOKEN_EXPIRED; clockTolerance forgives a just-expired one', async (t) => {
  const strict = await buildApp(t, { accessTokenTtl: 1 })
  const tolerant = await buildApp(t, { accessTokenTtl: 1, clockTolerance: 5 })
  const strictLogin = await login(strict.app)
  const tolerantLogin = await login(tolerant.app)
  t.equal(strictLogin.response.json().expiresIn, 1, 'expiresIn is the configured ttl')

  // Verified once while fresh, so a verification cache, if any, holds it.
  t.equal((await get(strict.app, '/whoami', `Bearer ${strictLogin.accessToken}`)).statusCode, 200, 'fresh token accepted')
  t.equal((await get(tolerant.app, '/whoami', `Bearer ${tolerantLogin.accessToken}`)).statusCode, 200, 'fresh token accepted')

  await sleep(2100)

  assertRefused(t, await get(strict.app, '/whoami', `Bearer ${strictLogin.accessToken}`), 401, EXPIRED, INVALID_TOKEN)
  assertRefused(t, await get(strict.app, '/pre', `Bearer ${strictLogin.accessToken}`), 401, EXPIRED, INVALID_TOKEN)
  t.throws(() => strict.app.tokenAuth.verifyAccessToken(strictLogin.accessToken), { code: EXPIRED, statusCode: 401 },
    'verifyAccessToken throws TOKEN_EXPIRED')

  const tolerated = await get(tolerant.app, '/whoami', `Bearer ${tolerantLogin.accessToken}`)
  t.equal(tolerated.statusCode, 200, 'within clockTolerance the expired token still passes')
  t.equal(tolerated.json().user.sub, USER_ID)
})

t.test('clockTolerance bounds: a token expired longer ago than the tolerance is refused', async (t) => {
  const { app } = await buildApp(t, { clockTolerance: 30 })
  const now = Date.now()
  const justExpired = forgeAccess({}, { expiresIn: 60_000, clockTimestamp: now - 70_000 }) // expired 10 s ago
  const longExpired = forgeAccess({}, { expiresIn: 60_000, clockTimestamp: now - 120_000 }) // expired 60 s ago
  const ok = await get(app, '/whoami', `Bearer ${justExpired}`)
  t.equal(ok.statusCode, 200, 'expired 10 s ago, tolerance 30 s: accepted')
  assertRefused(t, await get(app, '/whoami', `Bearer ${longExpired}`), 401, EXPIRED, INVALID_TOKEN)

  const { app: strictApp } = await buildApp(t)
  assertRefused(t, await get(strictApp, '/whoami', `Bearer ${justExpired}`), 401, EXPIRED, INVALID_TOKEN)
})

t.test('revoked sessions: the access token fails at once with SESSION_REVOKED', async (t) => {
  t.test('after POST /auth/logout with the refresh cookie', async (t) => {
    const { app } = await buildApp(t)
    const { accessToken, refreshToken } = await login(app)
    t.equal((await get(app, '/whoami', `Bearer ${accessToken}`)).statusCode, 200, 'works (and is cached) before logout')

    const logout = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
    t.equal(logout.statusCode, 204)
    const cleared = refreshCookie(logout)
    t.ok(cleared, 'refresh cookie cleared')
    t.equal(cleared?.value, '')

    assertRefused(t, await get(app, '/whoami', `Bearer ${accessToken}`), 401, REVOKED, INVALID_TOKEN)
    assertRefused(t, await get(app, '/pre', `Bearer ${accessToken}`), 401, REVOKED, INVALID_TOKEN)
    t.throws(() => app.tokenAuth.verifyAccessToken(accessToken), { code: REVOKED, statusCode: 401 })
  })

  t.test('after app.tokenAuth.revokeSession(sid)', async (t) => {
    const { app } = await buildApp(t)
    const first = await login(app)
    const second = await login(app)
    const sid = claimsOf(first.accessToken).sid as string

    t.equal(await app.tokenAuth.revokeSession(sid, 'user-2'), false, 'another user cannot end it')
    t.equal((await get(app, '/whoami', `Bearer ${first.accessToken}`)).statusCode, 200, 'still valid')

    t.equal(await app.tokenAuth.revokeSession(sid), true)
    assertRefused(t, await get(app, '/whoami', `Bearer ${first.accessToken}`), 401, REVOKED, INVALID_TOKEN)
    t.equal((await get(app, '/whoami', `Bearer ${second.accessToken}`)).statusCode, 200, 'the other session is untouched')
    t.equal(await app.tokenAuth.revokeSession(sid), false, 'ending it again ends nothing')

    // A fresh token signed for the ended session is refused too.
    const signed = app.tokenAuth.signAccessToken(USER_ID, sid)
    assertRefused(t, await get(app, '/whoami', `Bearer ${signed.token}`), 401, REVOKED, INVALID_TOKEN)
  })

  t.test('after app.tokenAuth.revokeUserSessions(userId)', async (t) => {
    const { app } = await buildApp(t)
    const first = await login(app)
    const second = await login(app)
    const bob = await login(app, 'bob')
    const ended = await app.tokenAuth.revokeUserSessions(USER_ID)
    t.same([...ended].sort(), [claimsOf(first.accessToken).sid, claimsOf(second.accessToken).sid].sort(), 'both of alice\'s sessions ended')
    assertRefused(t, await get(app, '/whoami', `Bearer ${first.accessToken}`), 401, REVOKED, INVALID_TOKEN)
    assertRefused(t, await get(app, '/whoami', `Bearer ${second.accessToken}`), 401, REVOKED, INVALID_TOKEN)
    const bobResponse = await get(app, '/whoami', `Bearer ${bob.accessToken}`)
    t.equal(bobResponse.statusCode, 200, 'bob is unaffected')
    t.equal(bobResponse.json().user.sub, 'user-2')
    t.same(await app.tokenAuth.listSessions(USER_ID), [], 'alice has no sessions left')
  })
})

t.test('the hook works as a preHandler', async (t) => {
  const { app, hits } = await buildApp(t)
  const { accessToken } = await login(app)
  const ok = await get(app, '/pre', `Bearer ${accessToken}`)
  t.equal(ok.statusCode, 200)
  t.equal(ok.json().user.sub, USER_ID)
  t.equal(ok.json().user.username, USERNAME)
  t.equal(hits.count, 1)
  assertRefused(t, await get(app, '/pre'), 401, MISSING, CHALLENGE)
  assertRefused(t, await get(app, '/pre', 'Bearer a b'), 400, MALFORMED, INVALID_REQUEST)
  assertRefused(t, await get(app, '/pre', 'Bearer garbage'), 401, INVALID, INVALID_TOKEN)
  t.equal(hits.count, 1, 'the handler did not run for refused requests')
})

t.test('signAccessToken / verifyAccessToken helpers', async (t) => {
  const { app } = await buildApp(t, { accessTokenTtl: 120 })
  const { accessToken } = await login(app)
  const sid = claimsOf(accessToken).sid as string

  const signed = app.tokenAuth.signAccessToken(USER_ID, sid, { username: 'alice', role: 'user', sub: 'evil', sid: 'other', exp: 1, iss: 'evil' } as never)
  t.equal(signed.expiresIn, 120, 'expiresIn is the ttl')
  const claims = app.tokenAuth.verifyAccessToken(signed.token) as unknown as Claims
  t.equal(claims.sub, USER_ID, 'reserved claims cannot be overridden: sub')
  t.equal(claims.sid, sid, 'sid')
  t.equal(claims.exp, (claims.iat as number) + 120, 'exp')
  t.notOk('iss' in claims, 'iss')
  t.equal(claims.username, 'alice')
  t.equal(claims.role, 'user')
  t.type(claims.jti, 'string')
  t.not(claims.jti, claimsOf(accessToken).jti, 'a fresh jti')
  const header = JSON.parse(Buffer.from(signed.token.split('.')[0] as string, 'base64url').toString())
  t.same(header, { alg: 'HS256', typ: 'at+jwt', kid: ACCESS_KID }, 'pinned header')

  const response = await get(app, '/whoami', `Bearer ${signed.token}`)
  t.equal(response.statusCode, 200, 'a helper-signed token passes the hook')
  t.equal(response.json().user.username, 'alice')

  // The helper throws the hook's coded errors.
  for (const [token, code] of [
    ['garbage', INVALID],
    ['', INVALID],
    ['a.b.c', INVALID],
    [`${signed.token}x`, INVALID],
    ['x'.repeat(9000), INVALID],
    [forgeAccess({}, { expiresIn: 1000, clockTimestamp: Date.now() - 10_000 }), EXPIRED]
  ] as const) {
    t.throws(() => app.tokenAuth.verifyAccessToken(token), { code, statusCode: 401 }, `${token.slice(0, 20)} -> ${code}`)
  }
  await app.tokenAuth.revokeSession(sid)
  t.throws(() => app.tokenAuth.verifyAccessToken(signed.token), { code: REVOKED, statusCode: 401 }, 'revoked -> SESSION_REVOKED')
  t.throws(() => app.tokenAuth.verifyAccessToken(accessToken), { code: REVOKED, statusCode: 401 })
})

t.test('issuer and audience', async (t) => {
  const { app } = await buildApp(t, { issuer: ISSUER, audience: AUDIENCE })
  const { accessToken } = await login(app)
  const claims = claimsOf(accessToken)
  t.equal(claims.iss, ISSUER, 'tokens carry iss')
  t.equal(claims.aud, AUDIENCE, 'tokens carry aud')
  const ok = await get(app, '/whoami', `Bearer ${accessToken}`)
  t.equal(ok.statusCode, 200)
  t.match(ok.json(), { user: { iss: ISSUER, aud: AUDIENCE } })
  const signed = app.tokenAuth.signAccessToken(USER_ID, 'sid-x')
  t.match(claimsOf(signed.token), { iss: ISSUER, aud: AUDIENCE }, 'helper-signed tokens carry iss/aud too')

  const forged = forgeAccess({}, { iss: ISSUER, aud: AUDIENCE, expiresIn: 60_000 })
  t.equal((await get(app, '/whoami', `Bearer ${forged}`)).statusCode, 200, 'control: right iss and aud with the right key pass')

  const cases: Array<[string, string]> = [
    ['wrong iss', forgeAccess({}, { iss: 'https://evil.example', aud: AUDIENCE, expiresIn: 60_000 })],
    ['wrong aud', forgeAccess({}, { iss: ISSUER, aud: 'api://evil', expiresIn: 60_000 })],
    ['missing iss', forgeAccess({}, { aud: AUDIENCE, expiresIn: 60_000 })],
    ['missing aud', forgeAccess({}, { iss: ISSUER, expiresIn: 60_000 })],
    ['iss as an array ["evil", good]', forgeAccess({ iss: ['https://evil.example', ISSUER] }, { aud: AUDIENCE, expiresIn: 60_000 })],
    ['iss as an array [good, "evil"]', forgeAccess({ iss: [ISSUER, 'https://evil.example'] }, { aud: AUDIENCE, expiresIn: 60_000 })],
    ['iss differing in case', forgeAccess({}, { iss: ISSUER.toUpperCase(), aud: AUDIENCE, expiresIn: 60_000 })],
    ['iss with a trailing slash', forgeAccess({}, { iss: `${ISSUER}/`, aud: AUDIENCE, expiresIn: 60_000 })],
    ['aud as an array without ours', forgeAccess({ aud: ['api://evil', 'api://other'] }, { iss: ISSUER, expiresIn: 60_000 })]
  ]
  for (const [name, token] of cases) {
    t.test(`${name} -> 401 INVALID_TOKEN`, async (t) => {
      assertRefused(t, await get(app, '/whoami', `Bearer ${token}`), 401, INVALID, INVALID_TOKEN)
      t.throws(() => app.tokenAuth.verifyAccessToken(token), { code: INVALID })
    })
  }

  t.test('a token from an app without issuer/audience is refused here', async (t) => {
    const { app: plain } = await buildApp(t)
    const other = await login(plain)
    assertRefused(t, await get(app, '/whoami', `Bearer ${other.accessToken}`), 401, INVALID, INVALID_TOKEN)
  })
})

t.test('verifyCacheSize: 0 turns the cache off and everything still works', async (t) => {
  const { app } = await buildApp(t, { verifyCacheSize: 0 })
  const { accessToken, refreshToken } = await login(app)
  for (let i = 0; i < 3; i++) {
    const response = await get(app, '/whoami', `Bearer ${accessToken}`)
    t.equal(response.statusCode, 200, `request ${i + 1}`)
    t.equal(response.json().user.username, USERNAME)
  }
  assertRefused(t, await get(app, '/whoami', 'Bearer garbage'), 401, INVALID, INVALID_TOKEN)
  assertRefused(t, await get(app, '/whoami', `Bearer ${accessToken.slice(0, -2)}`), 401, INVALID, INVALID_TOKEN)
  t.equal((await get(app, '/whoami', `Bearer ${accessToken}`)).statusCode, 200, 'a refused token does not poison the next')

  const logout = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
  t.equal(logout.statusCode, 204)
  assertRefused(t, await get(app, '/whoami', `Bearer ${accessToken}`), 401, REVOKED, INVALID_TOKEN)
})

t.test('with the cache on, a bad verification is not cached as good and a good one does not outlive revocation', async (t) => {
  const { app } = await buildApp(t, { verifyCacheSize: 2 })
  const a = await login(app)
  const b = await login(app)
  const c = await login(app)
  for (const token of [a.accessToken, b.accessToken, c.accessToken, a.accessToken]) {
    t.equal((await get(app, '/whoami', `Bearer ${token}`)).statusCode, 200, 'accepted (cache of 2 cycles)')
  }
  assertRefused(t, await get(app, '/whoami', `Bearer ${a.accessToken}tampered`), 401, INVALID, INVALID_TOKEN)
  await app.tokenAuth.revokeSession(claimsOf(a.accessToken).sid as string)
  assertRefused(t, await get(app, '/whoami', `Bearer ${a.accessToken}`), 401, REVOKED, INVALID_TOKEN)
  t.equal((await get(app, '/whoami', `Bearer ${b.accessToken}`)).statusCode, 200)
})

t.test('regression: request.user is a fresh object per request, even when the verification is cached', async (t) => {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions())
  app.get('/mutate', { onRequest: app.authenticate }, async (request) => {
    const user = request.user as unknown as Record<string, unknown>
    const seen = user.seen === true
    user.seen = true
    return { seen }
  })
  t.teardown(() => app.close())
  const { accessToken } = await login(app)
  for (let i = 0; i < 3; i++) {
    const response = await app.inject({ url: '/mutate', headers: { authorization: `Bearer ${accessToken}` } })
    t.equal(response.statusCode, 200)
    t.same(response.json(), { seen: false }, `request ${i + 1} does not see what an earlier handler wrote`)
  }
})
