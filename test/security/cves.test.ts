// Checklist table (c): one regression test per published JWT flaw whose test sits in groups A
// and B and that applies to this stack, replaying the advisory's attack over real HTTP.
import { generateKeyPairSync } from 'node:crypto'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { buildApp, configFromEnv } from '../../examples/app.js'
import tokenAuth, { type TokenAuthOptions } from '../../lib/index.js'
import { baseOptions } from '../helpers.js'
import {
  assertAccepted, assertRefused, bearer, certificateFor, type Claims, confusionSecrets, deployAsymmetric, deployHmac,
  deployPlugin, derSignature, forgeAsymmetric, forgeHmac, generateKeys, refuseAll, siblings, thumbprint, unsigned,
  withSignature
} from './forge.js'
import { ACCESS_SECRET, alive, BASE_ENV, BOB, get, login, noIncidents } from './harness.js'

const ISSUER = 'https://auth.example.test'
const AUDIENCE = 'https://api.example.test'

const hs = await deployHmac(t, { TOKEN_ISSUER: ISSUER })
// RS256 signs; a retired ES256 key (whose private half the test keeps) still verifies.
const previous = generateKeys('ES256')
const rs = await deployAsymmetric(t, 'RS256', { ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY: previous.publicPem })
const previousKid = thumbprint(previous.publicKey)
// No verification cache, an issuer and an audience: every request runs every claim matcher.
const strict = await deployPlugin(t, { issuer: ISSUER, audience: AUDIENCE, verifyCacheSize: 0 })

/** A token signed with the retired ES256 key under its kid: the rotation control. */
const signedByPrevious = (header: Claims = {}) => forgeAsymmetric({ alg: 'ES256', typ: 'at+jwt', kid: previousKid, ...header }, rs.claims(), previous.privateKey, 'ES256')

/** The RS256 public key in every form an HS256 confusion could use, under the kid or without. */
function hmacWithPublicKey (names: RegExp): Array<[string, string]> {
  const cases: Array<[string, string]> = []
  for (const [name, secret] of confusionSecrets(rs.keys, certificateFor(rs.keys), rs.header.kid as string)) {
    if (!names.test(name)) continue
    cases.push(
      [`HS256 keyed with ${name}, under the server's kid`, forgeHmac({ ...rs.header, alg: 'HS256' }, rs.claims(), secret)],
      [`HS256 keyed with ${name}, no kid`, forgeHmac({ alg: 'HS256', typ: 'at+jwt' }, rs.claims(), secret)]
    )
  }
  return cases
}

/** `register` must fail at boot with INVALID_OPTION. */
async function bootFails (t: Test, name: string, options: Partial<TokenAuthOptions>, message: RegExp): Promise<void> {
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(tokenAuth, baseOptions(options)).ready() }, { code: 'FST_TOKEN_AUTH_INVALID_OPTION', message }, name)
}

const pem = (key: { export: (options: { type: 'pkcs8', format: 'pem' }) => string | Buffer }) => key.export({ type: 'pkcs8', format: 'pem' }) as string

t.test('control: each deployment accepts its own tokens, and the retired key still verifies', async (t) => {
  await assertAccepted(t, hs, hs.valid())
  await assertAccepted(t, rs, rs.valid())
  await assertAccepted(t, strict, strict.valid())
  await assertAccepted(t, rs, signedByPrevious())
  const jwks = await get(rs, '/.well-known/jwks.json')
  t.same((jwks.json?.keys as Claims[]).map((key) => key.kid), [rs.header.kid, previousKid], 'the JWKS publishes both keys')
})

