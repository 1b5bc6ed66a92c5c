import {
  constants, createHmac, generateKeyPairSync, type JsonWebKey, type KeyObject, randomBytes, sign, webcrypto
} from 'node:crypto'
import { customFetch, DPoP, modifyAssertion, protectedResourceRequest } from 'oauth4webapi'
import t, { type Test } from 'tap'
import { DpopNonces, NONCE_PERIOD_MS } from '../lib/dpop/nonce.js'
import {
  accessTokenHash, DPOP_ALGORITHMS, type DpopAlgorithm, DpopProofError, FUTURE_SKEW_SECONDS, jwkThumbprint,
  MAX_PROOF_LENGTH, normalisedHtu, type ProofExpectations, verifyProof
} from '../lib/dpop/proof.js'
import { REFRESH_SECRET } from './helpers.js'

// DPoP proofs and nonces (docs/design.md, «Sender-constrained sessions (DPoP)»; RFC 9449 §4.3
// and §8) on their own. Proofs are hand-built with node:crypto, so each check can be failed
// alone; oauth4webapi, a client of its own, signs the proofs and computes the thumbprints the
// verifier must agree with.

const NOW = 1_800_000_000_000
const URL_ = 'https://api.example.com/token'
const expected: ProofExpectations = {
  method: 'POST', url: URL_, now: NOW, lifetime: 60, clockTolerance: 0, algorithms: DPOP_ALGORITHMS
}

interface Signer { alg: string, jwk: JsonWebKey, privateKey: KeyObject }

function signerFor (alg: string, curve?: string, modulusLength = 2048): Signer {
  const pair = alg.startsWith('ES')
    ? generateKeyPairSync('ec', { namedCurve: curve ?? (alg === 'ES384' ? 'P-384' : 'P-256') })
    : alg === 'EdDSA' || alg === 'Ed25519'
      ? (curve === 'Ed448' ? generateKeyPairSync('ed448') : generateKeyPairSync('ed25519'))
      : generateKeyPairSync('rsa', { modulusLength })
  return { alg, jwk: pair.publicKey.export({ format: 'jwk' }), privateKey: pair.privateKey }
}

const signers = Object.fromEntries(DPOP_ALGORITHMS.map((alg) => [alg, signerFor(alg)])) as Record<DpopAlgorithm, Signer>
const es256 = signers.ES256

type Part = Record<string, unknown> | unknown[] | string
const encode = (part: Part): string => Buffer.from(typeof part === 'string' ? part : JSON.stringify(part)).toString('base64url')

/** A JWS signature as RFC 7518 spells it (ECDSA r||s unless `der`). */
function signature (alg: string, privateKey: KeyObject, input: string, der = false): Buffer {
  const data = Buffer.from(input)
  if (alg === 'EdDSA' || alg === 'Ed25519') return sign(null, data, privateKey)
  if (alg === 'PS256') return sign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
  const digest = alg === 'ES384' ? 'sha384' : 'sha256'
  return sign(digest, data, alg.startsWith('ES') ? { key: privateKey, dsaEncoding: der ? 'der' : 'ieee-p1363' } : privateKey)
}

const claimsFor = (extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ jti: randomBytes(12).toString('base64url'), htm: 'POST', htu: URL_, iat: NOW / 1000, ...extra })

interface ProofOptions { header?: Part, claims?: Part, by?: KeyObject, der?: boolean }

/** A proof by `signer` with default header and claims (overridden by `options`). */
function proofOf (signer: Signer, options: ProofOptions = {}): string {
  const header = options.header ?? { typ: 'dpop+jwt', alg: signer.alg, jwk: signer.jwk }
  const input = `${encode(header)}.${encode(options.claims ?? claimsFor())}`
  return `${input}.${signature(signer.alg, options.by ?? signer.privateKey, input, options.der).toString('base64url')}`
}

const reasons = new Set<string>()

/** The DpopProofError `verifyProof` throws (anything else fails the test). */
function refusal (proof: string, expectations: Partial<ProofExpectations> = {}): DpopProofError {
  try {
    verifyProof(proof, { ...expected, ...expectations })
  } catch (error) {
    if (error instanceof DpopProofError) {
      reasons.add(error.reason)
      return error
    }
    throw error
  }
  throw new Error('the proof was accepted')
}

