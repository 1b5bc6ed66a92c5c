// accessTokenKeys (issue #4): every algorithm end to end, PEM and JWK inputs, default and explicit
// kids, rotation, the kid lookup, canonical signatures (no second text of a token verifies), the
// JWKS route, and every boot-time refusal of a weak, malformed or mismatched key.
import {
  createHash, createHmac, createPublicKey, createSecretKey, generateKeyPairSync, type JsonWebKey, type KeyObject, randomBytes,
  sign as cryptoSign, verify as cryptoVerify
} from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { ACCESS_TOKEN_ALGORITHMS, type AccessTokenAlgorithm, type AccessTokenKey, MemoryStore, type TokenAuthOptions } from '../lib/index.js'
import {
  ACCESS_KID, ACCESS_SECRET, assertBootFails, build, decodePayload, INVALID_TOKEN, login, me, refresh, REFRESH_SECRET, refreshCookie, USER_ID
} from './helpers.js'

type Asymmetric = Exclude<AccessTokenAlgorithm, 'HS256'>
type Header = Record<string, unknown>

const INVALID = 'FST_TOKEN_AUTH_INVALID_TOKEN'
const INVALID_REFRESH = 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'
const JWKS_PATH = '/.well-known/jwks.json'
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551n

const pairs: Record<Asymmetric, { privateKey: KeyObject, publicKey: KeyObject }> = {
  EdDSA: generateKeyPairSync('ed25519'),
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  RS256: generateKeyPairSync('rsa', { modulusLength: 2048 })
}
// A second key of each kind, for rotation and mismatched pairs.
const otherEd = generateKeyPairSync('ed25519')
const otherEc = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const HS_SECRET = randomBytes(32).toString('base64url')
const OTHER_HS_SECRET = randomBytes(48)

// RFC 7638 §3.1: the example RSA key (RFC 7517 appendix A.1) and its published thumbprint.
const RFC7638_JWK = {
  kty: 'RSA',
  e: 'AQAB',
  n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw'
}
const RFC7638_THUMBPRINT = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs'

const privatePem = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }) as string
const publicPem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }) as string
const jwkOf = (key: KeyObject): JsonWebKey => key.export({ format: 'jwk' })

/** RFC 7638 §3.2, written out per key type: the required members, sorted, no whitespace. */
function rfc7638 (key: KeyObject | JsonWebKey): string {
  const jwk = 'export' in key ? jwkOf(key as KeyObject) : key as JsonWebKey
  const canonical = jwk.kty === 'RSA'
    ? `{"e":"${jwk.e}","kty":"RSA","n":"${jwk.n}"}`
    : jwk.kty === 'EC'
      ? `{"crv":"${jwk.crv}","kty":"EC","x":"${jwk.x}","y":"${jwk.y}"}`
      : `{"crv":"${jwk.crv}","kty":"OKP","x":"${jwk.x}"}`
  return createHash('sha256').update(canonical).digest('base64url')
}

/** The signing key of each algorithm, as PEM (RS256 as a Buffer, the other accepted form). */
function signingKey (algorithm: AccessTokenAlgorithm): AccessTokenKey {
  if (algorithm === 'HS256') return { algorithm, secret: HS_SECRET }
  const pem = privatePem(pairs[algorithm].privateKey)
  return { algorithm, privateKey: algorithm === 'RS256' ? Buffer.from(pem) : pem }
}

/** Options with `accessTokenKeys` instead of the helpers' `accessTokenSecret`. */
function withKeys (keys: unknown, extra: Partial<TokenAuthOptions> = {}): Record<string, unknown> {
  return { accessTokenSecret: undefined, accessTokenKeys: keys, ...extra }
}

function headerOf (token: string): Header {
  return JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()) as Header
}

const encode = (part: unknown): string => Buffer.from(typeof part === 'string' ? part : JSON.stringify(part)).toString('base64url')

/** A JWS signature as JWT puts it (ES256 in IEEE P1363 form, r || s). */
function signatureOf (algorithm: string, key: KeyObject | string, input: string): Buffer {
  if (algorithm === 'HS256') return createHmac('sha256', key).update(input).digest()
  if (algorithm === 'EdDSA') return cryptoSign(null, Buffer.from(input), key)
  if (algorithm === 'ES256') return cryptoSign('sha256', Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' })
  return cryptoSign('sha256', Buffer.from(input), key)
}

/** Hand-signs `header.payload` with `key` (the header's own `alg` is not consulted). */
function forge (header: unknown, payload: unknown, algorithm: string, key: KeyObject | string): string {
  const input = `${encode(header)}.${encode(payload)}`
  return `${input}.${signatureOf(algorithm, key, input).toString('base64url')}`
}

/** Whether the JWK published for a token verifies its signature, as another service would check it. */
function verifiesWith (jwk: JsonWebKey, token: string): boolean {
  const dot = token.lastIndexOf('.')
  const input = Buffer.from(token.slice(0, dot))
  const signature = Buffer.from(token.slice(dot + 1), 'base64url')
  const key = createPublicKey({ key: jwk, format: 'jwk' })
  const alg = headerOf(token).alg
  if (alg === 'EdDSA') return cryptoVerify(null, input, key, signature)
  if (alg === 'ES256') return cryptoVerify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, signature)
  return cryptoVerify('sha256', input, key, signature)
}

