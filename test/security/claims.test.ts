// Checklist group B (claims and typing), over real HTTP. Tokens are forged with each server's
// own key, so only the claims, the header's type and the signature's encoding are wrong.
import Fastify from 'fastify'
import t from 'tap'
import tokenAuth from '../../lib/index.js'
import { baseOptions } from '../helpers.js'
import {
  assertAccepted, assertRefused, type Claims, claimsOf, deployAsymmetric, deployHmac, deployPlugin, EXPIRED, forgeHmac,
  headerOf, highS, INVALID, INVALID_REFRESH, isHighS, nowSeconds, refuseAll, REVOKED, siblings, signatureOf, unsigned
} from './forge.js'
import {
  ACCESS_SECRET, alive, BOB, clearsCookie, get, login, logoutRequest, noIncidents, refresh, refreshRequest,
  refused
} from './harness.js'

const ISSUER = 'https://auth.example.test'
const AUDIENCE = 'https://api.example.test'

// The example with an issuer: every token carries `iss` and it is checked.
const hs = await deployHmac(t, { TOKEN_ISSUER: ISSUER })
// Options the example does not expose: an audience and 60 s of clock tolerance.
const strict = await deployPlugin(t, { issuer: ISSUER, audience: AUDIENCE, clockTolerance: 60, accessTokenTtl: 300 })
const es = await deployAsymmetric(t, 'ES256')

/** Alice's issued claims with some replaced, signed with the HS256 deployment's key. */
const forged = (extra: Claims, header: Claims | string = hs.header) => forgeHmac(header, hs.claims(extra), ACCESS_SECRET)

function without (claims: Claims, ...names: string[]): Claims {
  const copy = { ...claims }
  for (const name of names) delete copy[name]
  return copy
}

t.test('control: the issued claims, re-signed with the key, are accepted', async (t) => {
  t.equal(claimsOf(hs.valid()).iss, ISSUER, 'tokens carry the configured issuer')
  await assertAccepted(t, hs, hs.valid())
  const strictToken = strict.valid()
  t.equal(claimsOf(strictToken).aud, AUDIENCE, 'and the configured audience')
  await assertAccepted(t, strict, strictToken)
})

t.test('B1 no exp, or exp past the leeway: 401; inside the leeway: 200; leeway is capped at 300 s', async (t) => {
  const now = nowSeconds()
  refuseAll(t, hs, [
    ['no exp', forgeHmac(hs.header, without(hs.claims(), 'exp'), ACCESS_SECRET)],
    ['no exp and no iat', forgeHmac(hs.header, without(hs.claims(), 'exp', 'iat'), ACCESS_SECRET)]
  ])
  refuseAll(t, hs, [
    ['exp one second ago (no leeway configured)', forged({ iat: now - 60, exp: now - 1 })],
    ['exp an hour ago', forged({ iat: now - 3660, exp: now - 3600 })]
  ], { code: EXPIRED })
  t.test('exp in two seconds: accepted', async (t) => {
    await assertAccepted(t, hs, forged({ exp: now + 2 }))
  })
  t.test('clockTolerance 60: exp 30 s ago is inside the leeway', async (t) => {
    await assertAccepted(t, strict, strict.valid({ iat: now - 100, exp: now - 30 }))
  })
  refuseAll(t, strict, [
    ['clockTolerance 60: exp 90 s ago', strict.valid({ iat: now - 200, exp: now - 90 })],
    ['clockTolerance 60: exp a day ago', strict.valid({ iat: now - 86400, exp: now - 86300 })]
  ], { code: EXPIRED })
  t.test('clockTolerance over 300 s is refused at boot', async (t) => {
    for (const clockTolerance of [301, 3600, Infinity]) {
      const app = Fastify()
      t.teardown(() => app.close())
      await t.rejects(async () => { await app.register(tokenAuth, baseOptions({ clockTolerance })).ready() }, { code: 'FST_TOKEN_AUTH_INVALID_OPTION', message: /clockTolerance/ }, `${clockTolerance}`)
    }
  })
})