function refuses (t: Test, proof: string, reason: string, expectations: Partial<ProofExpectations> = {}, message = reason): void {
  const error = refusal(proof, expectations)
  t.same({ reason: error.reason, nonce: error.nonce }, { reason, nonce: false }, message)
  t.equal(error.message, `Invalid DPoP proof: ${reason}`)
}

t.test('a valid proof of each algorithm: its thumbprint, jti, replay key and expiry', async (t) => {
  for (const alg of DPOP_ALGORITHMS) {
    const signer = signers[alg]
    const claims = claimsFor()
    const verified = verifyProof(proofOf(signer, { claims }), expected)
    t.equal(verified.jkt, jwkThumbprint(signer.jwk as Record<string, unknown>), alg)
    t.match(verified.jkt, /^[A-Za-z0-9_-]{43}$/)
    t.equal(verified.jti, claims.jti)
    t.equal(verified.expiresAt, NOW + 60_000 + 1000, 'the end of the iat window, plus a second')
    t.match(verified.replayKey, /^[A-Za-z0-9_-]{22}$/)
    // The same again: the imported key comes from the cache.
    t.equal(verifyProof(proofOf(signer), expected).jkt, verified.jkt, `${alg}, twice`)
  }
})

t.test('a replay key is 22 characters whatever the jti, and differs by key and by jti', async (t) => {
  const jti = 'é.~ \u0000'.repeat(51)
  const a = verifyProof(proofOf(es256, { claims: claimsFor({ jti }) }), expected)
  t.equal(a.jti, jti)
  t.match(a.replayKey, /^[A-Za-z0-9_-]{22}$/)
  t.not(verifyProof(proofOf(signers.EdDSA, { claims: claimsFor({ jti }) }), expected).replayKey, a.replayKey, 'another key')
  t.not(verifyProof(proofOf(es256, { claims: claimsFor({ jti: `${jti}x` }) }), expected).replayKey, a.replayKey, 'another jti')
  t.equal(verifyProof(proofOf(es256, { claims: claimsFor({ jti }) }), expected).replayKey, a.replayKey, 'the same pair')
  const fractional = verifyProof(proofOf(es256, { claims: claimsFor({ iat: NOW / 1000 - 0.0004 }) }), expected)
  t.equal(fractional.expiresAt, NOW + 60_000 + 1000, 'a fractional iat: whole milliseconds, rounded up')
})