/** Every other spelling of the signature's last base64url character that decodes to the same bytes. */
function siblings (token: string): string[] {
  const dot = token.lastIndexOf('.')
  const signature = Buffer.from(token.slice(dot + 1), 'base64url')
  const prefix = token.slice(0, -1)
  return [...BASE64URL].filter((c) => c !== token.at(-1) && Buffer.from(prefix.slice(dot + 1) + c, 'base64url').equals(signature)).map((c) => prefix + c)
}

function assertInvalidToken (t: Test, response: LightMyRequestResponse, label: string): void {
  t.equal(response.statusCode, 401, `${label}: 401`)
  t.equal(response.json().code, INVALID, `${label}: ${INVALID}`)
  t.equal(response.headers['www-authenticate'], INVALID_TOKEN, `${label}: invalid_token challenge`)
}

async function jwks (app: FastifyInstance, path = JWKS_PATH): Promise<{ response: LightMyRequestResponse, keys: JsonWebKey[] }> {
  const response = await app.inject({ method: 'GET', url: path })
  return { response, keys: response.statusCode === 200 ? response.json().keys : [] }
}

function assertPublicOnly (t: Test, keys: JsonWebKey[]): void {
  for (const key of keys) {
    for (const member of PRIVATE_MEMBERS) t.notOk(member in key, `${String(key.kid)}: no "${member}"`)
    t.equal(key.use, 'sig', `${String(key.kid)}: use sig`)
  }
}

t.test('each algorithm: login, /me, header { alg, typ at+jwt, kid }, and the JWKS key verifies the token', async (t) => {
  const expectedKid: Record<AccessTokenAlgorithm, string> = {
    HS256: createHmac('sha256', HS_SECRET).update('fastify-token-auth:kid').digest('base64url').slice(0, 16),
    EdDSA: rfc7638(pairs.EdDSA.publicKey),
    ES256: rfc7638(pairs.ES256.publicKey),
    RS256: rfc7638(pairs.RS256.publicKey)
  }
  for (const algorithm of ACCESS_TOKEN_ALGORITHMS) {
    await t.test(algorithm, async (t) => {
      const asymmetric = algorithm !== 'HS256'
      const app = await build(t, withKeys([signingKey(algorithm)], asymmetric ? { jwks: true } : {}))
      const session = await login(app)
      t.strictSame(headerOf(session.accessToken), { alg: algorithm, typ: 'at+jwt', kid: expectedKid[algorithm] })
      // Refresh tokens never change algorithm or key: they only ever return to this service.
      t.throws(() => headerOf(session.refreshToken), 'the refresh token is opaque, whatever the access-token key')
      const response = await me(app, session.accessToken)
      t.equal(response.statusCode, 200)
      t.equal(response.json().id, USER_ID)
      const rotated = await refresh(app, session.refreshToken)
      t.equal(rotated.statusCode, 200, 'refresh issues a token from the same key')
      t.equal(headerOf(rotated.json().accessToken).kid, expectedKid[algorithm])

      const published = await jwks(app)
      if (!asymmetric) {
        t.equal(published.response.statusCode, 404, 'no JWKS route unless asked for')
        return
      }
      t.equal(published.response.statusCode, 200)
      t.equal(published.keys.length, 1)
      const jwk = published.keys[0] as JsonWebKey
      t.match(jwk, { kid: expectedKid[algorithm], alg: algorithm, use: 'sig', kty: jwkOf(pairs[algorithm].publicKey).kty })
      assertPublicOnly(t, published.keys)
      t.ok(verifiesWith(jwk, session.accessToken), 'the published JWK verifies the signature')
      const [head, , signature] = session.accessToken.split('.')
      t.notOk(verifiesWith(jwk, `${head}.${encode({ ...decodePayload(session.accessToken), sub: 'mallory' })}.${signature}`), 'and nothing else')
    })
  }
})

t.test('the default kid is the RFC 7638 thumbprint (the RFC\'s own example key) and the shorthand secret keeps its kid', async (t) => {
  const app = await build(t, withKeys([signingKey('EdDSA'), { algorithm: 'RS256', publicKey: RFC7638_JWK }], { jwks: true }))
  const { keys } = await jwks(app)
  t.strictSame(keys.map((key) => key.kid), [rfc7638(pairs.EdDSA.publicKey), RFC7638_THUMBPRINT])
  t.equal(rfc7638(RFC7638_JWK), RFC7638_THUMBPRINT, 'the test\'s own thumbprint agrees with the RFC')

  const shorthand = await build(t)
  t.equal(headerOf((await login(shorthand)).accessToken).kid, ACCESS_KID, 'accessTokenSecret: the kid helpers.ACCESS_KID names')
})