t.test('B2 exp / nbf / iat as a string, negative, 1e300, fractional; nbf or iat in the future', async (t) => {
  const now = nowSeconds()
  // Literal JSON, so 1e300 reaches the verifier as written.
  const json = (claims: Claims, raw: string) => `${JSON.stringify(hs.claims(claims)).slice(0, -1)},${raw}}`
  refuseAll(t, hs, [
    ['exp as a numeric string', forged({ exp: String(now + 300) })],
    ['exp as a date string', forged({ exp: new Date((now + 300) * 1000).toISOString() })],
    ['exp negative', forged({ exp: -1 })],
    ['exp 0', forged({ exp: 0 })],
    ['exp 1e300', forgeHmac(hs.header, json(without(hs.claims(), 'exp'), '"exp":1e300'), ACCESS_SECRET)],
    ['exp fractional', forged({ exp: now + 300.5 })],
    ['exp true', forged({ exp: true })],
    ['exp null', forged({ exp: null })],
    ['exp an array', forged({ exp: [now + 300] })],
    ['nbf as a string', forged({ nbf: 'now' })],
    ['nbf as a numeric string', forged({ nbf: String(now - 10) })],
    ['nbf negative', forged({ nbf: -1 })],
    ['nbf 1e300', forgeHmac(hs.header, json(hs.claims(), '"nbf":1e300'), ACCESS_SECRET)],
    ['nbf in the future', forged({ nbf: now + 600 })],
    ['nbf null', forged({ nbf: null })],
    ['iat as a string', forged({ iat: 'yesterday' })],
    ['iat negative', forged({ iat: -1 })],
    ['iat 1e300', forgeHmac(hs.header, json(without(hs.claims(), 'iat'), '"iat":1e300'), ACCESS_SECRET)],
    ['iat fractional', forged({ iat: now + 0.5 })],
    ['iat in the future', forged({ iat: now + 600, exp: now + 700 })],
    ['exp - iat longer than the access-token lifetime', forged({ iat: now, exp: now + 366 * 86400 })]
  ], { code: [INVALID, EXPIRED] })
})

t.test('B3 typ: missing, JWT, rt+jwt refused; at+jwt, application/at+jwt, AT+JWT accepted (RFC 9068)', async (t) => {
  const typed = (typ: unknown) => forgeHmac(typ === undefined ? without(hs.header, 'typ') : { ...hs.header, typ }, hs.claims(), ACCESS_SECRET)
  refuseAll(t, hs, [
    ['typ missing', typed(undefined)],
    ['typ JWT', typed('JWT')],
    ['typ rt+jwt', typed('rt+jwt')],
    ['typ application/jwt', typed('application/jwt')],
    ['typ ""', typed('')],
    ['typ null', typed(null)],
    ['typ ["at+jwt"]', typed(['at+jwt'])],
    ['typ "at+jwt " (trailing space)', typed('at+jwt ')]
  ])
  for (const typ of ['at+jwt', 'application/at+jwt', 'AT+JWT']) {
    t.test(`typ ${typ}: accepted`, async (t) => {
      const reply = await assertAccepted(t, hs, typed(typ))
      t.same(reply.json, { id: 'user-1', username: 'alice' })
    })
  }
})

t.test('B4 token kinds do not cross: refresh token as Bearer 401; access token at /refresh 401 and the family survives', async (t) => {
  const alice = await login(hs)
  t.throws(() => headerOf(alice.refreshToken), 'the refresh token is opaque: no JOSE header to confuse')
  t.test('the refresh token as a Bearer access token', async (t) => {
    await assertRefused(t, hs, alice.refreshToken)
  })
  t.test('the access token as the refresh cookie', async (t) => {
    const reply = await refreshRequest(hs, alice.accessToken)
    await refused(t, hs, reply, { status: 401, code: INVALID_REFRESH, sent: [alice.accessToken] })
    t.ok(clearsCookie(reply) || reply.setCookies.length === 0, 'at most the cookie that carried it is cleared')
  })
  t.test('afterwards the session is intact: its access token works and its refresh token rotates', async (t) => {
    await assertAccepted(t, hs, alice.accessToken)
    const rotated = await refresh(hs, alice.refreshToken)
    t.not(rotated.refreshToken, alice.refreshToken, 'a new refresh token')
    await assertAccepted(t, hs, rotated.accessToken)
  })
})

t.test('B5 iss and aud: wrong, missing, or an array (CVE-2025-30144): 401', async (t) => {
  refuseAll(t, hs, [
    ['iss wrong', forged({ iss: 'https://evil.example' })],
    ['iss missing', forgeHmac(hs.header, without(hs.claims(), 'iss'), ACCESS_SECRET)],
    ['iss ["https://evil", good]', forged({ iss: ['https://evil', ISSUER] })],
    ['iss [good, "https://evil"]', forged({ iss: [ISSUER, 'https://evil'] })],
    ['iss [good]', forged({ iss: [ISSUER] })],
    ['iss good with a trailing slash', forged({ iss: `${ISSUER}/` })],
    ['iss good in upper case', forged({ iss: ISSUER.toUpperCase() })],
    ['iss good as a prefix', forged({ iss: `${ISSUER}.evil.example` })],
    ['iss null', forged({ iss: null })],
    ['iss as an object', forged({ iss: { $eq: ISSUER } })],
    ['sub ["user-2", "user-1"]', forged({ sub: ['user-2', 'user-1'] })],
    ['jti as an array', forged({ jti: ['a', 'b'] })]
  ])
  refuseAll(t, strict, [
    ['aud missing', forgeHmac(strict.header, without(strict.claims(), 'aud'), ACCESS_SECRET)],
    ['aud wrong', strict.valid({ aud: 'https://other-api.example' })],
    ['aud ["https://other"]', strict.valid({ aud: ['https://other-api.example'] })],
    ['aud good with a suffix', strict.valid({ aud: `${AUDIENCE}.evil.example` })],
    ['aud ""', strict.valid({ aud: '' })],
    ['aud null', strict.valid({ aud: null })],
    ['iss wrong, aud right', strict.valid({ iss: 'https://evil.example' })]
  ])
})