t.test('proofs signed by oauth4webapi, with its ath and nonce handling, verify; its thumbprints are ours', async (t) => {
  const rsa = { modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
  const params: Record<DpopAlgorithm, RsaHashedKeyGenParams | EcKeyGenParams | { name: 'Ed25519' }> = {
    ES256: { name: 'ECDSA', namedCurve: 'P-256' },
    ES384: { name: 'ECDSA', namedCurve: 'P-384' },
    EdDSA: { name: 'Ed25519' },
    Ed25519: { name: 'Ed25519' },
    RS256: { name: 'RSASSA-PKCS1-v1_5', ...rsa },
    PS256: { name: 'RSA-PSS', ...rsa }
  }
  const nonces = new DpopNonces(REFRESH_SECRET)
  for (const alg of DPOP_ALGORITHMS) {
    const keyPair = await webcrypto.subtle.generateKey(params[alg], true, ['sign', 'verify']) as CryptoKeyPair
    // oauth4webapi names an Ed25519 key's algorithm `Ed25519` (RFC 9864); the older name `EdDSA` too passes.
    const handle = DPoP({}, keyPair, { [modifyAssertion]: (header) => { if (alg === 'EdDSA') header.alg = 'EdDSA' } })
    const proofs: string[] = []
    const fetch = async (_url: string, init: { headers: Record<string, string> }): Promise<Response> => {
      proofs.push(init.headers.dpop as string)
      return new Response('{}', { headers: { 'dpop-nonce': nonces.current(Date.now()) } })
    }
    const url = new URL('https://API.example.com:443/resource?page=2')
    await protectedResourceRequest('access-token', 'GET', url, undefined, undefined, { DPoP: handle, [customFetch]: fetch })
    await protectedResourceRequest('access-token', 'GET', url, undefined, undefined, { DPoP: handle, [customFetch]: fetch })
    const expectations = {
      ...expected, method: 'GET', url: 'https://api.example.com/resource', now: Date.now(), accessToken: 'access-token'
    }
    const first = verifyProof(proofs[0] as string, expectations)
    t.equal(first.jkt, await handle.calculateThumbprint(), `${alg}: oauth4webapi's thumbprint`)
    const acceptsNonce = (nonce: string): boolean => nonces.accepts(nonce, Date.now())
    const error = refusal(proofs[0] as string, { ...expectations, acceptsNonce })
    t.same([error.reason, error.nonce], ['nonce missing', true], `${alg}: no nonce before the server sent one`)
    t.equal(verifyProof(proofs[1] as string, { ...expectations, acceptsNonce }).jkt, first.jkt, `${alg}: with the nonce it was sent`)
  }
})

t.test('jwkThumbprint is RFC 7638 (RFC 9449 §6.1\'s example key), accessTokenHash is RFC 9449 §7.1\'s', async (t) => {
  t.equal(jwkThumbprint({
    kty: 'EC', x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs', y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA', crv: 'P-256'
  }), '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I')
  t.equal(accessTokenHash('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU'), 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo')
  const { jwk } = signers.RS256
  t.equal(jwkThumbprint({ ...jwk, alg: 'RS256', use: 'sig' }), jwkThumbprint(jwk as Record<string, unknown>), 'other members do not count')
  for (const bad of [{ kty: 'oct', k: 'AAAA' }, { kty: 'EC', crv: 'P-256', x: 'AAAA' }, { kty: 'RSA', e: 'AQAB', n: 1 }, { kty: 'toString' }, {}]) {
    t.throws(() => jwkThumbprint(bad), TypeError, JSON.stringify(bad))
  }
})

t.test('1. the proof\'s form: at most 4096 characters, three non-empty base64url segments', async (t) => {
  const valid = proofOf(es256)
  const filler = MAX_PROOF_LENGTH - valid.length
  // Base64url of JSON grows by 4 characters for 3 bytes: pad the claims to exactly the limit.
  const padded = (extra: number): string => proofOf(es256, { claims: claimsFor({ pad: 'x'.repeat(Math.floor((filler + extra) * 3 / 4) - 10) }) })
  let longest = padded(0)
  for (let n = 1; longest.length < MAX_PROOF_LENGTH; n++) longest = padded(n)
  t.equal(longest.length, MAX_PROOF_LENGTH)
  t.ok(verifyProof(longest, expected), 'exactly 4096 characters')
  refuses(t, `${longest}A`, 'proof too long')
  refuses(t, 'A'.repeat(1_000_000), 'proof too long')
  const [h, c, s] = valid.split('.') as [string, string, string]
  for (const proof of [
    `${h}.${c}`, `${h}.${c}.${s}.${s}`, `${h}..${s}`, `.${c}.${s}`, `${h}.${c}.`, `${h}.${c}.${s}=`, `${h}=.${c}.${s}`,
    `${h}.${c}.${s.slice(0, 10)}+/${s.slice(12)}`, ` ${valid}`, `${valid}\n`, `${h}.${c}.${s}, ${valid}`, '', '..'
  ]) {
    refuses(t, proof, 'not a compact JWS of three base64url segments', {}, JSON.stringify(proof.slice(0, 30)))
  }
  refuses(t, undefined as unknown as string, 'not a compact JWS of three base64url segments', {}, 'not a string')
})

t.test('2. the header: a JSON object with typ dpop+jwt, an allowed alg and a public jwk that fits it', async (t) => {
  const claims = encode(claimsFor())
  for (const header of ['{', 'null', '[]', '"dpop+jwt"', '7', '\u00ff\u00fe']) {
    refuses(t, `${encode(header)}.${claims}.c2ln`, 'header is not a JSON object', {}, header)
  }
  const jwk = es256.jwk
  for (const typ of [undefined, 'JWT', 'DPoP+JWT', 'dpop+jwt ', ['dpop+jwt']]) {
    refuses(t, proofOf(es256, { header: { typ, alg: 'ES256', jwk } }), 'typ is not dpop+jwt', {}, `typ ${JSON.stringify(typ)}`)
  }
  refuses(t, proofOf(es256, { header: { typ: 'dpop+jwt', alg: 'ES256', jwk, crit: ['exp'] } }), 'crit is not supported', {}, 'crit')
  for (const alg of [undefined, 'none', 'HS256', 'ES512', 'RS384', 'Ed448', 'es256', 'toString', '__proto__']) {
    const header = encode({ typ: 'dpop+jwt', alg, jwk })
    refuses(t, `${header}.${claims}.c2ln`, 'alg not allowed', {}, `alg ${String(alg)}`)
  }
  // Key confusion: an HMAC over the proof with the public key's text as the secret, or an oct key.
  for (const hmacJwk of [jwk, { kty: 'oct', k: Buffer.from(JSON.stringify(jwk)).toString('base64url') }]) {
    const input = `${encode({ typ: 'dpop+jwt', alg: 'HS256', jwk: hmacJwk })}.${claims}`
    const mac = createHmac('sha256', JSON.stringify(jwk)).update(input).digest('base64url')
    refuses(t, `${input}.${mac}`, 'alg not allowed', {}, `HS256 with a ${String(hmacJwk.kty)} jwk`)
  }
  refuses(t, proofOf(signers.EdDSA), 'alg not allowed', { algorithms: ['ES256'] }, 'an algorithm the app did not configure')
  t.ok(verifyProof(proofOf(signers.EdDSA), { ...expected, algorithms: ['EdDSA'] }), 'one it did')
  refuses(t, `${encode({ typ: 'dpop+jwt', alg: 'HS256' })}.${claims}.c2ln`, 'alg not allowed',
    { algorithms: ['HS256'] as unknown as DpopAlgorithm[] }, 'an algorithm configured by mistake that has no verifier')

  for (const missing of [undefined, 'jwk', null, [jwk], 42]) {
    refuses(t, proofOf(es256, { header: { typ: 'dpop+jwt', alg: 'ES256', jwk: missing } }), 'jwk missing or not an object', {}, `jwk ${JSON.stringify(missing)}`)
  }
  const ecPrivate = es256.privateKey.export({ format: 'jwk' })
  t.ok(ecPrivate.d, 'a private EC jwk')
  refuses(t, proofOf(es256, { header: { typ: 'dpop+jwt', alg: 'ES256', jwk: ecPrivate } }), 'jwk has a private member', {}, 'an EC private key')
  for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']) {
    const header = { typ: 'dpop+jwt', alg: 'RS256', jwk: { ...signers.RS256.jwk, [member]: member === 'oth' ? [] : 'AQAB' } }
    refuses(t, proofOf(signers.RS256, { header }), 'jwk has a private member', {}, `member ${member}`)
  }

  const p384 = signerFor('ES256', 'P-384')
  refuses(t, proofOf(p384, { header: { typ: 'dpop+jwt', alg: 'ES256', jwk: p384.jwk } }), 'jwk does not fit alg', {}, 'a P-384 key for ES256')
  refuses(t, proofOf(es256, { header: { typ: 'dpop+jwt', alg: 'ES384', jwk: es256.jwk } }), 'jwk does not fit alg', {}, 'a P-256 key for ES384')
  const k256 = signerFor('ES256', 'secp256k1')
  refuses(t, proofOf(k256), 'jwk does not fit alg', {}, 'a secp256k1 key for ES256')
  const ed448 = signerFor('EdDSA', 'Ed448')
  t.equal(ed448.jwk.crv, 'Ed448')
  refuses(t, proofOf(ed448), 'jwk does not fit alg', {}, 'an Ed448 key for EdDSA')
  for (const [alg, other] of [['RS256', 'ES256'], ['PS256', 'EdDSA'], ['EdDSA', 'RS256'], ['ES256', 'PS256']] as const) {
    refuses(t, proofOf(signers[other], { header: { typ: 'dpop+jwt', alg, jwk: signers[other].jwk } }), 'jwk does not fit alg', {}, `a ${other} key for ${alg}`)
  }
  refuses(t, proofOf(signers.RS256, { header: { typ: 'dpop+jwt', alg: 'RS256', jwk: { ...signers.RS256.jwk, crv: 'P-256' } } }), 'jwk does not fit alg', {}, 'an RSA key with a curve')

  for (const bad of [
    { ...jwk, x: undefined }, { ...jwk, y: 7 }, { ...jwk, x: 'AAAA' }, { ...jwk, y: jwk.x }, { ...jwk, x: '!!!!' }
  ]) {
    refuses(t, proofOf(es256, { header: { typ: 'dpop+jwt', alg: 'ES256', jwk: bad } }), 'jwk is not a valid public key', {}, JSON.stringify(bad).slice(0, 40))
  }
  refuses(t, proofOf(signers.RS256, { header: { typ: 'dpop+jwt', alg: 'RS256', jwk: { kty: 'RSA', e: 'AQAB' } } }), 'jwk is not a valid public key', {}, 'no modulus')
  refuses(t, proofOf(signers.RS256, { header: { typ: 'dpop+jwt', alg: 'RS256', jwk: { kty: 'RSA', e: 'AQAB', n: '' } } }), 'RSA key shorter than 2048 bits', {}, 'an empty modulus: a key of no bits')
  const rsa1024 = signerFor('RS256', undefined, 1024)
  refuses(t, proofOf(rsa1024), 'RSA key shorter than 2048 bits')
  refuses(t, proofOf({ ...rsa1024, alg: 'PS256' }), 'RSA key shorter than 2048 bits', {}, 'PS256 likewise')
  refuses(t, proofOf(signerFor('RS256', undefined, 2047)), 'RSA key shorter than 2048 bits', {}, '2047 bits')
  // A client picks what its verification costs: no modulus over 4096 bits, no exponent over 32 bits.
  refuses(t, proofOf(signerFor('RS256', undefined, 4104)), 'RSA key too costly to verify', {}, '4104 bits')
  // Refused as the key is read, before any signature is verified: no honest signer made this one.
  const bigExponent = { ...signers.RS256.jwk, e: Buffer.from('0200000001', 'hex').toString('base64url') }
  refuses(t, proofOf(signers.RS256, { header: { typ: 'dpop+jwt', alg: 'RS256', jwk: bigExponent } }), 'RSA key too costly to verify', {}, 'an exponent of 34 bits')
  t.ok(verifyProof(proofOf(signerFor('RS256', undefined, 4096)), expected), '4096 bits and 65537 pass')
})

t.test('3. the signature verifies with the header\'s key, ECDSA as r||s only, high or low S', async (t) => {
  for (const alg of DPOP_ALGORITHMS) {
    refuses(t, proofOf(signers[alg], { by: signerFor(alg).privateKey }), 'signature invalid', {}, `${alg}: another key's signature`)
    const [h, , s] = proofOf(signers[alg]).split('.')
    refuses(t, `${h}.${encode(claimsFor({ htm: 'GET' }))}.${s}`, 'signature invalid', {}, `${alg}: claims edited`)
    refuses(t, `${h}.${encode(claimsFor())}.A`, alg.startsWith('ES') ? 'ECDSA signature is not r||s' : 'signature invalid', {}, `${alg}: an empty signature`)
  }
  const [h, c, s] = proofOf(es256).split('.') as [string, string, string]
  refuses(t, `${encode({ typ: 'dpop+jwt', alg: 'ES256', jwk: es256.jwk, kid: 'x' })}.${c}.${s}`, 'signature invalid', {}, 'header edited')
  refuses(t, proofOf(es256, { der: true }), 'ECDSA signature is not r||s', {}, 'ES256 in DER')
  refuses(t, proofOf(signers.ES384, { der: true }), 'ECDSA signature is not r||s', {}, 'ES384 in DER')
  const r = Buffer.from(s, 'base64url').subarray(0, 32)
  refuses(t, `${h}.${c}.${Buffer.concat([r, r, r]).toString('base64url')}`, 'ECDSA signature is not r||s', {}, 'ES256 of 96 bytes')
  // (r, s) and (r, n - s) are both valid ECDSA signatures; JWS does not require low S.
  const order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551n
  const signatureBytes = Buffer.from(s, 'base64url')
  const flipped = order - BigInt(`0x${signatureBytes.subarray(32).toString('hex')}`)
  const other = Buffer.concat([signatureBytes.subarray(0, 32), Buffer.from(flipped.toString(16).padStart(64, '0'), 'hex')])
  t.ok(verifyProof(`${h}.${c}.${other.toString('base64url')}`, expected), 'the other S')
  const ps = proofOf(signers.PS256)
  const [ph, pc] = ps.split('.') as [string, string]
  const salt20 = sign('sha256', Buffer.from(`${ph}.${pc}`), { key: signers.PS256.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 20 })
  refuses(t, `${ph}.${pc}.${salt20.toString('base64url')}`, 'signature invalid', {}, 'PS256 with a salt shorter than the hash')
})

t.test('4. the claims: a JSON object, jti, htm, htu and iat', async (t) => {
  for (const claims of ['{', 'null', '[]', '"x"']) refuses(t, proofOf(es256, { claims }), 'claims are not a JSON object', {}, claims)
  const { jti: _, ...withoutJti } = claimsFor()
  refuses(t, proofOf(es256, { claims: withoutJti }), 'jti missing or invalid', {}, 'no jti')
  for (const jti of ['', 'x'.repeat(257), 7, null, ['a']]) {
    refuses(t, proofOf(es256, { claims: claimsFor({ jti }) }), 'jti missing or invalid', {}, `jti ${JSON.stringify(jti).slice(0, 20)}`)
  }
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ jti: 'x'.repeat(256) }) }), expected), 'a jti of 256 characters')
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ jti: 'x' }) }), expected), 'a jti of one')

  for (const htm of ['GET', 'post', undefined, 'POST ']) {
    refuses(t, proofOf(es256, { claims: claimsFor({ htm }) }), 'htm does not match', {}, `htm ${String(htm)}`)
  }
  for (const htu of [
    'https://api.example.com/other', 'https://evil.example.com/token', 'http://api.example.com/token',
    'https://api.example.com:8443/token', 'https://api.example.com/token/', 'https://api.example.com/TOKEN',
    'https://api.example.com/%74oken', '/token', 'api.example.com/token', 'ftp://api.example.com/token', 'not a url', 7, undefined
  ]) {
    refuses(t, proofOf(es256, { claims: claimsFor({ htu }) }), 'htu does not match', {}, `htu ${String(htu)}`)
  }
  refuses(t, proofOf(es256), 'htu does not match', { url: 'not a url' }, 'a request URL that does not parse matches nothing')
  for (const [htu, url] of [
    ['https://api.example.com/token?a=1#frag', URL_],
    [URL_, 'https://api.example.com/token?b=2'],
    ['https://api.example.com/token?a=1', 'https://api.example.com/token?b=2#x'],
    ['HTTPS://API.Example.COM:443/token', URL_],
    ['http://api.example.com:80/token', 'http://API.example.com/token'],
    ['https://api.example.com/a b', 'https://api.example.com/a%20b'],
    ['https://api.example.com/x/../token', URL_]
  ] as const) {
    t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ htu }) }), { ...expected, url }), `${htu} matches ${url}`)
  }

  for (const iat of [undefined, '1800000000', null, [NOW / 1000]]) {
    refuses(t, proofOf(es256, { claims: claimsFor({ iat }) }), 'iat missing or invalid', {}, `iat ${JSON.stringify(iat)}`)
  }
  for (const iat of ['1e400', '-1e400']) {
    // JSON.parse reads these as ±Infinity.
    const claims = JSON.stringify(claimsFor()).replace(/"iat":[0-9.]+/, `"iat":${iat}`)
    refuses(t, proofOf(es256, { claims }), 'iat missing or invalid', {}, `iat ${iat}`)
  }
  const s = NOW / 1000
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ iat: s - 60 }) }), expected), 'iat exactly lifetime in the past')
  refuses(t, proofOf(es256, { claims: claimsFor({ iat: s - 60.001 }) }), 'iat too old')
  refuses(t, proofOf(es256, { claims: claimsFor({ iat: 0 }) }), 'iat too old', {}, 'iat 0')
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ iat: s + FUTURE_SKEW_SECONDS }) }), expected), 'iat exactly 5 s in the future')
  refuses(t, proofOf(es256, { claims: claimsFor({ iat: s + FUTURE_SKEW_SECONDS + 0.001 }) }), 'iat in the future')
  const tolerant = { clockTolerance: 10 }
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ iat: s + 15 }) }), { ...expected, ...tolerant }), 'clockTolerance widens the future side')
  refuses(t, proofOf(es256, { claims: claimsFor({ iat: s + 16 }) }), 'iat in the future', tolerant)
  refuses(t, proofOf(es256, { claims: claimsFor({ iat: s - 61 }) }), 'iat too old', tolerant, 'and not the past side')
  const later = { now: NOW + 500 }
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ iat: s - 59.5 }) }), { ...expected, ...later }), 'edges in milliseconds')
  refuses(t, proofOf(es256, { claims: claimsFor({ iat: s - 60 }) }), 'iat too old', later)
  const short = verifyProof(proofOf(es256, { claims: claimsFor({ iat: s - 5 }) }), { ...expected, lifetime: 10 })
  t.equal(short.expiresAt, NOW + 5000 + 1000, 'expiresAt follows iat and lifetime')
})