t.test('keys as PEM (string or Buffer), JWK or KeyObject; an explicit kid; a matching publicKey next to the privateKey', async (t) => {
  const cases: Array<[label: string, key: AccessTokenKey, kid: string]> = [
    ['EdDSA private JWK', { algorithm: 'EdDSA', privateKey: jwkOf(pairs.EdDSA.privateKey) }, rfc7638(pairs.EdDSA.publicKey)],
    ['ES256 private JWK with its public JWK', { algorithm: 'ES256', privateKey: jwkOf(pairs.ES256.privateKey), publicKey: jwkOf(pairs.ES256.publicKey) }, rfc7638(pairs.ES256.publicKey)],
    ['RS256 private PEM string with its public PEM Buffer', { algorithm: 'RS256', privateKey: privatePem(pairs.RS256.privateKey), publicKey: Buffer.from(publicPem(pairs.RS256.publicKey)) }, rfc7638(pairs.RS256.publicKey)],
    ['ES256 private KeyObject with its public KeyObject', { algorithm: 'ES256', privateKey: pairs.ES256.privateKey, publicKey: pairs.ES256.publicKey }, rfc7638(pairs.ES256.publicKey)],
    ['EdDSA with an explicit kid', { algorithm: 'EdDSA', privateKey: privatePem(pairs.EdDSA.privateKey), kid: '2026-05.ed_1' }, '2026-05.ed_1'],
    ['HS256 Buffer secret with an explicit kid', { algorithm: 'HS256', secret: OTHER_HS_SECRET, kid: 'hs-1' }, 'hs-1']
  ]
  for (const [label, key, kid] of cases) {
    const app = await build(t, withKeys([key]))
    const { accessToken } = await login(app)
    t.equal(headerOf(accessToken).alg, key.algorithm, `${label}: alg`)
    t.equal(headerOf(accessToken).kid, kid, `${label}: kid`)
    t.equal((await me(app, accessToken)).statusCode, 200, `${label}: /me 200`)
  }
})

t.test('rotation: the old key verifies while kept (verify-only, as a public JWK, PEM or KeyObject), and stops once removed', async (t) => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const oldKey = signingKey('EdDSA')
  const newKey = { algorithm: 'ES256' as const, privateKey: privatePem(otherEc.privateKey) }
  const before = await build(t, withKeys([oldKey], { store }))
  const old = await login(before)
  t.equal(headerOf(old.accessToken).alg, 'EdDSA')

  for (const [label, verifyOnly] of [
    ['public JWK', { algorithm: 'EdDSA', publicKey: jwkOf(pairs.EdDSA.publicKey) }],
    ['public PEM', { algorithm: 'EdDSA', publicKey: publicPem(pairs.EdDSA.publicKey) }],
    ['the private KeyObject given as publicKey (its public half is used)', { algorithm: 'EdDSA', publicKey: pairs.EdDSA.privateKey }]
  ] as const) {
    const during = await build(t, withKeys([newKey, verifyOnly], { store, jwks: true }))
    t.equal((await me(during, old.accessToken)).statusCode, 200, `${label}: a token of the old key still verifies`)
    const fresh = await login(during)
    t.strictSame(headerOf(fresh.accessToken), { alg: 'ES256', typ: 'at+jwt', kid: rfc7638(otherEc.publicKey) }, `${label}: the new key signs`)
    t.equal((await me(during, fresh.accessToken)).statusCode, 200)
    const { keys } = await jwks(during)
    t.strictSame(keys.map((key) => [key.kid, key.alg]), [[rfc7638(otherEc.publicKey), 'ES256'], [rfc7638(pairs.EdDSA.publicKey), 'EdDSA']],
      `${label}: both keys published, the verify-only one too`)
  }
  // A refresh token is untouched by access-key rotation; what it yields is signed by the new key.
  const during = await build(t, withKeys([newKey, { algorithm: 'EdDSA', publicKey: jwkOf(pairs.EdDSA.publicKey) }], { store }))
  const rotated = await refresh(during, old.refreshToken)
  t.equal(rotated.statusCode, 200)
  t.equal(headerOf(rotated.json().accessToken).alg, 'ES256')

  const after = await build(t, withKeys([newKey], { store }))
  assertInvalidToken(t, await me(after, old.accessToken), 'the old key removed')
  t.equal((await me(after, rotated.json().accessToken)).statusCode, 200, 'the new key\'s tokens verify')
})