t.test('B6 claims {"role":"user","__proto__":{"isAdmin":true}} and friends: the admin route answers 403', async (t) => {
  const now = nowSeconds()
  const base = JSON.stringify(hs.claims({ iat: now, exp: now + 300 })).slice(1, -1).replace(/,?"role":"[a-z]+"/, '')
  const admin = (json: string) => get(hs, '/admin', forgeHmac(hs.header, `{${base},${json}}`, ACCESS_SECRET))
  t.test('control: an own role "admin" passes, so the 403s below are the claim handling', async (t) => {
    const reply = await admin('"role":"admin"')
    t.equal(reply.status, 200)
  })
  for (const json of [
    '"role":"user","__proto__":{"isAdmin":true}',
    '"role":"user","__proto__":{"role":"admin"}',
    '"__proto__":{"role":"admin"}',
    '"constructor":{"prototype":{"role":"admin"}}',
    '"role":["admin"]',
    '"role":{"toString":"admin"}'
  ]) {
    t.test(json, async (t) => {
      const reply = await admin(json)
      await refused(t, hs, reply, { status: 403, code: 'FORBIDDEN' })
      t.notOk('isAdmin' in {}, 'Object.prototype is not polluted in the server\'s process')
      t.notOk('role' in {}, 'nor with role')
    })
  }
  t.test('bob (role user) gets 403 with his real token', async (t) => {
    const bob = await login(hs, BOB)
    await refused(t, hs, await get(hs, '/admin', bob.accessToken), { status: 403, code: 'FORBIDDEN' })
  })
})

t.test('B7 duplicate header keys: 401', async (t) => {
  const kid = JSON.stringify(hs.header.kid)
  const payload = hs.claims()
  refuseAll(t, hs, [
    ['{"alg":"HS256","alg":"none"} with an HMAC', forgeHmac(`{"alg":"HS256","alg":"none","typ":"at+jwt","kid":${kid}}`, payload, ACCESS_SECRET)],
    ['{"alg":"HS256","alg":"none"} with an empty signature', unsigned(`{"alg":"HS256","alg":"none","typ":"at+jwt","kid":${kid}}`, payload)],
    ['{"alg":"none","alg":"HS256"} with an empty signature', unsigned(`{"alg":"none","alg":"HS256","typ":"at+jwt","kid":${kid}}`, payload)],
    ['{"typ":"at+jwt","typ":"rt+jwt"}', forgeHmac(`{"alg":"HS256","typ":"at+jwt","typ":"rt+jwt","kid":${kid}}`, payload, ACCESS_SECRET)],
    ['{"kid":<ours>,"kid":"unknown"}', forgeHmac(`{"alg":"HS256","typ":"at+jwt","kid":${kid},"kid":"unknown"}`, payload, ACCESS_SECRET)],
    ['{"alg":"HS256","alg":"HS512"} with an HMAC-SHA512', forgeHmac(`{"alg":"HS256","alg":"HS512","typ":"at+jwt","kid":${kid}}`, payload, ACCESS_SECRET, 'HS512')]
  ])
})

t.test('B8 malleability: sibling encodings and high-S signatures are refused, before and after logout', async (t) => {
  for (const deployment of [hs, es]) {
    const alg = String(deployment.header.alg)
    t.test(`${alg} deployment`, async (t) => {
      const session = await login(deployment)
      const variants = siblings(session.accessToken)
      t.equal(variants.length, alg === 'ES256' ? 15 : 3, 'every other spelling of the last character')
      for (const variant of variants) t.ok(signatureOf(variant).equals(signatureOf(session.accessToken)), 'same signature bytes')
      if (alg === 'ES256') {
        t.notOk(isHighS(signatureOf(session.accessToken)), 'the server signs in low-S form')
        variants.push(highS(session.accessToken))
        t.ok(isHighS(signatureOf(highS(session.accessToken))), 'the (r, n - s) twin is high-S')
      }

      t.test('live session: only the exact issued text is accepted', async (t) => {
        await assertAccepted(t, deployment, session.accessToken)
        for (const variant of variants) await assertRefused(t, deployment, variant)
      })
      t.test('after logout: the token and every variant are refused; the refresh token and its siblings too', async (t) => {
        const logout = await logoutRequest(deployment, session.refreshToken)
        t.equal(logout.status, 204, 'logged out')
        await assertRefused(t, deployment, session.accessToken, { code: REVOKED })
        for (const variant of variants) await assertRefused(t, deployment, variant, { code: [INVALID, REVOKED] })
        for (const token of [session.refreshToken, ...siblings(session.refreshToken)]) {
          await refused(t, deployment, await refreshRequest(deployment, token), { status: 401, code: INVALID_REFRESH, sent: [token] })
        }
      })
    })
  }
})

t.test('after group B: the servers are up and nothing escaped', async (t) => {
  for (const deployment of [hs, strict, es]) await alive(t, deployment)
  noIncidents(t, hs, es)
})