t.test('5. the nonce: required when acceptsNonce is given, the one refusal with nonce: true', async (t) => {
  const nonces = new DpopNonces(REFRESH_SECRET)
  const acceptsNonce = (nonce: string): boolean => nonces.accepts(nonce, NOW)
  const withNonce = { acceptsNonce }
  t.ok(verifyProof(proofOf(es256), expected), 'no nonce asked for, none needed')
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ nonce: 'anything' }) }), expected), 'nor looked at')
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ nonce: nonces.current(NOW) }) }), { ...expected, ...withNonce }), 'the current nonce')
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ nonce: nonces.current(NOW - NONCE_PERIOD_MS) }) }), { ...expected, ...withNonce }), 'the previous period\'s')
  const cases: Array<[unknown, string]> = [
    [undefined, 'nonce missing'], [7, 'nonce missing'], [null, 'nonce missing'],
    [nonces.current(NOW - 2 * NONCE_PERIOD_MS), 'nonce not current'], [nonces.current(NOW + NONCE_PERIOD_MS), 'nonce not current'],
    [new DpopNonces(randomBytes(32)).current(NOW), 'nonce not current'], ['', 'nonce not current']
  ]
  for (const [nonce, reason] of cases) {
    const error = refusal(proofOf(es256, { claims: claimsFor({ nonce }) }), withNonce)
    t.same([error.reason, error.nonce], [reason, true], `nonce ${JSON.stringify(nonce)}`)
  }
  const earlier = refusal(proofOf(es256, { claims: claimsFor({ htm: 'GET' }) }), withNonce)
  t.same([earlier.reason, earlier.nonce], ['htm does not match', false], 'another failed check comes first, and is no nonce refusal')
})

