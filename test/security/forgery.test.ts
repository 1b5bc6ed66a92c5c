// Checklist group A (forgery and crypto), tried over real HTTP against the example server:
// HS256 (the default), and RS256 / ES256 / EdDSA deployments with a key generated here.
// Every forged token goes to `GET /me` as a Bearer token and as an access-token cookie.
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import {
  assertAccepted, assertRefused, bearer, certificateFor, type Claims, claimsOf, confusionSecrets, deployAsymmetric, deployHmac,
  derSignature, encode, forgeAsymmetric, forgeHmac, generateKeys, headerOf, type KeyPair, MALFORMED, nowSeconds, refuseAll,
  signatureOf, thumbprint, unsigned, withSignature
} from './forge.js'
import {
  ACCESS_SECRET, alive, BOB, get, INVALID_REQUEST, login, noIncidents, REFRESH_SECRET, send
} from './harness.js'

const hs = await deployHmac(t)
const asymmetric = {
  RS256: await deployAsymmetric(t, 'RS256'),
  ES256: await deployAsymmetric(t, 'ES256'),
  EdDSA: await deployAsymmetric(t, 'EdDSA')
}

t.test('control: tokens forged with the deployment\'s own key are accepted, so every refusal below is about the attack', async (t) => {
  for (const deployment of [hs, ...Object.values(asymmetric)]) {
    const reply = await assertAccepted(t, deployment, deployment.valid())
    t.same(reply.json, { id: 'user-1', username: 'alice' }, `${String(deployment.header.alg)}: alice`)
    t.type(deployment.header.kid, 'string', `${String(deployment.header.alg)}: the issued token carries a kid`)
  }
  t.equal(hs.header.alg, 'HS256')
  t.equal(hs.header.typ, 'at+jwt')
})

t.test('A1 alg none in every spelling, with an empty signature or a trailing dot', async (t) => {
  const cases: Array<[string, string]> = []
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const header = { ...hs.header, alg }
    const payload = hs.claims()
    cases.push(
      [`alg ${alg}, empty signature`, unsigned(header, payload)],
      [`alg ${alg}, no signature segment`, unsigned(header, payload).slice(0, -1)],
      [`alg ${alg}, a real HMAC as signature`, forgeHmac(header, payload, ACCESS_SECRET)],
      [`alg ${alg}, no kid, no typ, empty signature`, unsigned({ alg }, payload)]
    )
  }
  cases.push(['alg missing, empty signature', unsigned({ typ: 'at+jwt', kid: hs.header.kid }, hs.claims())])
  cases.push(['alg "" with an HMAC', forgeHmac({ ...hs.header, alg: '' }, hs.claims(), ACCESS_SECRET)])
  refuseAll(t, hs, cases)
})

t.test('A2 another key, or claims edited under the original signature', async (t) => {
  const bob = await login(hs, BOB)
  const [header, payload, signature] = bob.accessToken.split('.') as [string, string, string]
  const edited = (extra: Claims): string => `${header}.${encode({ ...claimsOf(bob.accessToken), ...extra })}.${signature}`
  t.test('control: bob\'s real token reaches /me but not /admin', async (t) => {
    await assertAccepted(t, hs, bob.accessToken)
    const admin = await get(hs, '/admin', bob.accessToken)
    t.equal(admin.status, 403)
    t.equal(admin.json?.code, 'FORBIDDEN')
  })
  const cases: Array<[string, string]> = [
    ['the right structure signed with a random key', forgeHmac(hs.header, hs.claims(), randomBytes(32))],
    ['signed with the refresh-token secret', forgeHmac(hs.header, hs.claims(), REFRESH_SECRET)],
    ['role user -> admin under bob\'s signature', edited({ role: 'admin' })],
    ['sub user-2 -> user-1 under bob\'s signature', edited({ sub: 'user-1', username: 'alice' })],
    ['exp extended by a day under bob\'s signature', edited({ exp: nowSeconds() + 86400 })],
    ['header edited (alg HS512) under bob\'s signature', `${encode({ ...headerOf(bob.accessToken), alg: 'HS512' })}.${payload}.${signature}`],
    ['alice\'s signature on bob\'s payload', withSignature(bob.accessToken, signatureOf(hs.valid()))]
  ]
  for (const [name, token] of cases) {
    t.test(name, async (t) => {
      await assertRefused(t, hs, token)
      await assertRefused(t, hs, token, { path: '/admin' })
    })
  }
})