t.test('rotation of HS256 secrets: [new, old] verifies both, [new] refuses the old', async (t) => {
  const before = await build(t, withKeys([{ algorithm: 'HS256', secret: HS_SECRET }]))
  const old = await login(before)
  const during = await build(t, withKeys([{ algorithm: 'HS256', secret: OTHER_HS_SECRET }, { algorithm: 'HS256', secret: HS_SECRET }]))
  t.equal((await me(during, old.accessToken)).statusCode, 200, 'the old secret still verifies')
  const fresh = await login(during)
  t.not(headerOf(fresh.accessToken).kid, headerOf(old.accessToken).kid, 'the new secret has its own kid')
  const after = await build(t, withKeys([{ algorithm: 'HS256', secret: OTHER_HS_SECRET }]))
  assertInvalidToken(t, await me(after, old.accessToken), 'the old secret removed')
  t.equal((await me(after, fresh.accessToken)).statusCode, 200)
})

t.test('the kid is only a lookup in our keys, and the alg must be the one pinned to that key', async (t) => {
  const hsKid = 'hs-verify-only'
  const app = await build(t, withKeys([signingKey('EdDSA'), { algorithm: 'HS256', secret: HS_SECRET, kid: hsKid }]))
  const { accessToken } = await login(app)
  const claims = decodePayload(accessToken)
  const edKey = pairs.EdDSA.privateKey
  const kid = rfc7638(pairs.EdDSA.publicKey)
  const typ = 'at+jwt'

  // The control: a hand-signed token with the right header verifies, so every 401 below is the header's.
  t.equal((await me(app, forge({ alg: 'EdDSA', typ, kid }, claims, 'EdDSA', edKey))).statusCode, 200, 'control: a well-formed hand-signed token')
  // Headers of up to 256 base64url characters are read: 192 bytes of JSON encode to exactly 256.
  const padTo = (length: number): Header => {
    const header: Header = { alg: 'EdDSA', typ, kid, pad: '' }
    header.pad = 'x'.repeat(length - JSON.stringify(header).length)
    return header
  }
  t.equal(encode(padTo(192)).length, 256)
  t.equal((await me(app, forge(padTo(192), claims, 'EdDSA', edKey))).statusCode, 200, 'a 256-character header is read')

  const refused: Array<[label: string, token: string]> = [
    ['unknown kid', forge({ alg: 'EdDSA', typ, kid: 'not-one-of-ours' }, claims, 'EdDSA', edKey)],
    ['no kid', forge({ alg: 'EdDSA', typ }, claims, 'EdDSA', edKey)],
    ['kid not a string', forge({ alg: 'EdDSA', typ, kid: [kid] }, claims, 'EdDSA', edKey)],
    ['kid of the HS256 key, EdDSA signature', forge({ alg: 'EdDSA', typ, kid: hsKid }, claims, 'EdDSA', edKey)],
    ['kid of the EdDSA key, HS256 with the real secret', forge({ alg: 'HS256', typ, kid }, claims, 'HS256', HS_SECRET)],
    ['kid of the EdDSA key, HS256 keyed with its public PEM', forge({ alg: 'HS256', typ, kid }, claims, 'HS256', publicPem(pairs.EdDSA.publicKey))],
    ['kid of the EdDSA key, alg none', `${encode({ alg: 'none', typ, kid })}.${encode(claims)}.`],
    ['header of 257+ characters', forge(padTo(193), claims, 'EdDSA', edKey)],
    ['header not JSON', forge('{"alg":"EdDSA",', claims, 'EdDSA', edKey)],
    ['header JSON null', forge('null', claims, 'EdDSA', edKey)],
    ['header a JSON string', forge('"EdDSA"', claims, 'EdDSA', edKey)],
    ['empty header', `.${encode(claims)}.${signatureOf('EdDSA', edKey, `.${encode(claims)}`).toString('base64url')}`],
    ['no dot at all', encode(claims)]
  ]
  t.equal(encode(padTo(193)).length, 258)
  for (const [label, token] of refused) assertInvalidToken(t, await me(app, token), label)
  t.throws(() => app.tokenAuth.verifyAccessToken(refused[0]![1]), { code: INVALID }, 'verifyAccessToken refuses the same way')
})