t.test('6. ath: required with an access token, the hash of that token', async (t) => {
  const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2ln'
  const withToken = { accessToken: token }
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ ath: accessTokenHash(token) }) }), { ...expected, ...withToken }), 'the right ath')
  t.ok(verifyProof(proofOf(es256, { claims: claimsFor({ ath: 'ignored' }) }), expected), 'without an access token, ath is not looked at')
  refuses(t, proofOf(es256), 'ath missing', withToken)
  refuses(t, proofOf(es256, { claims: claimsFor({ ath: 7 }) }), 'ath missing', withToken, 'ath not a string')
  for (const ath of [accessTokenHash(`${token}x`), accessTokenHash(token).slice(0, 42), `${accessTokenHash(token)}=`, '']) {
    refuses(t, proofOf(es256, { claims: claimsFor({ ath }) }), 'ath does not match', withToken, `ath ${ath}`)
  }
  const nonceFirst = refusal(proofOf(es256, { claims: claimsFor({ nonce: 'stale' }) }), { ...withToken, acceptsNonce: () => false })
  t.same([nonceFirst.reason, nonceFirst.nonce], ['nonce not current', true], 'the nonce is checked before ath (docs/design.md order)')
})

t.test('the key cache: more keys than it holds, each still verified as its own', async (t) => {
  const proofs: Array<[string, string]> = []
  for (let i = 0; i < 1010; i++) {
    const signer = signerFor('ES256')
    proofs.push([proofOf(signer), jwkThumbprint(signer.jwk as Record<string, unknown>)])
  }
  for (const [proof, jkt] of proofs) if (verifyProof(proof, expected).jkt !== jkt) t.fail('a thumbprint differs')
  const [firstProof, firstJkt] = proofs[0] as [string, string]
  t.equal(verifyProof(firstProof, expected).jkt, firstJkt, 'a key from before the cache was emptied')
  refuses(t, proofOf(signers.ES256, { by: signerFor('ES256').privateKey }), 'signature invalid', {}, 'a cached key still checks signatures')
})

