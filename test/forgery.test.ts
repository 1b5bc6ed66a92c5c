import { createHmac, randomBytes } from 'node:crypto'
import Fastify, { type LightMyRequestResponse } from 'fastify'
import { createSigner } from 'fast-jwt'
import t, { type Test } from 'tap'
import tokenAuth from '../lib/index.js'
import {
  ACCESS_KID, ACCESS_SECRET, baseOptions, build, EXPIRED, INVALID, INVALID_REFRESH, INVALID_TOKEN, login, me, refresh, REFRESH_SECRET,
  refreshCookie, refreshTokenOf, REVOKED, USER_ID
} from './helpers.js'

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

type Claims = Record<string, unknown>
const HMAC: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }

function encode (part: unknown): string {
  return Buffer.from(typeof part === 'string' ? part : JSON.stringify(part)).toString('base64url')
}

/**
 * Hand-builds `header.payload.signature`. A string header or payload is used verbatim as the
 * JSON text (for duplicate keys, `null`, non-JSON); the HMAC follows `hash` over the encoded parts.
 */
function forge (header: unknown, payload: unknown, key: string | Buffer = ACCESS_SECRET, hash = 'sha256'): string {
  const signingInput = `${encode(header)}.${encode(payload)}`
  return `${signingInput}.${createHmac(hash, key).update(signingInput).digest('base64url')}`
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** Access-token claims that pass every check (sid unknown to the store, which the hook never asks). */
function accessClaims (extra: Claims = {}): Claims {
  const now = nowSeconds()
  return { sub: USER_ID, sid: 'forged-sid', jti: 'forged-jti', iat: now, exp: now + 300, ...extra }
}

function without (claims: Claims, name: string): Claims {
  const copy = { ...claims }
  delete copy[name]
  return copy
}

const AT = { alg: 'HS256', typ: 'at+jwt', kid: ACCESS_KID }
const RT = { alg: 'HS256', typ: 'rt+jwt' }

function claimsOf (token: string): Claims {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as Claims
}

/** Every way to write the last base64url character that decodes to the same bytes. */
function siblings (token: string): string[] {
  const last = token.at(-1) as string
  const base = BASE64URL.indexOf(last) & ~3
  return [0, 1, 2, 3].map((k) => BASE64URL[base + k] as string).filter((c) => c !== last).map((c) => token.slice(0, -1) + c)
}

/** Exactly 401, the given code, the RFC 6750 challenge, never a 500, nothing issued. */
function assertInvalidToken (t: Test, response: LightMyRequestResponse, codes: string | string[] = INVALID): void {
  const allowed = Array.isArray(codes) ? codes : [codes]
  t.equal(response.statusCode, 401, 'exactly 401')
  const body = response.json()
  t.ok(allowed.includes(body.code), `code ${body.code} is one of ${allowed.join(', ')}`)
  t.equal(body.statusCode, 401, 'statusCode in the body')
  t.equal(response.headers['www-authenticate'], INVALID_TOKEN, 'WWW-Authenticate: Bearer error="invalid_token"')
  t.notOk('id' in body, 'the handler did not run')
  t.notOk(response.headers['set-cookie'], 'no cookie set')
}

/** The refresh route refused the token: 401 INVALID_REFRESH_TOKEN, cookie cleared, no tokens. */
function assertRefreshRefused (t: Test, response: LightMyRequestResponse): void {
  t.equal(response.statusCode, 401, 'exactly 401')
  const body = response.json()
  t.equal(body.code, INVALID_REFRESH, 'INVALID_REFRESH_TOKEN')
  t.notOk('accessToken' in body, 'no access token issued')
  const cookie = refreshCookie(response)
  t.ok(cookie, 'the dead cookie is cleared')
  t.equal(cookie?.value, '', 'cleared to empty')
  t.equal(cookie?.maxAge, 0, 'Max-Age=0')
}

t.test('forged and malformed access tokens: 401 INVALID_TOKEN, never 500', async (t) => {
  const app = await build(t)
  const real = await login(app)
  const otherKey = randomBytes(32)
  const claims = accessClaims()

  t.test('control: a token hand-built with the access secret and typ at+jwt is accepted', async (t) => {
    const response = await me(app, forge(AT, claims))
    t.equal(response.statusCode, 200)
    t.same(response.json(), { id: USER_ID, sid: 'forged-sid' })
  })

  const cases: Array<[string, string, string?]> = []
  const add = (name: string, token: string, code?: string): void => { cases.push([name, token, code]) }

  // alg none in every spelling, with no signature, an empty one, and a real HMAC.
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const unsigned = `${encode({ alg, typ: 'at+jwt', kid: ACCESS_KID })}.${encode(claims)}`
    add(`alg ${alg}, empty signature (trailing dot)`, `${unsigned}.`)
    add(`alg ${alg}, no signature segment`, unsigned)
    add(`alg ${alg}, with an HMAC signature`, forge({ alg, typ: 'at+jwt', kid: ACCESS_KID }, claims))
    add(`alg ${alg}, no typ, trailing dot`, `${encode({ alg })}.${encode(claims)}.`)
  }
  add('signed with another key', forge(AT, claims, otherKey))
  add('signed with the refresh secret', forge(AT, claims, REFRESH_SECRET))
  {
    const [header, , signature] = real.accessToken.split('.')
    add('payload tampered (sub -> bob, role -> admin) under the original signature',
      `${header}.${encode({ ...claimsOf(real.accessToken), sub: 'user-2', role: 'admin' })}.${signature}`)
    add('payload tampered (exp extended) under the original signature',
      `${header}.${encode({ ...claimsOf(real.accessToken), exp: nowSeconds() + 86400 })}.${signature}`)
    add('header swapped to HS512 under the original signature', `${encode({ alg: 'HS512', typ: 'at+jwt', kid: ACCESS_KID })}.${real.accessToken.split('.')[1]}.${signature}`)
  }
  add('HS256 with the empty key', forge(AT, claims, ''))
  add('HS256 with the empty key, no typ', forge({ alg: 'HS256' }, claims, ''))
  for (const alg of ['HS384', 'HS512']) {
    add(`${alg} with the same access secret`, forge({ alg, typ: 'at+jwt', kid: ACCESS_KID }, claims, ACCESS_SECRET, HMAC[alg]))
  }
  add('RS256 header with an HMAC signature', forge({ alg: 'RS256', typ: 'at+jwt', kid: ACCESS_KID }, claims))
  add('typ missing', forge({ alg: 'HS256' }, claims))
  add('typ JWT', forge({ alg: 'HS256', typ: 'JWT' }, claims))
  add('typ rt+jwt', forge(RT, claims))
  add('typ empty', forge({ alg: 'HS256', typ: '' }, claims))
  for (const name of ['exp', 'sub', 'sid', 'jti', 'iat']) add(`missing ${name}`, forge(AT, without(claims, name)))
  add('exp as a string', forge(AT, accessClaims({ exp: String(nowSeconds() + 300) })))
  add('exp null', forge(AT, accessClaims({ exp: null })))
  add('exp 1e300', forge(AT, `{"sub":"${USER_ID}","sid":"s","jti":"j","iat":${nowSeconds()},"exp":1e300}`))
  add('nbf in the future', forge(AT, accessClaims({ nbf: nowSeconds() + 600 })))
  add('nbf as a string', forge(AT, accessClaims({ nbf: 'now' })))
  add('nbf negative', forge(AT, accessClaims({ nbf: -1 })))
  add('nbf fractional', forge(AT, accessClaims({ nbf: 1.5 })))
  add('an aud claim, while this server names no audience (RFC 7519 §4.1.3)', forge(AT, accessClaims({ aud: 'another-service' })))
  add('crit null in the header', forge({ ...AT, crit: null }, claims))
  add('iat as a string', forge(AT, accessClaims({ iat: 'yesterday' })))
  add('iat 1e300', forge(AT, `{"sub":"${USER_ID}","sid":"s","jti":"j","iat":1e300,"exp":${nowSeconds() + 300}}`))
  for (const name of ['sub', 'sid', 'jti']) {
    add(`${name} as a number`, forge(AT, accessClaims({ [name]: 12345 })))
    add(`${name} as an array`, forge(AT, accessClaims({ [name]: [name === 'sub' ? USER_ID : 'x'] })))
    add(`${name} as an object`, forge(AT, accessClaims({ [name]: { id: 'x' } })))
  }
  add('array payload', forge(AT, [claims]))
  add('payload null', forge(AT, 'null'))
  add('payload a number', forge(AT, '42'))
  add('payload a string', forge(AT, '"hello"'))
  add('payload not JSON', forge(AT, '{"sub":'))
  add('header not JSON', forge('{"alg":"HS256",', claims))
  add('header null', forge('null', claims))
  add('header an array', forge('["HS256"]', claims))
  add('crit ["x"]', forge({ ...AT, crit: ['x'] }, claims))
  add('crit []', forge({ ...AT, crit: [] }, claims))
  add('crit ["alg"]', forge({ ...AT, crit: ['alg'] }, claims))
  add('duplicate alg {"alg":"HS256","alg":"none"} with an HMAC', forge('{"alg":"HS256","alg":"none","typ":"at+jwt","kid":"' + ACCESS_KID + '"}', claims))
  add('duplicate alg {"alg":"HS256","alg":"none"} with an empty signature',
    `${encode('{"alg":"HS256","alg":"none","typ":"at+jwt","kid":"' + ACCESS_KID + '"}')}.${encode(claims)}.`)
  add('duplicate typ {"typ":"at+jwt","typ":"rt+jwt"}', forge('{"alg":"HS256","typ":"at+jwt","typ":"rt+jwt","kid":"' + ACCESS_KID + '"}', claims))
  {
    const good = forge(AT, claims)
    const [h, p, s] = good.split('.') as [string, string, string]
    add('abc', 'abc')
    add('a.b', 'a.b')
    add('a.b.c', 'a.b.c')
    add('..', '..')
    add('4 segments', `${good}.${s}`)
    add('5 segments (JWE shape)', `${h}.${p}.${s}.${s}.${s}`)
    add('empty signature on a good header/payload', `${h}.${p}.`)
    add('non-base64url character in the payload', `${h}.${p.slice(0, 10)}*${p.slice(11)}.${s}`)
    add('standard base64 "+" in the signature', `${h}.${p}.${s.slice(0, -5)}+${s.slice(-4)}`)
    add('standard base64 "/" in the header', `${h.slice(0, 4)}/${h.slice(5)}.${p}.${s}`)
    add('"=" padding on the signature', `${good}=`)
    add('"==" padding on the signature', `${good}==`)
    add('signature truncated by one character', good.slice(0, -1))
    add('signature with one extra character', `${good}A`)
    add('base64 (not url) encoded parts', [h, p, s].map((part) => Buffer.from(part, 'base64url').toString('base64')).join('.'))
  }

  for (const [name, token, code] of cases) {
    t.test(name, async (t) => {
      assertInvalidToken(t, await me(app, token), code ?? INVALID)
      t.throws(() => app.tokenAuth.verifyAccessToken(token), { code: code ?? INVALID, statusCode: 401 }, 'verifyAccessToken throws the same code')
    })
  }

  t.test('exp in the past -> 401 TOKEN_EXPIRED (or INVALID_TOKEN for a negative exp)', async (t) => {
    assertInvalidToken(t, await me(app, forge(AT, accessClaims({ exp: nowSeconds() - 10 }))), EXPIRED)
    assertInvalidToken(t, await me(app, forge(AT, accessClaims({ exp: -1 }))), [EXPIRED, INVALID])
    assertInvalidToken(t, await me(app, forge(AT, accessClaims({ exp: 0 }))), [EXPIRED, INVALID])
  })

  t.test('typ at+jwt, application/at+jwt and AT+JWT are accepted (RFC 9068)', async (t) => {
    for (const typ of ['at+jwt', 'application/at+jwt', 'AT+JWT']) {
      const response = await me(app, forge({ alg: 'HS256', typ, kid: ACCESS_KID }, claims))
      t.equal(response.statusCode, 200, typ)
      t.same(response.json(), { id: USER_ID, sid: 'forged-sid' })
    }
  })

  t.test('a token over 8 KB is refused even when correctly signed', async (t) => {
    // The largest correctly signed token that fits the 8192-character cap passes; one more byte is refused.
    let padding = 5900
    let fits = forge(AT, accessClaims({ pad: 'x'.repeat(padding) }))
    t.ok(fits.length < 8192, 'start below the cap')
    let next = fits
    while (next.length <= 8192) {
      fits = next
      next = forge(AT, accessClaims({ pad: 'x'.repeat(++padding) }))
    }
    t.ok(fits.length <= 8192 && next.length > 8192, `${fits.length} fits, ${next.length} does not`)
    t.equal((await me(app, fits)).statusCode, 200, 'at the cap: accepted')
    assertInvalidToken(t, await me(app, next))
    assertInvalidToken(t, await me(app, forge(AT, accessClaims({ pad: 'x'.repeat(20_000) }))))
    assertInvalidToken(t, await me(app, 'a'.repeat(9000)))
  })

  t.test('the real token still works after all of that', async (t) => {
    const response = await me(app, real.accessToken)
    t.equal(response.statusCode, 200)
    t.equal(response.json().id, USER_ID)
  })
})