t.test('CVE-2023-48223 fast-jwt: RS256 public key (SPKI, PKCS#1, X.509) used as an HS256 secret', async (t) => {
  refuseAll(t, rs, hmacWithPublicKey(/^(SPKI PEM|PKCS#1 "BEGIN RSA PUBLIC KEY" PEM|X\.509 certificate PEM|SPKI DER bytes)$/))
})

t.test('CVE-2026-34950 fast-jwt: the same with leading whitespace on the PEM', async (t) => {
  const cases: Array<[string, string]> = []
  for (const prefix of ['\n', ' ', '\t', '\r\n', '\n\t', '  \n  ']) {
    cases.push([`SPKI PEM after ${JSON.stringify(prefix)}`, forgeHmac({ ...rs.header, alg: 'HS256' }, rs.claims(), `${prefix}${rs.keys.publicPem}`)])
  }
  refuseAll(t, rs, [...cases, ...hmacWithPublicKey(/leading/)])
})

t.test('GHSA-ww5h-9m49-7xx4 fast-jwt: the same with a non-whitespace prefix', async (t) => {
  const cases: Array<[string, string]> = []
  for (const prefix of ['\u200b', '\ufeff', '\u0000', '\u0001\u001f', '# comment\n', '// comment\n', 'x']) {
    cases.push([`SPKI PEM after ${JSON.stringify(prefix)}`, forgeHmac({ ...rs.header, alg: 'HS256' }, rs.claims(), `${prefix}${rs.keys.publicPem}`)])
  }
  refuseAll(t, rs, [...cases, ...hmacWithPublicKey(/zero-width|NUL|comment/)])
})

t.test('GHSA-g3jj-5cmm-3hxx fast-jwt: a public JWK or JWKS JSON used as an HS256 secret', async (t) => {
  const jwks = await get(rs, '/.well-known/jwks.json')
  const cases: Array<[string, string]> = [
    ['the live JWKS answer, byte for byte', forgeHmac({ ...rs.header, alg: 'HS256' }, rs.claims(), jwks.text)]
  ]
  for (const key of jwks.json?.keys as Claims[]) {
    cases.push([`the published JWK ${String(key.alg)} as JSON`, forgeHmac({ ...rs.header, alg: 'HS256', kid: key.kid }, rs.claims(), JSON.stringify(key))])
  }
  refuseAll(t, rs, [...cases, ...hmacWithPublicKey(/JWK/)])
})

t.test('CVE-2025-30144 fast-jwt: iss / sub / jti as arrays', async (t) => {
  refuseAll(t, hs, [
    ['iss ["https://attacker", good]', hs.valid({ iss: ['https://attacker', ISSUER] })],
    ['iss [good]', hs.valid({ iss: [ISSUER] })],
    ['sub ["user-2", "user-1"]', hs.valid({ sub: ['user-2', 'user-1'] })],
    ['jti ["a", "b"]', hs.valid({ jti: ['a', 'b'] })]
  ])
  refuseAll(t, strict, [['aud ["https://attacker"] with an issuer array', strict.valid({ iss: ['https://attacker', ISSUER], aud: ['https://attacker'] })]])
})

t.test('CVE-2026-35042 fast-jwt: unknown crit extensions accepted', async (t) => {
  refuseAll(t, hs, [
    ['crit ["x"]', forgeHmac({ ...hs.header, crit: ['x'], x: 1 }, hs.claims(), ACCESS_SECRET)],
    ['crit ["exp"] with exp in the header', forgeHmac({ ...hs.header, crit: ['exp'], exp: 1 }, hs.claims(), ACCESS_SECRET)]
  ])
  refuseAll(t, rs, [['RS256: crit ["x"]', forgeAsymmetric({ ...rs.header, crit: ['x'], x: 1 }, rs.claims(), rs.keys.privateKey, 'RS256')]])
})

t.test('CVE-2026-35039 fast-jwt: a cache-key collision answers with another user\'s claims', async (t) => {
  // The example keeps its verification cache on (the default): each token must map to its own claims.
  const alice = await login(hs)
  const bob = await login(hs, BOB)
  const forgedAlice = hs.valid()
  const forgedBob = hs.valid({ sub: 'user-2', username: 'bob' })
  for (let round = 0; round < 5; round++) {
    for (const [token, id, username] of [[alice.accessToken, 'user-1', 'alice'], [bob.accessToken, 'user-2', 'bob'], [forgedAlice, 'user-1', 'alice'], [forgedBob, 'user-2', 'bob']]) {
      const reply = await bearer(hs, token as string)
      t.equal(reply.status, 200)
      t.same(reply.json, { id, username }, `round ${round}: ${String(username)} sees only ${String(username)}`)
    }
  }
})

t.test('CVE-2026-35041 fast-jwt: ReDoS through allowedAud / allowedIss', async (t) => {
  for (const [name, deployment, extra] of [
    ['aud of 5 000 "a" (under the size cap: reaches the verifier)', strict, { aud: 'a'.repeat(5000) }],
    ['aud of 5 000 "a" then "!"', strict, { aud: `${'a'.repeat(5000)}!` }],
    ['iss of 5 000 "a"', hs, { iss: 'a'.repeat(5000) }]
  ] as const) {
    t.test(name, async (t) => {
      const reply = await assertRefused(t, deployment, deployment.valid(extra))
      // A DoS guard, not a benchmark: a backtracking matcher takes seconds to minutes here.
      t.ok(reply.elapsed < 2000, `answered in ${Math.round(reply.elapsed)} ms`)
    })
  }
  t.test('aud of 50 000 "a": over every size limit, refused at once', async (t) => {
    const token = strict.valid({ aud: 'a'.repeat(50_000) })
    const reply = await bearer(strict, token)
    t.equal(reply.status, 431, 'Node refuses the 67 KB header before the app runs')
    t.same(reply.setCookies, [], 'no cookie')
    t.ok(reply.elapsed < 2000, `answered in ${Math.round(reply.elapsed)} ms`)
    await alive(t, strict)
  })
})

t.test('GHSA-3j8v-cgw4-2g6q fast-jwt: a /g RegExp matcher rejects every second valid token', async (t) => {
  for (const deployment of [hs, strict]) {
    const token = deployment.valid()
    const statuses: number[] = []
    for (let i = 0; i < 10; i++) statuses.push((await bearer(deployment, token)).status)
    t.same(statuses, Array(10).fill(200), 'the same valid token 10 times: 10 x 200')
    const fresh: number[] = []
    for (let i = 0; i < 10; i++) fresh.push((await bearer(deployment, deployment.valid())).status)
    t.same(fresh, Array(10).fill(200), '10 distinct valid tokens in a row: 10 x 200 (no cache to hide behind)')
  }
})

t.test('CVE-2026-44351 fast-jwt: a key resolver yielding "" made HMAC with an empty key verify', async (t) => {
  for (const deployment of [hs, rs]) {
    refuseAll(t, deployment, [
      [`${String(deployment.header.alg)}: HS256 with "" under the server's kid`, forgeHmac({ ...deployment.header, alg: 'HS256' }, deployment.claims(), '')],
      [`${String(deployment.header.alg)}: HS256 with "" under an unknown kid`, forgeHmac({ ...deployment.header, alg: 'HS256', kid: 'unknown' }, deployment.claims(), '')],
      [`${String(deployment.header.alg)}: HS256 with "" and no kid`, forgeHmac({ alg: 'HS256', typ: 'at+jwt' }, deployment.claims(), '')]
    ])
  }
})

t.test('GHSA-8wpc-h4q6-8fxv fast-jwt: a falsy key verified nothing; here it is a boot error', async (t) => {
  const signing = { algorithm: 'ES256' as const, privateKey: previous.privatePem }
  for (const value of ['', null]) {
    await bootFails(t, `accessTokenSecret ${JSON.stringify(value)}`, { accessTokenSecret: value as never }, /accessTokenSecret/)
    await bootFails(t, `refreshTokenSecret ${JSON.stringify(value)}`, { refreshTokenSecret: value as never }, /refreshTokenSecret/)
    await bootFails(t, `HS256 key with secret ${JSON.stringify(value)}`,
      { accessTokenSecret: undefined, accessTokenKeys: [{ algorithm: 'HS256', secret: value as never }] }, /accessTokenKeys\[0\]/)
    await bootFails(t, `ES256 key with privateKey ${JSON.stringify(value)}`,
      { accessTokenSecret: undefined, accessTokenKeys: [{ algorithm: 'ES256', privateKey: value as never }] }, /accessTokenKeys\[0\]/)
    await bootFails(t, `a verify-only RS256 key with publicKey ${JSON.stringify(value)}`,
      { accessTokenSecret: undefined, accessTokenKeys: [signing, { algorithm: 'RS256', publicKey: value as never }] }, /accessTokenKeys\[1\]/)
  }
  await bootFails(t, 'no access key at all', { accessTokenSecret: undefined }, /accessTokenSecret/)
  await bootFails(t, 'an empty accessTokenKeys', { accessTokenSecret: undefined, accessTokenKeys: [] }, /accessTokenKeys/)
  t.test('the example with ACCESS_TOKEN_SECRET="" does not start', async (t) => {
    await t.rejects(buildApp(configFromEnv({ ...BASE_ENV, LOG_LEVEL: 'silent', ACCESS_TOKEN_SECRET: '' })), { code: 'FST_TOKEN_AUTH_INVALID_OPTION' })
  })
})

t.test('CVE-2022-23539 jsonwebtoken: legacy or weak key types are refused at boot', async (t) => {
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey
  const dsa = generateKeyPairSync('dsa', { modulusLength: 1024, divisorLength: 160 }).privateKey
  const keys = (algorithm: 'RS256' | 'ES256' | 'EdDSA', privateKey: string) => ({ accessTokenSecret: undefined, accessTokenKeys: [{ algorithm, privateKey }] })
  await bootFails(t, '1024-bit RSA', keys('RS256', pem(rsa1024)), /2048/)
  await bootFails(t, 'P-384 for ES256', keys('ES256', pem(p384)), /P-256/)
  await bootFails(t, 'DSA for RS256', keys('RS256', pem(dsa)), /type dsa/)
  await bootFails(t, 'an RSA key for EdDSA', keys('EdDSA', rs.keys.privatePem), /Ed25519/)
  await bootFails(t, 'a public key as the HS256 secret', { accessTokenSecret: rs.keys.publicPem }, /PEM/)
})

t.test('fast-jwt #606 / #638: lax base64url decoding, and an array payload skipping every claim check', async (t) => {
  const token = hs.valid()
  const [h, p, s] = token.split('.') as [string, string, string]
  refuseAll(t, hs, [
    ...siblings(token).map((variant): [string, string] => [`last character swapped: ...${variant.slice(-3)}`, variant]),
    ['"=" padding', `${token}=`],
    ['standard base64 "+" and "/"', `${h}.${p}.${s.replace(/-/g, '+').replace(/_/g, '/')}${/[-_]/.test(s) ? '' : '+'}`],
    ['array payload with expired claims', forgeHmac(hs.header, [hs.claims({ exp: 1, iss: 'https://attacker' })], ACCESS_SECRET)],
    ['array payload with valid claims', forgeHmac(hs.header, [hs.claims()], ACCESS_SECRET)]
  ])
})

t.test('@fastify/jwt #274 / #281 / #368: malformed, alg none or missing-claim tokens answered 500', async (t) => {
  refuseAll(t, hs, [
    ['not a JWT', 'not-a-jwt'],
    ['alg none', unsigned({ ...hs.header, alg: 'none' }, hs.claims())],
    ['no sub', forgeHmac(hs.header, { ...hs.claims(), sub: undefined }, ACCESS_SECRET)],
    ['exp as a string', hs.valid({ exp: 'tomorrow' })],
    ['HS512', forgeHmac({ ...hs.header, alg: 'HS512' }, hs.claims(), ACCESS_SECRET, 'HS512')]
  ])
})

t.test('CVE-2022-23540 jsonwebtoken: no algorithm list plus a falsy key accepted alg none', async (t) => {
  for (const deployment of [hs, rs]) {
    const cases: Array<[string, string]> = []
    for (const alg of ['none', 'None', 'NONE']) {
      cases.push(
        [`${String(deployment.header.alg)}: alg ${alg}, empty signature`, unsigned({ ...deployment.header, alg }, deployment.claims())],
        [`${String(deployment.header.alg)}: alg ${alg}, no kid`, unsigned({ alg, typ: 'at+jwt' }, deployment.claims())]
      )
    }
    refuseAll(t, deployment, cases)
  }
})

t.test('CVE-2022-23541 jsonwebtoken: a key-retrieval callback allowed RSA-to-HMAC confusion', async (t) => {
  // The kid picks the key; the key's pinned algorithm decides, never the header's alg.
  refuseAll(t, rs, [
    ['current kid, HS256 keyed with its SPKI PEM', forgeHmac({ ...rs.header, alg: 'HS256' }, rs.claims(), rs.keys.publicPem)],
    ['retired kid, HS256 keyed with its SPKI PEM', forgeHmac({ alg: 'HS256', typ: 'at+jwt', kid: previousKid }, rs.claims(), previous.publicPem)],
    ['retired kid, HS256 keyed with its JWK', forgeHmac({ alg: 'HS256', typ: 'at+jwt', kid: previousKid }, rs.claims(),
      JSON.stringify(previous.publicKey.export({ format: 'jwk' })))]
  ])
})

t.test('GHSA-869p-cjfg-cm3x node-jws: the key looked up from header data must match the algorithm', async (t) => {
  t.test('controls: each key verifies its own algorithm under its own kid', async (t) => {
    await assertAccepted(t, rs, rs.valid())
    await assertAccepted(t, rs, signedByPrevious())
  })
  refuseAll(t, rs, [
    ['retired (ES256) kid, RS256 signed by the current key', forgeAsymmetric({ ...rs.header, kid: previousKid }, rs.claims(), rs.keys.privateKey, 'RS256')],
    ['current (RS256) kid, ES256 signed by the retired key', signedByPrevious({ kid: rs.header.kid })],
    ['retired kid, alg RS256, signed by the retired ES256 key', forgeAsymmetric({ alg: 'RS256', typ: 'at+jwt', kid: previousKid }, rs.claims(), previous.privateKey, 'ES256')]
  ])
})

t.test('CVE-2018-0114 node-jose: an embedded jwk header trusted as the verification key', async (t) => {
  const attacker = generateKeys('ES256')
  const jwk = { ...(attacker.publicKey.export({ format: 'jwk' }) as Claims), kid: thumbprint(attacker.publicKey) }
  for (const deployment of [hs, rs]) {
    refuseAll(t, deployment, [
      [`${String(deployment.header.alg)}: jwk, no kid`, forgeAsymmetric({ alg: 'ES256', typ: 'at+jwt', jwk }, deployment.claims(), attacker.privateKey, 'ES256')],
      [`${String(deployment.header.alg)}: jwk under its own kid`, forgeAsymmetric({ alg: 'ES256', typ: 'at+jwt', kid: jwk.kid, jwk }, deployment.claims(), attacker.privateKey, 'ES256')],
      [`${String(deployment.header.alg)}: jwk under the retired kid`, forgeAsymmetric({ alg: 'ES256', typ: 'at+jwt', kid: previousKid, jwk }, deployment.claims(), attacker.privateKey, 'ES256')]
    ])
  }
})

t.test('CVE-2022-21449 Java ECDSA "psychic signatures": r = s = 0 (and other non-signatures) on an ES256 key', async (t) => {
  const good = signedByPrevious()
  refuseAll(t, rs, [
    ['r = s = 0, JWS form (64 zero bytes)', withSignature(good, Buffer.alloc(64))],
    ['r = s = 0, DER form', withSignature(good, Buffer.from('3006020100020100', 'hex'))],
    ['the right signature, DER form', derSignature(good)],
    ['empty signature', withSignature(good, '')]
  ])
})

t.test('after table (c): the servers are up and nothing escaped', async (t) => {
  for (const deployment of [hs, rs, strict]) await alive(t, deployment)
  noIncidents(t, hs, rs)
})