t.test('ES256: every issued signature is low-S; the high-S twin, a short or DER signature is refused', async (t) => {
  const app = await build(t, withKeys([signingKey('ES256')]))
  const session = await login(app)
  const { sid } = decodePayload(session.accessToken) as { sid: string }
  const half = P256_ORDER >> 1n
  const sOf = (token: string): bigint => BigInt(`0x${Buffer.from(token.split('.')[2] as string, 'base64url').toString('hex', 32)}`)
  // node:crypto draws S at random: over 200 tokens, about half were high-S before the plugin flipped them.
  let valid = 0
  for (let i = 0; i < 200; i++) {
    const { token } = app.tokenAuth.signAccessToken(USER_ID, sid)
    const signature = Buffer.from(token.split('.')[2] as string, 'base64url')
    if (signature.length === 64 && sOf(token) <= half && verifiesWith(jwkOf(pairs.ES256.publicKey), token) &&
      app.tokenAuth.verifyAccessToken(token).sid === sid) valid++
  }
  t.equal(valid, 200, '200 of 200 tokens: 64-byte r||s, S <= n/2, verify with the public key and with the plugin')

  t.equal((await me(app, session.accessToken)).statusCode, 200, 'the issued token (now cached as verified)')
  const [input, encoded] = [session.accessToken.slice(0, session.accessToken.lastIndexOf('.')), session.accessToken.split('.')[2] as string]
  const signature = Buffer.from(encoded, 'base64url')
  const highS = Buffer.concat([signature.subarray(0, 32), Buffer.from((P256_ORDER - sOf(session.accessToken)).toString(16).padStart(64, '0'), 'hex')])
  const twin = `${input}.${highS.toString('base64url')}`
  t.ok(verifiesWith(jwkOf(pairs.ES256.publicKey), twin), 'the high-S twin is a valid ECDSA signature')
  assertInvalidToken(t, await me(app, twin), 'high-S twin')
  const der = cryptoSign('sha256', Buffer.from(input), pairs.ES256.privateKey)
  t.ok(cryptoVerify('sha256', Buffer.from(input), pairs.ES256.publicKey, der), 'the DER signature is valid ECDSA')
  assertInvalidToken(t, await me(app, `${input}.${der.toString('base64url')}`), 'DER-encoded signature')
  assertInvalidToken(t, await me(app, `${input}.${signature.subarray(0, 63).toString('base64url')}`), '63-byte signature')
  t.equal((await me(app, session.accessToken)).statusCode, 200, 'the issued token still verifies')
})

t.test('a non-canonical base64url signature (same bytes, another last character, or padding) is refused', async (t) => {
  for (const algorithm of ACCESS_TOKEN_ALGORITHMS) {
    const app = await build(t, withKeys([signingKey(algorithm)]))
    const { accessToken } = await login(app)
    // Verified first, so the verified-token cache holds the canonical text: a sibling must miss it.
    t.equal((await me(app, accessToken)).statusCode, 200, `${algorithm}: the issued token`)
    const others = siblings(accessToken)
    // 32 bytes (HS256) leave 2 unused bits in the last character, 64 and 256 bytes leave 4.
    t.equal(others.length, algorithm === 'HS256' ? 3 : 15, `${algorithm}: ${others.length} siblings`)
    for (const sibling of others) assertInvalidToken(t, await me(app, sibling), `${algorithm} sibling ...${sibling.slice(-3)}`)
    assertInvalidToken(t, await me(app, `${accessToken}=`), `${algorithm} padded`)
    t.equal((await me(app, accessToken)).statusCode, 200, `${algorithm}: the issued token still verifies`)
  }
})

t.test('a non-canonical refresh token is refused and rotates nothing', async (t) => {
  const app = await build(t, { reuseGrace: 0 })
  const { refreshToken } = await login(app)
  // The tag (the last 22 characters, 128 bits) leaves 4 bits of its last character unused: 15
  // other spellings decode to the same bytes, and none is the token we minted.
  const tag = refreshToken.slice(-22)
  const others = [...BASE64URL].filter((c) => c !== tag.at(-1) && Buffer.from(tag.slice(0, -1) + c, 'base64url').equals(Buffer.from(tag, 'base64url')))
    .map((c) => refreshToken.slice(0, -1) + c)
  t.equal(others.length, 15)
  for (const sibling of [...others, `${refreshToken}=`]) {
    const response = await refresh(app, sibling)
    t.equal(response.statusCode, 401, `...${sibling.slice(-3)}: 401`)
    t.equal(response.json().code, INVALID_REFRESH)
    t.equal(refreshCookie(response)?.value, '', 'the cookie is cleared')
  }
  // With reuseGrace 0, a rotation by any sibling would make this a reuse.
  t.equal((await refresh(app, refreshToken)).statusCode, 200, 'the issued token still rotates')
})

t.test('JWKS: every asymmetric key, verify-only ones too, public members only, never an HMAC key', async (t) => {
  const app = await build(t, withKeys([
    signingKey('EdDSA'),
    { algorithm: 'ES256', publicKey: publicPem(pairs.ES256.publicKey) },
    { algorithm: 'HS256', secret: HS_SECRET, kid: 'hmac' },
    // A verify-only key that still carries its private half: only the public half is published.
    { algorithm: 'RS256', privateKey: privatePem(pairs.RS256.privateKey), kid: 'rsa-2025' }
  ], { jwks: true }))
  const { response, keys } = await jwks(app)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['cache-control'], 'public, max-age=300')
  t.equal(response.headers.pragma, undefined, 'cacheable, unlike the auth routes')
  t.match(response.headers['content-type'], /^application\/json/)
  t.strictSame(keys.map((key) => [key.kid, key.alg, key.kty]), [
    [rfc7638(pairs.EdDSA.publicKey), 'EdDSA', 'OKP'], [rfc7638(pairs.ES256.publicKey), 'ES256', 'EC'], ['rsa-2025', 'RS256', 'RSA']
  ])
  assertPublicOnly(t, keys)
  t.notOk(response.body.includes(HS_SECRET), 'no secret in the body')
  t.strictSame(keys[2], { ...jwkOf(pairs.RS256.publicKey), kid: 'rsa-2025', alg: 'RS256', use: 'sig' }, 'exactly the public JWK, kid, alg, use')
  t.equal((await app.inject({ method: 'POST', url: JWKS_PATH })).statusCode, 404, 'GET only')
})