t.test('A3 HS256 signed with the empty key ""', async (t) => {
  refuseAll(t, hs, [
    ['with the deployment\'s kid', forgeHmac(hs.header, hs.claims(), '')],
    ['without a kid', forgeHmac({ alg: 'HS256', typ: 'at+jwt' }, hs.claims(), '')],
    ['with an unknown kid', forgeHmac({ ...hs.header, kid: 'unknown-key' }, hs.claims(), '')],
    ['with kid ""', forgeHmac({ ...hs.header, kid: '' }, hs.claims(), '')]
  ])
  refuseAll(t, asymmetric.ES256, [
    ['ES256 deployment: HS256 with "" under its kid', forgeHmac({ ...asymmetric.ES256.header, alg: 'HS256' }, asymmetric.ES256.claims(), '')]
  ])
})

t.test('A4 HS384/HS512 with the same secret: 401, not the library\'s 500', async (t) => {
  refuseAll(t, hs, [
    ['HS384', forgeHmac({ ...hs.header, alg: 'HS384' }, hs.claims(), ACCESS_SECRET, 'HS384')],
    ['HS512', forgeHmac({ ...hs.header, alg: 'HS512' }, hs.claims(), ACCESS_SECRET, 'HS512')],
    ['HS512 without a kid', forgeHmac({ alg: 'HS512', typ: 'at+jwt' }, hs.claims(), ACCESS_SECRET, 'HS512')],
    ['header HS256, HMAC-SHA512 signature', forgeHmac(hs.header, hs.claims(), ACCESS_SECRET, 'HS512')],
    ['RS256 header over an HS256 signature', forgeHmac({ ...hs.header, alg: 'RS256' }, hs.claims(), ACCESS_SECRET)],
    ['ES256 header over an HS256 signature', forgeHmac({ ...hs.header, alg: 'ES256' }, hs.claims(), ACCESS_SECRET)]
  ])
})

t.test('A5 RS/ES/EdDSA deployments: HS256 forged with the public key as the secret, and bad ECDSA signatures', async (t) => {
  for (const deployment of Object.values(asymmetric)) {
    const { keys, header } = deployment
    t.test(`${keys.alg} deployment`, async (t) => {
      const jwks = await get(deployment, '/.well-known/jwks.json')
      t.equal(jwks.status, 200, 'the JWKS is published: the attacker has the public key')
      const published = (jwks.json?.keys as Claims[] | undefined)?.[0]
      t.equal(published?.kid, header.kid, 'under the kid the tokens carry')
      t.equal(header.kid, thumbprint(keys.publicKey), 'the default kid is the RFC 7638 thumbprint')

      const cases: Array<[string, string]> = []
      for (const [name, secret] of [...confusionSecrets(keys, certificateFor(keys), header.kid as string), ['the live JWKS answer, byte for byte', jwks.text] as [string, string]]) {
        cases.push(
          [`HS256 keyed with ${name}, under the server's kid`, forgeHmac({ ...header, alg: 'HS256' }, deployment.claims(), secret)],
          [`HS256 keyed with ${name}, no kid`, forgeHmac({ alg: 'HS256', typ: 'at+jwt' }, deployment.claims(), secret)]
        )
      }
      if (keys.alg === 'ES256') {
        const good = deployment.valid()
        cases.push(
          ['ES256 with a 64-zero-byte signature (r = s = 0)', withSignature(good, Buffer.alloc(64))],
          ['ES256 with r = s = 0 DER-encoded', withSignature(good, Buffer.from('3006020100020100', 'hex'))],
          ['ES256 with the right signature DER-encoded', derSignature(good)],
          ['ES256 with r = s = n (the group order)', withSignature(good, Buffer.from(`${'FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551'.repeat(2)}`, 'hex'))],
          ['ES256 with the signature truncated to 32 bytes', withSignature(good, signatureOf(good).subarray(0, 32))]
        )
      }
      if (keys.alg === 'RS256') {
        const good = deployment.valid()
        cases.push(['RS256 with an all-zero signature', withSignature(good, Buffer.alloc(256))])
        cases.push(['PS256 header over the RS256 signature', `${encode({ ...header, alg: 'PS256' })}.${good.split('.').slice(1).join('.')}`])
      }
      refuseAll(t, deployment, cases)
    })
  }
})