t.test('__proto__ in claims pollutes nothing', async (t) => {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions())
  app.get('/admin', { onRequest: app.authenticate }, async (request) => {
    const user = request.user as unknown as Claims
    return {
      isAdmin: user.isAdmin ?? null,
      inherited: 'isAdmin' in user,
      plainPrototype: Object.getPrototypeOf(user) === Object.prototype,
      globalPolluted: 'isAdmin' in {}
    }
  })
  t.teardown(() => app.close())
  await app.ready()

  const now = nowSeconds()
  const json = `{"sub":"${USER_ID}","sid":"s","jti":"j","iat":${now},"exp":${now + 300},"role":"user","__proto__":{"isAdmin":true}}`
  const response = await app.inject({ method: 'GET', url: '/admin', headers: { authorization: `Bearer ${forge(AT, json)}` } })
  t.ok([200, 401].includes(response.statusCode), 'accepted or refused, never 500')
  if (response.statusCode === 200) {
    t.same(response.json(), { isAdmin: null, inherited: false, plainPrototype: true, globalPolluted: false },
      'request.user has no inherited isAdmin and Object.prototype is untouched')
  } else {
    assertInvalidToken(t, response)
  }
  t.notOk('isAdmin' in {}, 'Object.prototype not polluted in the test process')

  // Claims handed to signAccessToken with an own "__proto__" key do not smuggle isAdmin either.
  const signed = app.tokenAuth.signAccessToken(USER_ID, 'sid-proto', JSON.parse('{"role":"user","__proto__":{"isAdmin":true}}'))
  const verified = app.tokenAuth.verifyAccessToken(signed.token) as unknown as Claims
  t.notOk('isAdmin' in verified, 'no isAdmin on the verified claims')
  t.equal(Object.getPrototypeOf(verified), Object.prototype)
  const viaRoute = await app.inject({ method: 'GET', url: '/admin', headers: { authorization: `Bearer ${signed.token}` } })
  t.equal(viaRoute.statusCode, 200)
  t.same(viaRoute.json(), { isAdmin: null, inherited: false, plainPrototype: true, globalPolluted: false })
})