t.test('normalisedHtu: http(s) URLs without query and fragment, null for anything else', async (t) => {
  t.equal(normalisedHtu('HTTPS://Example.COM:443/a/b?c=d#e'), 'https://example.com/a/b')
  t.equal(normalisedHtu('http://example.com:8080'), 'http://example.com:8080/')
  t.equal(normalisedHtu('http://[::1]:80/x?'), 'http://[::1]/x')
  for (const url of ['ftp://example.com/', 'file:///etc/passwd', 'javascript:alert(1)', '/relative', 'example.com', '', 'http://', 'https://exa mple.com/']) {
    t.equal(normalisedHtu(url), null, JSON.stringify(url))
  }
})

t.test('DpopNonces: the period and an HMAC of it, the current or previous period only, any malformed text refused', async (t) => {
  const nonces = new DpopNonces(REFRESH_SECRET)
  const nonce = nonces.current(NOW)
  t.match(nonce, /^[A-Za-z0-9_-]{27}$/)
  const period = Math.floor(NOW / NONCE_PERIOD_MS)
  const bytes = Buffer.from(nonce, 'base64url')
  t.equal(bytes.readUInt32BE(0), period, 'the period number, 4 bytes big-endian')
  const key = createHmac('sha256', REFRESH_SECRET).update('fastify-token-auth:dpop-nonce').digest()
  t.same(bytes.subarray(4), createHmac('sha256', key).update(bytes.subarray(0, 4)).digest().subarray(0, 16), 'the first 16 bytes of the HMAC, with a key of its own')
  t.equal(new DpopNonces(Buffer.from(REFRESH_SECRET)).current(NOW), nonce, 'a Buffer secret of the same bytes')
  t.not(new DpopNonces(randomBytes(32)).current(NOW), nonce, 'another secret')
  const start = period * NONCE_PERIOD_MS
  t.equal(nonces.current(start), nonce, 'the same nonce all period long')
  t.equal(nonces.current(start + NONCE_PERIOD_MS - 1), nonce)
  t.not(nonces.current(start + NONCE_PERIOD_MS), nonce, 'and another in the next')

  t.ok(nonces.accepts(nonce, NOW))
  t.ok(nonces.accepts(nonce, start + 2 * NONCE_PERIOD_MS - 1), 'until the end of the next period')
  t.notOk(nonces.accepts(nonce, start + 2 * NONCE_PERIOD_MS), 'not two periods later')
  t.notOk(nonces.accepts(nonce, start - 1), 'not before its period')
  t.notOk(nonces.accepts(nonce, Number.NaN), 'not at no time')
  t.notOk(new DpopNonces(randomBytes(32)).accepts(nonce, NOW), 'not with another secret')

  const last = nonce.at(-1) as string
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const sameBytes = [...alphabet].find((c) => c !== last && Buffer.from(nonce.slice(0, -1) + c, 'base64url').equals(bytes))
  const flipped = (i: number): string => nonce.slice(0, i) + (nonce[i] === 'A' ? 'B' : 'A') + nonce.slice(i + 1)
  const malformed: unknown[] = [
    '', 'x', nonce.slice(0, 26), `${nonce}A`, `${nonce}=`, ` ${nonce.slice(1)}`, `${nonce.slice(0, 26)}=`, `${nonce.slice(0, 26)}+`,
    `${nonce.slice(0, 26)}/`, 'é'.repeat(27), `${nonce.slice(0, 26)}é`, '\u0000'.repeat(27), 'A'.repeat(27), '_'.repeat(27),
    flipped(0), flipped(5), flipped(20), flipped(26), nonce.toUpperCase(), undefined, null, 7, {}, [nonce], Buffer.from(nonce)
  ]
  t.ok(sameBytes, 'the last character has spare bits: another spelling of the same bytes')
  malformed.push(nonce.slice(0, -1) + String(sameBytes))
  for (const bad of malformed) t.equal(nonces.accepts(bad as string, NOW), false, `refuses ${JSON.stringify(bad)}`)
})