t.test('A6 kid injection (path traversal, SQL, empty, unknown, 10 KB): 401, answered fast', async (t) => {
  const kids: Array<[string, unknown]> = [
    ['../../../../dev/null', '../../../../dev/null'],
    ['/dev/null', '/dev/null'],
    ['../../../../etc/passwd', '../../../../etc/passwd'],
    ['SQL \' OR \'1\'=\'1', '\' OR \'1\'=\'1'],
    ['SQL UNION', '\' UNION SELECT \'secret\' --'],
    ['shell | sleep 5', 'x|sleep 5'],
    ['empty', ''],
    ['unknown', 'no-such-key'],
    ['the real kid plus a NUL', `${String(hs.header.kid)}\u0000`],
    ['the real kid in upper case', String(hs.header.kid).toUpperCase()],
    ['a number', 0],
    ['null', null],
    ['an array holding the real kid', [hs.header.kid]],
    ['an object', { $ne: null }],
    ['6 KB (under the size cap)', 'k'.repeat(6 * 1024)],
    ['10 KB', 'k'.repeat(10 * 1024)]
  ]
  for (const [name, kid] of kids) {
    t.test(`kid ${name}`, async (t) => {
      const header = { ...hs.header, kid }
      for (const [keyName, key] of [['the real secret', ACCESS_SECRET], ['the empty key (/dev/null)', ''], ['"1"', '1']]) {
        const reply = await assertRefused(t, hs, forgeHmac(header, hs.claims(), key as string))
        // A DoS guard, not a benchmark: a kid lookup that touches a disk or a database would show.
        t.ok(reply.elapsed < 2000, `HS256 signed with ${keyName}: answered in ${Math.round(reply.elapsed)} ms`)
      }
      const es = asymmetric.ES256
      await assertRefused(t, es, forgeAsymmetric({ ...es.header, kid }, es.claims(), es.keys.privateKey, 'ES256'))
      await assertRefused(t, es, forgeHmac({ ...es.header, alg: 'HS256', kid }, es.claims(), ''))
    })
  }
})