t.test('JWKS: { path, maxAge }, at the app root whatever the prefix; absent unless enabled', async (t) => {
  const custom = await build(t, withKeys([signingKey('EdDSA')], { jwks: { path: '/keys/', maxAge: 60 }, prefix: '/api/auth' }))
  const moved = await jwks(custom, '/keys')
  t.equal(moved.response.statusCode, 200)
  t.equal(moved.response.headers['cache-control'], 'public, max-age=60')
  t.equal(moved.keys.length, 1)
  t.equal((await jwks(custom)).response.statusCode, 404, 'nothing at the default path')

  const uncached = await build(t, withKeys([signingKey('EdDSA')], { jwks: { maxAge: 0 }, prefix: '/api/auth' }))
  const root = await jwks(uncached)
  t.equal(root.response.statusCode, 200, 'the default path, not under the prefix')
  t.equal(root.response.headers['cache-control'], 'public, max-age=0')

  for (const jwksOption of [false, undefined]) {
    const off = await build(t, withKeys([signingKey('EdDSA')], { jwks: jwksOption }))
    t.equal((await jwks(off)).response.statusCode, 404, `jwks: ${String(jwksOption)}`)
  }
})

t.test('JWKS: invalid options and HMAC-only keys fail the boot', async (t) => {
  const asymmetric = withKeys([signingKey('EdDSA')])
  const cases: Array<[label: string, overrides: Record<string, unknown>, option: string]> = [
    ['jwks with accessTokenSecret', { jwks: true }, 'jwks'],
    ['jwks with HS256 keys only', withKeys([signingKey('HS256'), { algorithm: 'HS256', secret: OTHER_HS_SECRET }], { jwks: true }), 'jwks'],
    ['jwks: "yes"', { ...asymmetric, jwks: 'yes' }, 'jwks'],
    ['jwks: 1', { ...asymmetric, jwks: 1 }, 'jwks'],
    ['jwks: null', { ...asymmetric, jwks: null }, 'jwks'],
    ['jwks.path without a slash', { ...asymmetric, jwks: { path: 'jwks.json' } }, 'jwks.path'],
    ['jwks.path empty', { ...asymmetric, jwks: { path: '' } }, 'jwks.path'],
    ['jwks.path with a query', { ...asymmetric, jwks: { path: '/jwks?x=1' } }, 'jwks.path'],
    ['jwks.maxAge -1', { ...asymmetric, jwks: { maxAge: -1 } }, 'jwks.maxAge'],
    ['jwks.maxAge over a day', { ...asymmetric, jwks: { maxAge: 86401 } }, 'jwks.maxAge'],
    ['jwks.maxAge 1.5', { ...asymmetric, jwks: { maxAge: 1.5 } }, 'jwks.maxAge'],
    ['jwks.maxAge "300"', { ...asymmetric, jwks: { maxAge: '300' } }, 'jwks.maxAge']
  ]
  for (const [label, overrides, option] of cases) await assertBootFails(t, overrides, option, label)
})