t.test('no reason carries the proof or key material, and each check has its own', async (t) => {
  // Every reason the tests above met: short English phrases of a fixed set.
  t.same([...reasons].sort(), [
    'ECDSA signature is not r||s', 'RSA key shorter than 2048 bits', 'RSA key too costly to verify', 'alg not allowed', 'ath does not match', 'ath missing',
    'claims are not a JSON object', 'crit is not supported', 'header is not a JSON object', 'htm does not match', 'htu does not match',
    'iat in the future', 'iat missing or invalid', 'iat too old', 'jti missing or invalid', 'jwk does not fit alg',
    'jwk has a private member', 'jwk is not a valid public key', 'jwk missing or not an object', 'nonce missing',
    'nonce not current', 'not a compact JWS of three base64url segments', 'proof too long', 'signature invalid', 'typ is not dpop+jwt'
  ])
  const secrets = [es256.jwk.x, es256.jwk.y, signers.RS256.jwk.n, signers.EdDSA.jwk.x].map(String)
  for (const reason of reasons) {
    t.match(reason, /^[A-Za-z0-9 |+,:-]{1,60}$/, reason)
    for (const secret of secrets) t.notOk(reason.includes(secret.slice(0, 8)), `${reason}: no key material`)
  }
  const proof = proofOf(es256, { claims: claimsFor({ htm: 'GET' }) })
  const error = refusal(proof)
  for (const segment of proof.split('.')) t.notOk(error.message.includes(segment.slice(0, 8)), 'the message quotes no segment')
})