t.test('A7 jku / x5u / jwk / x5c pointing at an attacker\'s listener: 401, and the listener is never called', async (t) => {
  const attackerRsa = generateKeys('RS256')
  const attackerEc = generateKeys('ES256')
  const attackerJwk = (keys: KeyPair): Claims => ({ ...(keys.publicKey.export({ format: 'jwk' }) as Claims), kid: thumbprint(keys.publicKey), alg: keys.alg, use: 'sig' })
  const certificate = certificateFor(attackerEc)
  const x5c = Buffer.from(certificate.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64').toString('base64')
  const requests: string[] = []
  // Serves the attacker's keys, so a server that fetched them would also accept the token.
  const listener = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`)
    const body = request.url?.endsWith('.pem') ? certificate : JSON.stringify({ keys: [attackerJwk(attackerRsa), attackerJwk(attackerEc)] })
    response.end(body)
  })
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { listener.close() })
  const origin = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`

  for (const deployment of [hs, asymmetric.ES256, asymmetric.RS256]) {
    const { kid, typ } = deployment.header
    const rsa = (header: Claims) => forgeAsymmetric({ alg: 'RS256', typ, ...header }, deployment.claims(), attackerRsa.privateKey, 'RS256')
    const ec = (header: Claims) => forgeAsymmetric({ alg: 'ES256', typ, ...header }, deployment.claims(), attackerEc.privateKey, 'ES256')
    const attackerSecret = randomBytes(32)
    refuseAll(t, deployment, [
      [`${String(deployment.header.alg)}: jku to the attacker's JWKS, attacker's kid`, rsa({ kid: thumbprint(attackerRsa.publicKey), jku: `${origin}/jwks.json` })],
      [`${String(deployment.header.alg)}: jku to the attacker's JWKS, the server's kid`, rsa({ kid, jku: `${origin}/jwks.json` })],
      [`${String(deployment.header.alg)}: x5u to the attacker's certificate`, ec({ kid, x5u: `${origin}/cert.pem` })],
      [`${String(deployment.header.alg)}: embedded jwk (CVE-2018-0114), no kid`, ec({ jwk: attackerJwk(attackerEc) })],
      [`${String(deployment.header.alg)}: embedded jwk under the server's kid`, ec({ kid, jwk: attackerJwk(attackerEc) })],
      [`${String(deployment.header.alg)}: embedded RSA jwk`, rsa({ jwk: attackerJwk(attackerRsa) })],
      [`${String(deployment.header.alg)}: x5c with the attacker's certificate`, ec({ kid, x5c: [x5c] })],
      [`${String(deployment.header.alg)}: embedded oct jwk, HS256 with its secret`,
        forgeHmac({ alg: 'HS256', typ, kid, jwk: { kty: 'oct', k: attackerSecret.toString('base64url') } }, deployment.claims(), attackerSecret)]
    ])
  }
  t.test('the attacker\'s listener received no request', async (t) => {
    t.same(requests, [], '0 requests')
  })
})

t.test('A8 crit header: 401, not the library\'s 500 (CVE-2026-35042)', async (t) => {
  const crit = (value: unknown, extra: Claims = {}) => forgeHmac({ ...hs.header, crit: value, ...extra }, hs.claims(), ACCESS_SECRET)
  refuseAll(t, hs, [
    ['crit ["x"]', crit(['x'], { x: true })],
    ['crit ["x"] without the x parameter', crit(['x'])],
    ['crit []', crit([])],
    ['crit ["alg"]', crit(['alg'])],
    ['crit ["b64"] with b64 false', crit(['b64'], { b64: false })],
    ['crit "x" (not an array)', crit('x')]
  ])
  refuseAll(t, asymmetric.ES256, [
    ['ES256 deployment: crit ["exp"]', forgeAsymmetric({ ...asymmetric.ES256.header, crit: ['exp'], exp: 1 }, asymmetric.ES256.claims(), asymmetric.ES256.keys.privateKey, 'ES256')]
  ])
})

t.test('A9 malformed tokens: 401 (400 for whitespace in the header value)', async (t) => {
  const good = hs.valid()
  const [h, p, s] = good.split('.') as [string, string, string]
  const signed = (header: Claims | string, payload: Claims | string | unknown[]) => forgeHmac(header, payload, ACCESS_SECRET)
  const claims = hs.claims()
  refuseAll(t, hs, [
    ['abc', 'abc'],
    ['a.b', 'a.b'],
    ['a.b.c', 'a.b.c'],
    ['..', '..'],
    ['4 segments', `${good}.${s}`],
    ['5 segments (JWE shape)', `${h}.${p}.${s}.${s}.${s}`],
    ['empty header segment', `.${p}.${s}`],
    ['empty payload segment', `${h}..${s}`],
    ['non-base64url "*" in the payload', `${h}.${p.slice(0, 10)}*${p.slice(11)}.${s}`],
    ['standard base64 "+" in the signature', `${h}.${p}.${s.slice(0, 5)}+${s.slice(6)}`],
    ['standard base64 "/" in the header', `${h.slice(0, 4)}/${h.slice(5)}.${p}.${s}`],
    ['"=" padding on the signature', `${good}=`],
    ['"==" padding on the signature', `${good}==`],
    ['"=" padding on the header', `${h}=.${p}.${s}`],
    ['the parts base64 (not url) encoded with padding', [h, p, s].map((part) => Buffer.from(part, 'base64url').toString('base64')).join('.')],
    ['a tab inside the payload', `${h}.${p.slice(0, 10)}\t${p.slice(10)}.${s}`],
    ['signature truncated by one character', good.slice(0, -1)],
    ['signature with one extra character', `${good}A`],
    ['header not JSON', signed('{"alg":"HS256",', claims)],
    ['header null', signed('null', claims)],
    ['header an array', signed(JSON.stringify([hs.header]), claims)],
    ['header a number', signed('42', claims)],
    ['header a JSON string', signed(JSON.stringify(JSON.stringify(hs.header)), claims)],
    ['payload an array (fast-jwt #638)', signed(hs.header, [claims])],
    ['payload a number', signed(hs.header, '42')],
    ['payload null', signed(hs.header, 'null')],
    ['payload a JSON string', signed(hs.header, '"alice"')],
    ['payload not JSON', signed(hs.header, '{"sub":')],
    ['payload with a byte-order mark', signed(hs.header, `\ufeff${JSON.stringify(claims)}`)],
    ['payload not UTF-8', forgeHmac(hs.header, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), ACCESS_SECRET)]
  ])
  t.test('a space inside the token: 400 MALFORMED_AUTHORIZATION', async (t) => {
    await assertRefused(t, hs, `${h}.${p} .${s}`, { status: 400, code: MALFORMED, challenge: INVALID_REQUEST })
  })
})