t.test('every key refused at boot names its option path and never echoes key material', async (t) => {
  const wrongType = (algorithm: AccessTokenAlgorithm, key: KeyObject): Record<string, unknown> => withKeys([{ algorithm, privateKey: privatePem(key) }])
  const rsaPublicPem = publicPem(pairs.RS256.publicKey)
  const edPrivateJwk = jwkOf(pairs.EdDSA.privateKey)
  const short = 'Sh0rt-but-varied!'
  const repetitive = 'ab'.repeat(24)
  const garbagePem = '-----BEGIN PRIVATE KEY-----\nTUlJQ2VBSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NBbUl3Z2dKZUFnRUFBb0dCQU1w\n-----END PRIVATE KEY-----\n'
  const first = signingKey('EdDSA')
  const cases: Array<[label: string, overrides: Record<string, unknown>, option: string]> = [
    // HMAC secrets, through the shorthand and through accessTokenKeys.
    ['accessTokenSecret too short', { accessTokenSecret: short }, 'accessTokenSecret'],
    ['accessTokenSecret repetitive', { accessTokenSecret: repetitive }, 'accessTokenSecret'],
    ['accessTokenSecret a public PEM (key confusion)', { accessTokenSecret: rsaPublicPem }, 'accessTokenSecret'],
    ['accessTokenSecret a JWK', { accessTokenSecret: JSON.stringify(edPrivateJwk) }, 'accessTokenSecret'],
    ['accessTokenSecret a PEM Buffer after whitespace', { accessTokenSecret: Buffer.from(`\n  ${rsaPublicPem}`) }, 'accessTokenSecret'],
    ['refreshTokenSecret a PEM', { refreshTokenSecret: rsaPublicPem }, 'refreshTokenSecret'],
    ['HS256 secret too short', withKeys([{ algorithm: 'HS256', secret: short }]), 'accessTokenKeys[0].secret'],
    ['HS256 secret repetitive', withKeys([{ algorithm: 'HS256', secret: Buffer.alloc(64, 7) }]), 'accessTokenKeys[0].secret'],
    ['HS256 secret a PEM', withKeys([first, { algorithm: 'HS256', secret: rsaPublicPem }]), 'accessTokenKeys[1].secret'],
    ['HS256 secret a JWK', withKeys([{ algorithm: 'HS256', secret: JSON.stringify(edPrivateJwk) }]), 'accessTokenKeys[0].secret'],
    ['HS256 secret missing', withKeys([{ algorithm: 'HS256' }]), 'accessTokenKeys[0].secret'],
    ['HS256 secret a number', withKeys([{ algorithm: 'HS256', secret: 1234567890123456 }]), 'accessTokenKeys[0].secret'],
    // The array and its entries.
    ['both accessTokenSecret and accessTokenKeys', { accessTokenSecret: ACCESS_SECRET, accessTokenKeys: [first] }, 'accessTokenSecret'],
    ['accessTokenKeys empty', withKeys([]), 'accessTokenKeys'],
    ['accessTokenKeys not an array', withKeys(first), 'accessTokenKeys'],
    ['accessTokenKeys null', withKeys(null), 'accessTokenKeys'],
    ['entry null', withKeys([null]), 'accessTokenKeys[0]'],
    ['entry a PEM string', withKeys([first, privatePem(otherEd.privateKey)]), 'accessTokenKeys[1]'],
    ['algorithm HS512', withKeys([{ ...first, algorithm: 'HS512' }]), 'accessTokenKeys[0].algorithm'],
    ['algorithm none', withKeys([{ ...first, algorithm: 'none' }]), 'accessTokenKeys[0].algorithm'],
    ['algorithm missing', withKeys([{ privateKey: first.privateKey }]), 'accessTokenKeys[0].algorithm'],
    ['algorithm lower case', withKeys([{ ...first, algorithm: 'eddsa' }]), 'accessTokenKeys[0].algorithm'],
    ['kid empty', withKeys([{ ...first, kid: '' }]), 'accessTokenKeys[0].kid'],
    ['kid of 65 characters', withKeys([{ ...first, kid: 'k'.repeat(65) }]), 'accessTokenKeys[0].kid'],
    ['kid with a slash', withKeys([{ ...first, kid: '../keys' }]), 'accessTokenKeys[0].kid'],
    ['kid a number', withKeys([{ ...first, kid: 1 }]), 'accessTokenKeys[0].kid'],
    ['HS256 with a privateKey', withKeys([{ algorithm: 'HS256', secret: HS_SECRET, privateKey: first.privateKey }]), 'accessTokenKeys[0]'],
    ['HS256 with a publicKey', withKeys([first, { algorithm: 'HS256', publicKey: rsaPublicPem }]), 'accessTokenKeys[1]'],
    ['EdDSA with a secret', withKeys([{ ...first, secret: HS_SECRET }]), 'accessTokenKeys[0].secret'],
    ['first key without privateKey', withKeys([{ algorithm: 'EdDSA', publicKey: publicPem(pairs.EdDSA.publicKey) }]), 'accessTokenKeys[0].privateKey'],
    ['verify-only key with neither key', withKeys([first, { algorithm: 'ES256' }]), 'accessTokenKeys[1]'],
    // Key parsing.
    ['privateKey a public JWK', withKeys([{ algorithm: 'EdDSA', privateKey: jwkOf(pairs.EdDSA.publicKey) }]), 'accessTokenKeys[0].privateKey'],
    ['privateKey garbage PEM', withKeys([{ algorithm: 'EdDSA', privateKey: garbagePem }]), 'accessTokenKeys[0].privateKey'],
    ['privateKey garbage JWK', withKeys([{ algorithm: 'ES256', privateKey: { kty: 'EC', crv: 'P-256', d: 'AAAA' } }]), 'accessTokenKeys[0].privateKey'],
    ['privateKey base64 DER, not PEM', withKeys([{ algorithm: 'EdDSA', privateKey: pairs.EdDSA.privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64') }]), 'accessTokenKeys[0].privateKey'],
    ['privateKey null', withKeys([{ algorithm: 'EdDSA', privateKey: null }]), 'accessTokenKeys[0].privateKey'],
    ['privateKey a public KeyObject', withKeys([{ algorithm: 'EdDSA', privateKey: pairs.EdDSA.publicKey }]), 'accessTokenKeys[0].privateKey'],
    ['publicKey a secret KeyObject', withKeys([first, { algorithm: 'EdDSA', publicKey: createSecretKey(randomBytes(32)) }]), 'accessTokenKeys[1].publicKey'],
    ['publicKey garbage PEM', withKeys([first, { algorithm: 'EdDSA', publicKey: garbagePem.replaceAll('PRIVATE', 'PUBLIC') }]), 'accessTokenKeys[1].publicKey'],
    ['publicKey a number', withKeys([first, { algorithm: 'EdDSA', publicKey: 42 }]), 'accessTokenKeys[1].publicKey'],
    ['publicKey of another key pair', withKeys([{ ...first, publicKey: publicPem(otherEd.publicKey) }]), 'accessTokenKeys[0].publicKey'],
    // Key types and sizes.
    ['EdDSA with an RSA key', wrongType('EdDSA', pairs.RS256.privateKey), 'accessTokenKeys[0]'],
    ['EdDSA with a P-256 key', wrongType('EdDSA', pairs.ES256.privateKey), 'accessTokenKeys[0]'],
    ['EdDSA with an Ed448 key', wrongType('EdDSA', generateKeyPairSync('ed448').privateKey), 'accessTokenKeys[0]'],
    ['ES256 with a P-384 key', wrongType('ES256', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey), 'accessTokenKeys[0]'],
    ['ES256 with a secp256k1 key', wrongType('ES256', generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey), 'accessTokenKeys[0]'],
    ['ES256 with an Ed25519 key', wrongType('ES256', pairs.EdDSA.privateKey), 'accessTokenKeys[0]'],
    ['RS256 with a P-256 key', wrongType('RS256', pairs.ES256.privateKey), 'accessTokenKeys[0]'],
    ['RS256 with an RSA-PSS key', wrongType('RS256', generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).privateKey), 'accessTokenKeys[0]'],
    ['RS256 with a 1024-bit key', wrongType('RS256', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey), 'accessTokenKeys[0]'],
    ['verify-only ES256 with a P-384 public key', withKeys([first, { algorithm: 'ES256', publicKey: jwkOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey) }]), 'accessTokenKeys[1]'],
    // The key set as a whole.
    ['the same key twice', withKeys([first, { algorithm: 'EdDSA', publicKey: publicPem(pairs.EdDSA.publicKey) }]), 'accessTokenKeys[1].kid'],
    ['the same secret twice', withKeys([signingKey('HS256'), signingKey('HS256')]), 'accessTokenKeys[1].kid'],
    ['two keys, one explicit kid', withKeys([{ ...first, kid: 'k1' }, { algorithm: 'ES256', publicKey: publicPem(pairs.ES256.publicKey), kid: 'k1' }]), 'accessTokenKeys[1].kid'],
    ['refreshTokenSecret equal to an HS256 access key', withKeys([first, { algorithm: 'HS256', secret: REFRESH_SECRET }]), 'refreshTokenSecret'],
    ['refreshTokenSecret equal to the HS256 signing key, as a Buffer', withKeys([{ algorithm: 'HS256', secret: Buffer.from(REFRESH_SECRET) }]), 'refreshTokenSecret']
  ]
  // Material that must never appear in a message: secrets, and any line of a key.
  const pemLines = (pem: string): string[] => pem.split('\n').filter((line) => line.length >= 16 && !line.startsWith('-----'))
  const material = [
    short, repetitive, HS_SECRET, REFRESH_SECRET, ACCESS_SECRET, edPrivateJwk.d as string, edPrivateJwk.x as string,
    ...pemLines(rsaPublicPem), ...pemLines(garbagePem),
    ...Object.values(pairs).flatMap((pair) => pemLines(privatePem(pair.privateKey))),
    ...pemLines(privatePem(otherEd.privateKey))
  ]
  for (const [label, overrides, option] of cases) {
    const message = await assertBootFails(t, overrides, option, label)
    const echoed = material.filter((secret) => message.includes(secret.slice(0, 16)))
    t.strictSame(echoed, [], `${label}: no key material in the message`)
  }
})

t.test('a random secret that happens to start with "{" is a secret, not a JWK: only a JSON object with `kty` is refused', async (t) => {
  const braced = Buffer.concat([Buffer.from('{'), randomBytes(40)])
  const app = await build(t, { accessTokenSecret: braced, refreshTokenSecret: Buffer.from(`{"note": "no key type here", "salt": "${randomBytes(24).toString('base64url')}"}`) })
  const { accessToken, refreshToken } = await login(app)
  t.equal((await me(app, accessToken)).statusCode, 200, 'the braced Buffer signs and verifies access tokens')
  t.equal((await refresh(app, refreshToken)).statusCode, 200, 'the JSON text without kty works as the refresh secret')
})