t.test('token type confusion', async (t) => {
  t.test('the refresh token sent as a Bearer access token -> 401', async (t) => {
    const app = await build(t)
    const { refreshToken } = await login(app)
    t.ok(refreshToken.length > 0, 'got a refresh token from the login cookie')
    assertInvalidToken(t, await me(app, refreshToken))
    t.throws(() => app.tokenAuth.verifyAccessToken(refreshToken), { code: INVALID, statusCode: 401 })
    const sessions = await app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${refreshToken}` } })
    t.equal(sessions.statusCode, 401, 'not on the sessions route either')
    t.equal(sessions.json().code, INVALID)
    t.equal((await refresh(app, refreshToken)).statusCode, 200, 'the refresh token itself is still good for /refresh')
  })

  t.test('an access token sent as the refresh cookie -> 401 INVALID_REFRESH_TOKEN, and the session survives', async (t) => {
    const app = await build(t)
    const { accessToken, refreshToken } = await login(app)
    assertRefreshRefused(t, await refresh(app, accessToken))
    await t.rejects(app.tokenAuth.rotateRefreshToken(accessToken), { code: INVALID_REFRESH }, 'the helper refuses it too')

    t.equal((await me(app, accessToken)).statusCode, 200, 'the access token still works: the session was not revoked')
    const rotated = await refresh(app, refreshToken)
    t.equal(rotated.statusCode, 200, 'the real refresh token still refreshes')
    t.type(rotated.json().accessToken, 'string')
    const cookie = refreshCookie(rotated)
    t.ok(cookie?.value, 'a new refresh cookie')
    t.not(cookie?.value, refreshToken)
  })

  t.test('crossed keys and types are refused in both places; the session survives', async (t) => {
    const app = await build(t)
    const { accessToken, refreshToken } = await login(app)
    const { sub, sid } = refreshTokenOf(refreshToken)
    const now = nowSeconds()
    const refreshShaped = { sub, sid, jti: randomBytes(32).toString('base64url'), iat: now, exp: now + 3600 }
    const accessShaped = { ...claimsOf(accessToken), jti: randomBytes(16).toString('base64url') }

    const crossed: Array<[string, string]> = [
      ['refresh-typed token signed with the ACCESS secret', forge(RT, refreshShaped, ACCESS_SECRET)],
      ['access-typed token signed with the REFRESH secret', forge(AT, accessShaped, REFRESH_SECRET)],
      ['refresh-typed token with access claims signed with the ACCESS secret', forge(RT, accessShaped, ACCESS_SECRET)],
      ['access-typed token with refresh claims signed with the REFRESH secret', forge(AT, refreshShaped, REFRESH_SECRET)]
    ]
    for (const [name, token] of crossed) {
      t.test(name, async (t) => {
        assertInvalidToken(t, await me(app, token))
        assertRefreshRefused(t, await refresh(app, token))
      })
    }

    t.test('afterwards the real tokens still work', async (t) => {
      t.equal((await me(app, accessToken)).statusCode, 200, 'the access token: session not revoked')
      const rotated = await refresh(app, refreshToken)
      t.equal(rotated.statusCode, 200, 'the real refresh token still refreshes')
      t.ok(refreshCookie(rotated)?.value, 'with a new cookie')
    })
  })
})

t.test('forged refresh tokens at /auth/refresh -> 401 INVALID_REFRESH_TOKEN, session intact', async (t) => {
  const app = await build(t)
  const { accessToken, refreshToken } = await login(app)
  // The forgeries below alter what versions up to 0.1 issued for this very session: a JWT of
  // its claims, which the refresh route still reads (test/refresh.test.ts shows it rotates).
  const now = nowSeconds()
  const real: Claims = { ...refreshTokenOf(refreshToken), iat: now, exp: now + 600 }
  const fresh = (extra: Claims = {}): Claims => ({ ...real, jti: randomBytes(32).toString('base64url'), ...extra })
  const [realHeader, realPayload, realSignature] = forge(RT, real, REFRESH_SECRET).split('.') as [string, string, string]

  const cases: Array<[string, string]> = [
    ['signed with another key', forge(RT, fresh(), randomBytes(32))],
    ['the real claims signed with another key', forge(RT, real, randomBytes(32))],
    ['alg none, empty signature', `${encode({ alg: 'none', typ: 'rt+jwt' })}.${encode(real)}.`],
    ['alg none, no signature segment', `${encode({ alg: 'none', typ: 'rt+jwt' })}.${encode(real)}`],
    ['alg NONE with the real signature', `${encode({ alg: 'NONE', typ: 'rt+jwt' })}.${realPayload}.${realSignature}`],
    ['HS256 with the empty key', forge(RT, fresh(), '')],
    ['HS512 with the refresh secret', forge({ alg: 'HS512', typ: 'rt+jwt' }, fresh(), REFRESH_SECRET, 'sha512')],
    ['missing jti', forge(RT, without(fresh(), 'jti'), REFRESH_SECRET)],
    ['missing sid', forge(RT, without(fresh(), 'sid'), REFRESH_SECRET)],
    ['missing exp', forge(RT, without(fresh(), 'exp'), REFRESH_SECRET)],
    ['jti as a number', forge(RT, fresh({ jti: 42 }), REFRESH_SECRET)],
    ['sid as an array', forge(RT, fresh({ sid: [real.sid] }), REFRESH_SECRET)],
    ['typ at+jwt', forge(AT, fresh(), REFRESH_SECRET)],
    ['typ missing', forge({ alg: 'HS256' }, fresh(), REFRESH_SECRET)],
    ['typ JWT', forge({ alg: 'HS256', typ: 'JWT' }, fresh(), REFRESH_SECRET)],
    ['crit ["x"]', forge({ ...RT, crit: ['x'] }, fresh(), REFRESH_SECRET)],
    ['array payload', forge(RT, [fresh()], REFRESH_SECRET)],
    ['payload tampered (sub) under the real signature', `${realHeader}.${encode({ ...real, sub: 'user-2' })}.${realSignature}`],
    ['"=" padding on the real token', `${refreshToken}=`],
    ['4 segments', `${refreshToken}.${realSignature}`],
    ['garbage', 'abc'],
    ['over 8 KB', forge(RT, fresh({ pad: 'x'.repeat(9000) }), REFRESH_SECRET)]
  ]
  for (const [name, token] of cases) {
    t.test(name, async (t) => {
      assertRefreshRefused(t, await refresh(app, token))
    })
  }

  t.test('a forged token built with fast-jwt createSigner and the wrong key', async (t) => {
    const signer = createSigner({ key: randomBytes(32), header: { alg: 'HS256', typ: 'rt+jwt' }, expiresIn: 3_600_000 })
    assertRefreshRefused(t, await refresh(app, signer({ sub: real.sub, sid: real.sid, jti: 'x' })))
  })

  t.test('afterwards the session is intact: the real refresh token rotates and the access token works', async (t) => {
    t.equal((await me(app, accessToken)).statusCode, 200)
    const rotated = await refresh(app, refreshToken)
    t.equal(rotated.statusCode, 200)
    t.ok(refreshCookie(rotated)?.value)
  })
})

t.test('malleability: sibling encodings of a revoked token are refused', async (t) => {
  const app = await build(t)
  const { accessToken, refreshToken } = await login(app)
  const variants = siblings(accessToken)
  t.equal(variants.length, 3, 'three siblings of the last character')
  const signature = Buffer.from(accessToken.split('.')[2] as string, 'base64url')
  for (const variant of variants) {
    t.not(variant, accessToken)
    t.ok(Buffer.from(variant.split('.')[2] as string, 'base64url').equals(signature), 'a sibling decodes to the same signature bytes')
  }

  const logout = await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
  t.equal(logout.statusCode, 204)
  t.equal(refreshCookie(logout)?.value, '', 'cookie cleared')

  assertInvalidToken(t, await me(app, accessToken), REVOKED)
  for (const variant of variants) {
    t.test(`access token ending in "${variant.at(-1)}"`, async (t) => {
      assertInvalidToken(t, await me(app, variant), [REVOKED, INVALID])
      t.throws(() => app.tokenAuth.verifyAccessToken(variant), { name: 'FastifyError', statusCode: 401 })
    })
  }

  const refreshVariants = siblings(refreshToken)
  t.equal(refreshVariants.length, 3)
  for (const variant of [refreshToken, ...refreshVariants]) {
    t.test(`refresh token ending in "${variant.at(-1)}" after logout`, async (t) => {
      assertRefreshRefused(t, await refresh(app, variant))
    })
  }
})

t.test('malleability: a sibling of a rotated refresh token counts as that token (reuse), not a new one', async (t) => {
  const app = await build(t, { reuseGrace: 0 })
  const { accessToken, refreshToken } = await login(app)
  const rotated = await refresh(app, refreshToken)
  t.equal(rotated.statusCode, 200)
  const successor = refreshCookie(rotated)?.value as string
  const newAccess = rotated.json().accessToken as string

  const replay = await refresh(app, siblings(refreshToken)[0] as string)
  t.equal(replay.statusCode, 401, 'the re-encoded predecessor is refused')
  t.ok(['FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED', INVALID_REFRESH].includes(replay.json().code), replay.json().code)
  t.notOk('accessToken' in replay.json(), 'no tokens issued')
  if (replay.json().code === 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED') {
    // It verified (same jti), so it is theft: the whole session is gone.
    assertInvalidToken(t, await me(app, newAccess), REVOKED)
    assertInvalidToken(t, await me(app, accessToken), REVOKED)
    t.equal((await refresh(app, successor)).statusCode, 401, 'the successor is dead too')
  }
})

t.test('a login token verifies only in the app that issued it (different secrets)', async (t) => {
  const app = await build(t)
  const other = Fastify()
  // Text secrets: random bytes can happen to start with '{', which the options refuse as a JWK.
  await other.register(tokenAuth, baseOptions({ accessTokenSecret: randomBytes(32).toString('base64url'), refreshTokenSecret: randomBytes(32).toString('base64url') }))
  other.get('/me', { onRequest: other.authenticate }, async (request) => ({ id: request.user.sub }))
  t.teardown(() => other.close())
  await other.ready()
  const foreign = await login(other)
  assertInvalidToken(t, await me(app, foreign.accessToken))
  assertRefreshRefused(t, await refresh(app, foreign.refreshToken))
})

t.test('dates must be plausible: no future iat, no lifetime beyond the kind\'s', async (t) => {
  const app = await build(t, { accessTokenTtl: 300, clockTolerance: 5 })
  const now = nowSeconds()
  assertInvalidToken(t, await me(app, forge(AT, accessClaims({ iat: now + 3600, exp: now + 3700 }))))
  assertInvalidToken(t, await me(app, forge(AT, accessClaims({ iat: now, exp: now + 301 }))))
  assertInvalidToken(t, await me(app, forge(AT, accessClaims({ iat: now, exp: now + 365 * 24 * 3600 }))))
  assertInvalidToken(t, await me(app, forge(AT, accessClaims({ iat: now + 0.5 }))))
  const withinSkew = await me(app, forge(AT, accessClaims({ iat: now + 4, exp: now + 300 })))
  t.equal(withinSkew.statusCode, 200, 'an iat inside clockTolerance is accepted')
  const longRefresh = forge(RT, { sub: USER_ID, sid: 'x', jti: 'y', iat: now, exp: now + 15 * 24 * 3600 }, REFRESH_SECRET)
  const refused = await app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: longRefresh } })
  assertRefreshRefused(t, refused)
})