t.test('A10 oversized tokens and headers', async (t) => {
  t.test('a correctly signed token over 8 KB: 401 (size cap); just under it: accepted', async (t) => {
    let pad = 5000
    let fits = hs.valid({ pad: 'x'.repeat(pad) })
    let next = fits
    while (next.length <= 8192) {
      fits = next
      pad += 1
      next = hs.valid({ pad: 'x'.repeat(pad) })
    }
    t.ok(fits.length <= 8192 && next.length > 8192, `${fits.length} fits, ${next.length} does not`)
    await assertAccepted(t, hs, fits)
    await assertRefused(t, hs, next)
  })
  for (const [name, headers] of [
    ['a 20 KB Authorization header', { authorization: `Bearer ${'a'.repeat(20 * 1024)}` }],
    ['a 20 KB Cookie header', { cookie: `access_token=${'a'.repeat(20 * 1024)}` }]
  ] as const) {
    t.test(`${name}: 431`, async (t) => {
      const reply = await send(hs, 'GET', '/me', { headers })
      // Node's parser refuses it before any route runs; Fastify's client-error handler answers.
      t.equal(reply.status, 431)
      t.same(reply.setCookies, [], 'no cookie')
      t.notMatch(reply.text, /aaaa|\n\s+at /, 'the header is not echoed, no stack')
      await alive(t, hs)
    })
  }
  t.test('deeply nested JSON under the real key: a clean answer, quickly, never 500', async (t) => {
    const depth = 2500
    const nest = (json: string): string => `{"deep":${'['.repeat(depth)}${']'.repeat(depth)},${json.slice(1)}`
    for (const [name, token] of [
      ['in the payload', forgeHmac(hs.header, nest(JSON.stringify(hs.claims())), ACCESS_SECRET)],
      ['in the header', forgeHmac(nest(JSON.stringify(hs.header)), hs.claims(), ACCESS_SECRET)]
    ] as const) {
      t.ok(token.length <= 8192, `${name}: under the size cap, so it is parsed and verified`)
      const reply = await bearer(hs, token)
      t.ok(reply.elapsed < 2000, `${name}: answered in ${Math.round(reply.elapsed)} ms`)
      // Validly signed: accepted (/me echoes nothing nested), or refused as a bad token; never a 500.
      if (reply.status === 200) t.same(reply.json, { id: 'user-1', username: 'alice' }, `${name}: accepted, nothing echoed`)
      else await assertRefused(t, hs, token)
    }
    // 5000 deep (echoing such a claim overflowed the stack in the probe): over the size cap.
    const tooDeep = `{"deep":${'['.repeat(5000)}${']'.repeat(5000)},${JSON.stringify(hs.claims()).slice(1)}`
    await assertRefused(t, hs, forgeHmac(hs.header, tooDeep, ACCESS_SECRET))
  })
})

t.test('after group A: the server is up and nothing escaped', async (t) => {
  for (const deployment of [hs, ...Object.values(asymmetric)]) await alive(t, deployment)
  noIncidents(t, hs, ...Object.values(asymmetric))
})
