import {
  createHmac, createPrivateKey, createPublicKey, generateKeyPair as generateNodeKeyPair, generateKeyPairSync,
  generatePrimeSync, KeyObject, sign
} from 'node:crypto'
import fc from 'fast-check'
import { calculateJwkThumbprint, CompactSign, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { parseItem, serializeItem } from 'structured-headers'
import t, { type Test } from 'tap'
import { DbscMacs } from '../lib/dbsc/macs.js'
import {
  DBSC_ALGORITHMS, DbscProofError, readSessionIdentifier, sessionIdentifier, verifyRefreshProof, verifyRegistrationProof
} from '../lib/dbsc/proof.js'
import { parseStringItem, serializeString } from '../lib/dbsc/structured-fields.js'
import { jwkThumbprint } from '../lib/jws.js'
import { REFRESH_SECRET } from './helpers.js'

// DBSC proofs, session identifiers, challenges and device cookies (docs/design.md, «Device Bound
// Session Credentials (DBSC)»; W3C DBSC, «DBSC Proof JWT Syntax») and the RFC 9651 sf-strings
// their headers carry, on their own. jose signs the proofs and computes the thumbprints the
// verifier must agree with; node:crypto builds what jose will not (DER signatures, `crit`,
// claims that are not JSON, keys outside the bounds); structured-headers is the RFC 9651 parser
// parseStringItem must agree with.

// An RSA key just over the 4096-bit bound (4104 bits) takes a second or two to generate: started
// now, off the main thread, awaited where needed.
const rsaOverBound = new Promise<KeyObject>((resolve, reject) => {
  generateNodeKeyPair('rsa', { modulusLength: 4104 }, (error, _publicKey, privateKey) => {
    if (error === null) resolve(privateKey)
    else reject(error)
  })
})

const CHALLENGE = '1800000600.AAAAAAAAAAAAAAAAAAAAAA'

type Alg = 'ES256' | 'RS256' | 'ES384' | 'PS256' | 'EdDSA'
interface Signer { alg: string, privateKey: CryptoKey | KeyObject, jwk: JWK, jkt: string }

/** A key pair of jose's (WebCrypto) making, as a browser holds its session key. */
async function joseSigner (alg: Alg, modulusLength = 2048): Promise<Signer> {
  const rsa = alg === 'RS256' || alg === 'PS256'
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(rsa ? { modulusLength } : {}) })
  const jwk = await exportJWK(publicKey)
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) }
}

/** A key pair of node:crypto's making: sizes and exponents jose will not generate. */
async function nodeSigner (alg: string, privateKey: KeyObject): Promise<Signer> {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) }
}

/** One RSA-4096 key for the tests that need one: its generation takes a while. */
let rsa4096: Promise<Signer> | undefined
const rsa4096Signer = async (): Promise<Signer> => await (rsa4096 ??= joseSigner('RS256', 4096))

interface ProofOptions {
  /** Header members over the default `{ alg, typ: 'dbsc+jwt', jwk }` (undefined drops one). */
  header?: Record<string, unknown>
  /** Claims over the default `{ jti }` (undefined drops one). */
  claims?: Record<string, unknown>
  /** Where the public key goes: the draft's header `jwk`, Chromium's first claims `key`, both, or nowhere. */
  keyIn?: 'header' | 'claims' | 'both' | 'none'
  /** Signs with this key instead of the signer's. */
  by?: CryptoKey | KeyObject
}

/** A DBSC proof signed by jose. */
async function proofOf (signer: Signer, options: ProofOptions = {}): Promise<string> {
  const keyIn = options.keyIn ?? 'header'
  const header = {
    alg: signer.alg, typ: 'dbsc+jwt', ...(keyIn === 'header' || keyIn === 'both' ? { jwk: signer.jwk } : {}), ...options.header
  }
  const claims = { jti: CHALLENGE, ...(keyIn === 'claims' || keyIn === 'both' ? { key: signer.jwk } : {}), ...options.claims }
  return await new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(options.by ?? signer.privateKey)
}

const encode = (part: Record<string, unknown> | string): string =>
  Buffer.from(typeof part === 'string' ? part : JSON.stringify(part)).toString('base64url')

/** A compact JWS built by hand and signed with node:crypto: what jose would refuse to make. */
function handBuilt (header: Record<string, unknown> | string, claims: Record<string, unknown> | string, by: CryptoKey | KeyObject, der = false): string {
  const key = by instanceof KeyObject ? by : KeyObject.from(by)
  const input = `${encode(header)}.${encode(claims)}`
  const options = key.asymmetricKeyType === 'ec' ? { key, dsaEncoding: der ? 'der' as const : 'ieee-p1363' as const } : key
  return `${input}.${sign('sha256', Buffer.from(input), options).toString('base64url')}`
}

const reasons = new Set<string>()

/** The DbscProofError `run` throws (anything else fails the test). */
async function refusal (run: () => unknown): Promise<DbscProofError> {
  try {
    await run()
  } catch (error) {
    if (error instanceof DbscProofError) {
      reasons.add(error.reason)
      return error
    }
    throw error
  }
  throw new Error('accepted')
}

async function refuses (t: Test, run: () => unknown, reason: string, message = reason): Promise<void> {
  const error = await refusal(run)
  t.equal(error.reason, reason, message)
  t.equal(error.message, `Invalid DBSC proof: ${reason}`)
  t.equal(error.name, 'DbscProofError')
}

const registering = (proof: string) => () => verifyRegistrationProof(proof)

t.test('DBSC_ALGORITHMS: ES256 and RS256, nothing else', async (t) => {
  t.strictSame([...DBSC_ALGORITHMS], ['ES256', 'RS256'])
})

t.test('a registration proof of each algorithm and key size, the key in the header, the claims or both', async (t) => {
  const signers = [await joseSigner('ES256'), await joseSigner('RS256'), await rsa4096Signer()]
  for (const signer of signers) {
    const name = `${signer.alg} ${String(signer.jwk.kty)} ${signer.jwk.n === undefined ? String(signer.jwk.crv) : `${Buffer.from(signer.jwk.n, 'base64url').length * 8} bits`}`
    for (const keyIn of ['header', 'claims', 'both'] as const) {
      const verified = verifyRegistrationProof(await proofOf(signer, { keyIn }))
      t.equal(verified.challenge, CHALLENGE, `${name}, key in ${keyIn}: the jti`)
      t.equal(verified.key.jkt, signer.jkt, `${name}, key in ${keyIn}: jose's thumbprint`)
      t.equal(jwkThumbprint(signer.jwk as Record<string, unknown>), signer.jkt)
      const expected = signer.jwk.kty === 'EC'
        ? { crv: signer.jwk.crv, kty: 'EC', x: signer.jwk.x, y: signer.jwk.y }
        : { e: signer.jwk.e, kty: 'RSA', n: signer.jwk.n }
      t.equal(JSON.stringify(verified.key.members), JSON.stringify(expected), 'the RFC 7638 members, in their order')
      t.ok(createPublicKey({ key: signer.jwk, format: 'jwk' }).equals(verified.key.key), 'the imported key is the signer\'s')
    }
  }
  const es256 = signers[0] as Signer
  const withExtras = { ...es256.jwk, alg: 'ES256', use: 'sig', kid: 'k1', ext: true, key_ops: ['verify'] }
  t.equal(verifyRegistrationProof(await proofOf(es256, { keyIn: 'both', claims: { key: withExtras } })).key.jkt, es256.jkt,
    'both: the same key, spelt with other members')
  t.equal(verifyRegistrationProof(await proofOf(es256, { header: { jwk: withExtras } })).key.jkt, es256.jkt, 'members beyond RFC 7638 are ignored')
  const verified = verifyRegistrationProof(await proofOf(es256, { claims: { jti: 'x'.repeat(128), iat: 1, extra: [1] } }))
  t.equal(verified.challenge, 'x'.repeat(128), 'a jti of 128 characters; other claims ignored')
  t.equal(verifyRegistrationProof(await proofOf(es256, { claims: { jti: 'x' } })).challenge, 'x', 'a jti of one')
  t.equal(verifyRegistrationProof(await proofOf(es256, { claims: { jti: 'é \u0000"' } })).challenge, 'é \u0000"', 'a jti is any string; the caller checks it is a challenge')
})

t.test('the RSA key\'s size and exponent: 2048 to 4096 bits, an exponent of at most 32 bits', async (t) => {
  // jose will not sign with fewer than 2048 bits: node:crypto signs this one.
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const short = await nodeSigner('RS256', rsa1024.privateKey)
  await refuses(t, registering(handBuilt({ alg: 'RS256', typ: 'dbsc+jwt', jwk: short.jwk }, { jti: CHALLENGE }, rsa1024.privateKey)), 'RSA key shorter than 2048 bits', '1024 bits')
  await refuses(t, registering(handBuilt({ alg: 'RS256', typ: 'dbsc+jwt' }, { jti: CHALLENGE, key: short.jwk }, rsa1024.privateKey)), 'RSA key shorter than 2048 bits', '1024 bits, in the claims')
  const rsa2047 = await nodeSigner('RS256', generateKeyPairSync('rsa', { modulusLength: 2047 }).privateKey)
  await refuses(t, registering(handBuilt({ alg: 'RS256', typ: 'dbsc+jwt', jwk: rsa2047.jwk }, { jti: CHALLENGE }, rsa2047.privateKey as KeyObject)), 'RSA key shorter than 2048 bits', '2047 bits')

  // The largest exponent node:crypto generates, 2^32 - 1: within the bound.
  const maxExponent = await nodeSigner('RS256', generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 2 ** 32 - 1 }).privateKey)
  t.equal(Buffer.from(maxExponent.jwk.e as string, 'base64url').toString('hex'), 'ffffffff')
  t.equal(verifyRegistrationProof(await proofOf(maxExponent)).key.jkt, maxExponent.jkt, 'an exponent of 2^32 - 1')

  // node:crypto generates no exponent over 32 bits: the key is built from two of its primes and
  // e = 2^32 + 15 (a prime), and jose signs with it.
  const e = 2n ** 32n + 15n
  const toB64 = (n: bigint): string => Buffer.from(n.toString(16).padStart(Math.ceil(n.toString(16).length / 2) * 2, '0'), 'hex').toString('base64url')
  const inverse = (a: bigint, m: bigint): bigint => {
    let [r0, r1, s0, s1] = [a % m, m, 1n, 0n]
    while (r1 !== 0n) {
      const q = r0 / r1;
      [r0, r1] = [r1, r0 - q * r1];
      [s0, s1] = [s1, s0 - q * s1]
    }
    return ((s0 % m) + m) % m
  }
  let p: bigint
  let q: bigint
  do {
    p = generatePrimeSync(1024, { bigint: true })
    q = generatePrimeSync(1024, { bigint: true })
  } while ((p - 1n) % e === 0n || (q - 1n) % e === 0n || p === q)
  const d = inverse(e, (p - 1n) * (q - 1n))
  const bigExponentKey = createPrivateKey({
    key: { kty: 'RSA', n: toB64(p * q), e: toB64(e), d: toB64(d), p: toB64(p), q: toB64(q), dp: toB64(d % (p - 1n)), dq: toB64(d % (q - 1n)), qi: toB64(inverse(q, p)) },
    format: 'jwk'
  })
  t.equal(bigExponentKey.asymmetricKeyDetails?.publicExponent, e)
  const bigExponent = await nodeSigner('RS256', bigExponentKey)
  await refuses(t, registering(await proofOf(bigExponent)), 'RSA key too costly to verify', 'an exponent of 2^32 + 15')

  const huge = await nodeSigner('RS256', await rsaOverBound)
  t.equal(Buffer.from(huge.jwk.n as string, 'base64url').length, 513)
  const proof = await proofOf(huge)
  t.ok(proof.length <= 4096, 'an RSA-4104 registration proof fits in 4096 characters')
  await refuses(t, registering(proof), 'RSA key too costly to verify', '4104 bits')
  await refuses(t, registering(await proofOf(huge, { keyIn: 'claims' })), 'RSA key too costly to verify', '4104 bits, in the claims')
})

t.test('the header: typ dbsc+jwt, ES256 or RS256, no crit', async (t) => {
  const es256 = await joseSigner('ES256')
  for (const typ of [undefined, 'JWT', 'dpop+jwt', 'DBSC+JWT', 'dbsc+jwt ', ['dbsc+jwt']]) {
    await refuses(t, registering(await proofOf(es256, { header: { typ } })), 'typ is not dbsc+jwt', `typ ${JSON.stringify(typ)}`)
  }
  const hmacJwk = { kty: 'oct', k: Buffer.from(JSON.stringify(es256.jwk)).toString('base64url') }
  const hs256 = await new SignJWT({ jti: CHALLENGE }).setProtectedHeader({ alg: 'HS256', typ: 'dbsc+jwt', jwk: hmacJwk as JWK })
    .sign(Buffer.from(JSON.stringify(es256.jwk)))
  await refuses(t, registering(hs256), 'alg not allowed', 'HS256, keyed with the public key\'s text')
  await refuses(t, registering(`${encode({ alg: 'none', typ: 'dbsc+jwt', jwk: es256.jwk })}.${encode({ jti: CHALLENGE })}.c2ln`), 'alg not allowed', 'none')
  for (const alg of ['EdDSA', 'PS256', 'ES384'] as const) {
    await refuses(t, registering(await proofOf(await joseSigner(alg))), 'alg not allowed', alg)
  }
  for (const alg of [undefined, 'es256', 'RS512', 'Ed25519', 'toString', 7]) {
    await refuses(t, registering(`${encode({ alg, typ: 'dbsc+jwt', jwk: es256.jwk })}.${encode({ jti: CHALLENGE })}.c2ln`), 'alg not allowed', `alg ${String(alg)}`)
  }
  const crit = handBuilt({ alg: 'ES256', typ: 'dbsc+jwt', jwk: es256.jwk, crit: ['exp'], exp: 1 }, { jti: CHALLENGE }, es256.privateKey)
  await refuses(t, registering(crit), 'crit is not supported', 'crit')
  for (const header of ['{', 'null', '[]', '"dbsc+jwt"', '7']) {
    await refuses(t, registering(`${encode(header)}.${encode({ jti: CHALLENGE })}.c2ln`), 'header is not a JSON object', `header ${header}`)
  }
})

t.test('the key: an object, public, of the type and curve the alg needs', async (t) => {
  const es256 = await joseSigner('ES256')
  const rs256 = await joseSigner('RS256')
  for (const jwk of [null, 'jwk', 42, [es256.jwk], true]) {
    await refuses(t, registering(await proofOf(es256, { header: { jwk } })), 'jwk missing or not an object', `jwk ${JSON.stringify(jwk)}`)
  }
  await refuses(t, registering(await proofOf(es256, { keyIn: 'none' })), 'jwk missing or not an object', 'no key at all')
  await refuses(t, registering(await proofOf(es256, { keyIn: 'claims', claims: { key: 'key' } })), 'jwk missing or not an object', 'claims key a string, no header jwk')
  await refuses(t, registering(await proofOf(es256, { keyIn: 'claims', claims: { key: [es256.jwk] } })), 'jwk missing or not an object', 'claims key an array, no header jwk')

  const ecPrivate = await exportJWK(es256.privateKey)
  t.ok(ecPrivate.d, 'an EC private jwk')
  await refuses(t, registering(await proofOf(es256, { header: { jwk: ecPrivate } })), 'jwk has a private member', 'an EC private key in the header')
  await refuses(t, registering(await proofOf(es256, { keyIn: 'claims', claims: { key: ecPrivate } })), 'jwk has a private member', 'an EC private key in the claims')
  for (const member of ['p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']) {
    await refuses(t, registering(await proofOf(rs256, { header: { jwk: { ...rs256.jwk, [member]: member === 'oth' ? [] : 'AQAB' } } })), 'jwk has a private member', `member ${member}`)
  }

  await refuses(t, registering(await proofOf(es256, { header: { alg: 'ES256', jwk: rs256.jwk } })), 'jwk does not fit alg', 'an RSA key with ES256')
  await refuses(t, registering(await proofOf(rs256, { header: { alg: 'RS256', jwk: es256.jwk } })), 'jwk does not fit alg', 'an EC key with RS256')
  const p384 = await joseSigner('ES384')
  await refuses(t, registering(await proofOf(es256, { header: { jwk: p384.jwk } })), 'jwk does not fit alg', 'an EC P-384 key with ES256')
  const p384ByNode = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey
  await refuses(t, registering(handBuilt({ alg: 'ES256', typ: 'dbsc+jwt', jwk: p384.jwk }, { jti: CHALLENGE }, p384ByNode)), 'jwk does not fit alg', 'a P-384 key signing as ES256')
  await refuses(t, registering(await proofOf(rs256, { header: { jwk: { ...rs256.jwk, crv: 'P-256' } } })), 'jwk does not fit alg', 'an RSA key with a curve')
  await refuses(t, registering(await proofOf(es256, { header: { jwk: { ...es256.jwk, kty: 'OKP' } } })), 'jwk does not fit alg', 'kty OKP')

  const { jwk } = es256
  for (const bad of [{ ...jwk, x: undefined }, { ...jwk, y: 7 }, { ...jwk, x: 'AAAA' }, { ...jwk, y: jwk.x }]) {
    await refuses(t, registering(await proofOf(es256, { header: { jwk: bad } })), 'jwk is not a valid public key', JSON.stringify(bad).slice(0, 50))
  }
  await refuses(t, registering(await proofOf(rs256, { header: { jwk: { kty: 'RSA', e: 'AQAB' } } })), 'jwk is not a valid public key', 'RSA without n')
})

t.test('the key in both places must be one key', async (t) => {
  const es256 = await joseSigner('ES256')
  const other = await joseSigner('ES256')
  const rs256 = await joseSigner('RS256')
  await refuses(t, registering(await proofOf(es256, { keyIn: 'both', claims: { key: other.jwk } })), 'jwk and key name different keys', 'another EC key in the claims')
  // The claims' key is checked as a key too, not only compared.
  await refuses(t, registering(await proofOf(es256, { keyIn: 'both', claims: { key: rs256.jwk } })), 'jwk does not fit alg', 'an RSA key in the claims')
  const checkedAsKey: Array<[unknown, string]> = [
    [null, 'jwk missing or not an object'], ['key', 'jwk missing or not an object'], [7, 'jwk missing or not an object'],
    [[es256.jwk], 'jwk missing or not an object'], [{ kty: 'oct', k: 'AAAA' }, 'jwk has a private member'],
    [{ ...es256.jwk, y: undefined }, 'jwk is not a valid public key'], [{ ...es256.jwk, d: 'AAAA' }, 'jwk has a private member']
  ]
  for (const [key, reason] of checkedAsKey) {
    await refuses(t, registering(await proofOf(es256, { keyIn: 'both', claims: { key } })), reason, `claims key ${JSON.stringify(key)?.slice(0, 40)}`)
  }
  // A header `jwk` that is there decides, even when it is null: the claims' key is no fallback.
  await refuses(t, registering(await proofOf(es256, { keyIn: 'claims', header: { jwk: null } })), 'jwk missing or not an object', 'header jwk null')
  // Signed by the claims' key, the header naming another: still refused, whichever key signed.
  await refuses(t, registering(await proofOf(es256, { keyIn: 'both', claims: { key: other.jwk }, by: other.privateKey })), 'jwk and key name different keys', 'signed by the claims\' key')
})

t.test('the signature: by the key the proof names, ECDSA as r||s', async (t) => {
  const es256 = await joseSigner('ES256')
  const rs256 = await joseSigner('RS256')
  for (const signer of [es256, rs256]) {
    const other = await joseSigner(signer.alg as Alg)
    await refuses(t, registering(await proofOf(signer, { by: other.privateKey })), 'signature invalid', `${signer.alg}: signed by another key`)
    await refuses(t, registering(await proofOf(signer, { keyIn: 'claims', by: other.privateKey })), 'signature invalid', `${signer.alg}: another key, key in the claims`)
    const [h, , s] = (await proofOf(signer)).split('.')
    await refuses(t, registering(`${h}.${encode({ jti: 'another' })}.${s}`), 'signature invalid', `${signer.alg}: claims edited`)
  }
  const [h, c, s] = (await proofOf(es256)).split('.') as [string, string, string]
  await refuses(t, registering(`${encode({ alg: 'ES256', typ: 'dbsc+jwt', jwk: es256.jwk, kid: 'x' })}.${c}.${s}`), 'signature invalid', 'header edited')
  await refuses(t, registering(handBuilt({ alg: 'ES256', typ: 'dbsc+jwt', jwk: es256.jwk }, { jti: CHALLENGE }, es256.privateKey, true)), 'ECDSA signature is not r||s', 'ES256 in DER')
  t.ok(verifyRegistrationProof(handBuilt({ alg: 'ES256', typ: 'dbsc+jwt', jwk: es256.jwk }, { jti: CHALLENGE }, es256.privateKey)), 'the same, r||s')
  await refuses(t, registering(`${h}.${c}.${s}${s}`), 'ECDSA signature is not r||s', 'ES256 of 128 bytes')
  await refuses(t, registering(`${h}.${c}.AA`), 'ECDSA signature is not r||s', 'ES256 of one byte')
})

t.test('the claims: a JSON object with a jti of 1 to 128 characters', async (t) => {
  const es256 = await joseSigner('ES256')
  const header = { alg: 'ES256', typ: 'dbsc+jwt', jwk: es256.jwk }
  for (const claims of ['{', 'null', '[]', '"x"', '7']) {
    // jose's CompactSign signs any payload.
    const proof = await new CompactSign(Buffer.from(claims)).setProtectedHeader(header as { alg: string }).sign(es256.privateKey)
    await refuses(t, registering(proof), 'claims are not a JSON object', `claims ${claims}`)
  }
  await refuses(t, registering(await proofOf(es256, { claims: { jti: undefined } })), 'jti missing or invalid', 'no jti')
  for (const jti of ['', 'x'.repeat(129), 7, null, ['a'], { a: 1 }]) {
    await refuses(t, registering(await proofOf(es256, { claims: { jti } })), 'jti missing or invalid', `jti ${JSON.stringify(jti).slice(0, 20)}`)
  }
})

t.test('the proof\'s form: at most 4096 characters, three non-empty base64url segments', async (t) => {
  const es256 = await joseSigner('ES256')
  // Pad the claims (and the header, to reach lengths base64url skips) to exactly the limit.
  let longest: string | undefined
  for (let kid = 0; longest === undefined && kid < 3; kid++) {
    const header = { alg: 'ES256', typ: 'dbsc+jwt', jwk: es256.jwk, ...(kid > 0 ? { kid: 'k'.repeat(kid) } : {}) }
    for (let pad = 2600; longest === undefined && pad < 3200; pad++) {
      const claims = { jti: CHALLENGE, pad: 'x'.repeat(pad) }
      // An ES256 signature is 64 bytes: 86 characters.
      if (encode(header).length + encode(claims).length + 88 === 4096) longest = await proofOf(es256, { header, claims })
    }
  }
  t.equal(longest?.length, 4096)
  t.equal(verifyRegistrationProof(longest as string).challenge, CHALLENGE, 'exactly 4096 characters')
  await refuses(t, registering(`${longest as string}A`), 'proof too long', '4097 characters')
  await refuses(t, registering(await proofOf(es256, { claims: { pad: 'x'.repeat(4000) } })), 'proof too long', 'a signed proof over 4096')
  await refuses(t, registering('A'.repeat(1_000_000)), 'proof too long', 'a megabyte')

  const valid = await proofOf(es256)
  const [h, c, s] = valid.split('.') as [string, string, string]
  for (const proof of [
    `${h}.${c}`, `${h}.${c}.${s}.${s}`, `${h}..${s}`, `.${c}.${s}`, `${h}.${c}.`, `${h}.${c}.${s}=`,
    `${h}.${c}.${s.slice(0, 10)}+/${s.slice(12)}`, ` ${valid}`, `${valid}\n`, `"${valid}"`, '', '..', h
  ]) {
    await refuses(t, registering(proof), 'not a compact JWS of three base64url segments', JSON.stringify(proof.slice(0, 30)))
  }
  await refuses(t, () => verifyRegistrationProof(undefined as unknown as string), 'not a compact JWS of three base64url segments', 'not a string')
  await refuses(t, () => verifyRefreshProof(7 as unknown as string, verifyRegistrationProof(valid).key), 'not a compact JWS of three base64url segments', 'a refresh proof not a string')
})

t.test('verifyRefreshProof: signed by the session\'s key, with the alg of its type', async (t) => {
  const es256 = await joseSigner('ES256')
  const rs256 = await joseSigner('RS256')
  const ecKey = verifyRegistrationProof(await proofOf(es256)).key
  const rsaKey = verifyRegistrationProof(await proofOf(rs256, { keyIn: 'claims' })).key
  t.equal(verifyRefreshProof(await proofOf(es256, { keyIn: 'none', claims: { jti: 'c1' } }), ecKey), 'c1', 'ES256 with the EC key')
  t.equal(verifyRefreshProof(await proofOf(rs256, { keyIn: 'none', claims: { jti: 'c2' } }), rsaKey), 'c2', 'RS256 with the RSA key')
  const rsa4096 = await rsa4096Signer()
  t.equal(verifyRefreshProof(await proofOf(rsa4096, { keyIn: 'none' }), verifyRegistrationProof(await proofOf(rsa4096)).key), CHALLENGE, 'RS256 with an RSA-4096 key')

  const other = await joseSigner('ES256')
  t.equal(verifyRefreshProof(await proofOf(es256, { header: { jwk: other.jwk } }), ecKey), CHALLENGE, 'a header jwk is ignored: the session key verifies')
  await refuses(t, () => verifyRefreshProof(handBuilt({ alg: 'ES256', typ: 'dbsc+jwt' }, { jti: 'c' }, other.privateKey), ecKey), 'signature invalid', 'signed by another key')
  await refuses(t, async () => verifyRefreshProof(await proofOf(other, { header: { jwk: other.jwk } }), ecKey), 'signature invalid', 'another key, naming itself')
  await refuses(t, async () => verifyRefreshProof(await proofOf(rs256, { keyIn: 'none' }), ecKey), 'alg does not fit the session key', 'RS256 for an EC key')
  await refuses(t, async () => verifyRefreshProof(await proofOf(es256, { keyIn: 'none' }), rsaKey), 'alg does not fit the session key', 'ES256 for an RSA key')
  await refuses(t, async () => verifyRefreshProof(await proofOf(await joseSigner('PS256'), { keyIn: 'none' }), rsaKey), 'alg not allowed', 'PS256 for an RSA key')
  await refuses(t, async () => verifyRefreshProof(await proofOf(es256, { header: { typ: 'JWT' } }), ecKey), 'typ is not dbsc+jwt')
  await refuses(t, async () => verifyRefreshProof(await proofOf(es256, { claims: { jti: '' } }), ecKey), 'jti missing or invalid')
  await refuses(t, () => verifyRefreshProof(handBuilt({ alg: 'ES256', typ: 'dbsc+jwt' }, { jti: 'c' }, es256.privateKey, true), ecKey), 'ECDSA signature is not r||s', 'DER')
})

t.test('session identifiers: the session id and the key\'s RFC 7638 members, read back as they were', async (t) => {
  for (const signer of [await joseSigner('ES256'), await joseSigner('RS256'), await rsa4096Signer()]) {
    const key = verifyRegistrationProof(await proofOf(signer)).key
    const identifier = sessionIdentifier('Ab_-0123456789xyz', key)
    t.match(identifier, /^Ab_-0123456789xyz\.[A-Za-z0-9_-]+$/)
    t.equal(Buffer.from(identifier.split('.')[1] as string, 'base64url').toString(), JSON.stringify(key.members), 'the members\' JSON, base64url')
    const read = readSessionIdentifier(identifier)
    t.equal(read.sessionId, 'Ab_-0123456789xyz', `${signer.alg}: the session id`)
    t.equal(read.key.jkt, signer.jkt, `${signer.alg}: the key, by jose's thumbprint`)
    t.strictSame(read.key.members, key.members)
    t.ok(read.key.key.equals(key.key))
    t.equal(verifyRefreshProof(await proofOf(signer, { keyIn: 'none' }), read.key), CHALLENGE, 'a refresh proof verifies with the key read back')
  }
  const es256 = await joseSigner('ES256')
  const key = verifyRegistrationProof(await proofOf(es256)).key
  const members = encode(key.members)
  t.equal(readSessionIdentifier(`${'s'.repeat(128)}.${members}`).sessionId, 's'.repeat(128), 'a session id of 128 characters')
  t.equal(readSessionIdentifier(`s.${encode({ ...key.members, alg: 'ES256', kid: 'x' })}`).key.jkt, key.jkt, 'members beyond RFC 7638 ignored')
})

t.test('malformed session identifiers: not ours, or the key\'s own refusal', async (t) => {
  const es256 = await joseSigner('ES256')
  const key = verifyRegistrationProof(await proofOf(es256)).key
  const members = encode(key.members)
  const reading = (identifier: string) => () => readSessionIdentifier(identifier)
  const ed25519 = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' })
  const notOurs = [
    'nodot', `sid${members}`, 'sid.', `.${members}`, `sid.${members}.x`, `sid.${members}=`, `s+d.${members}`, ` sid.${members}`,
    `sid.${encode('{')}`, `sid.${encode('[]')}`, `sid.${encode('null')}`, `sid.${encode('"EC"')}`, 'sid.!!!!',
    `sid.${encode(ed25519 as Record<string, unknown>)}`, `sid.${encode({ kty: 'oct', k: 'AAAA' })}`, `sid.${encode({})}`,
    `${'s'.repeat(129)}.${members}`, `sid.${members}${'A'.repeat(1401 - members.length)}`, `sid.${'A'.repeat(100_000)}`
  ]
  for (const identifier of notOurs) {
    await refuses(t, reading(identifier), 'not a session identifier of ours', JSON.stringify(identifier.slice(0, 40)))
  }
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' })
  await refuses(t, reading(`sid.${encode(p384 as Record<string, unknown>)}`), 'jwk does not fit alg', 'an EC key on P-384')
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' })
  await refuses(t, reading(`sid.${encode(rsa1024 as Record<string, unknown>)}`), 'RSA key shorter than 2048 bits', 'an RSA-1024 key')
  await refuses(t, reading(`sid.${encode({ ...key.members, d: 'AAAA' })}`), 'jwk has a private member', 'a private member')
  await refuses(t, reading(`sid.${encode({ ...key.members, y: undefined })}`), 'jwk is not a valid public key', 'an EC key without y')
  await refuses(t, reading(`sid.${encode({ ...key.members, x: 'AAAA' })}`), 'jwk is not a valid public key', 'an EC point that is not one')
})

t.test('the key cache: more keys than it holds, each still verified as its own', async (t) => {
  const proofs: Array<[string, string]> = []
  for (let i = 0; i < 1010; i++) {
    const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    const jwk = createPublicKey(privateKey).export({ format: 'jwk' })
    proofs.push([handBuilt({ alg: 'ES256', typ: 'dbsc+jwt', jwk }, { jti: CHALLENGE }, privateKey), jwkThumbprint(jwk as Record<string, unknown>)])
  }
  let mismatches = 0
  for (const [proof, jkt] of proofs) if (verifyRegistrationProof(proof).key.jkt !== jkt) mismatches++
  t.equal(mismatches, 0)
  const [first, firstJkt] = proofs[0] as [string, string]
  t.equal(verifyRegistrationProof(first).key.jkt, firstJkt, 'a key from before the cache was emptied')
  const [h, c] = first.split('.') as [string, string]
  const [, , otherSignature] = (proofs[1] as [string, string])[0].split('.')
  await refuses(t, registering(`${h}.${c}.${otherSignature as string}`), 'signature invalid', 'a cached key still checks signatures')
})

t.test('jwkThumbprint: RFC 7638, and a TypeError for what has no thumbprint', async (t) => {
  // RFC 7638 §3.1's example key.
  t.equal(jwkThumbprint({
    kty: 'RSA',
    n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    e: 'AQAB',
    alg: 'RS256',
    kid: '2011-04-29'
  }), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs')
  for (const bad of [{ kty: 'oct', k: 'AAAA' }, { kty: 'EC', crv: 'P-256', x: 'AAAA' }, { kty: 'RSA', e: 'AQAB', n: 1 }, {}]) {
    t.throws(() => jwkThumbprint(bad), TypeError, JSON.stringify(bad))
  }
})

t.test('every refusal of proof.ts (and of the jws.ts checks it calls) was reached', async (t) => {
  t.strictSame([...reasons].sort(), [
    'ECDSA signature is not r||s', 'RSA key shorter than 2048 bits', 'RSA key too costly to verify', 'alg does not fit the session key',
    'alg not allowed', 'claims are not a JSON object', 'crit is not supported', 'header is not a JSON object', 'jti missing or invalid',
    'jwk and key name different keys', 'jwk does not fit alg', 'jwk has a private member', 'jwk is not a valid public key',
    'jwk missing or not an object', 'not a compact JWS of three base64url segments', 'not a session identifier of ours',
    'proof too long', 'signature invalid', 'typ is not dbsc+jwt'
  ].sort())
})

/** A field as a test message: JSON, with anything but printable ASCII escaped (a raw U+2028 would break TAP's lines). */
const show = (field: string): string =>
  JSON.stringify(field).replace(/[^\x20-\x7e]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`)

/** structured-headers' reading of a field as an Item: its String, or null for any other item or a parse failure. */
function theirs (field: string): string | null {
  try {
    const [value] = parseItem(field)
    return typeof value === 'string' ? value : null
  } catch {
    return null
  }
}

t.test('parseStringItem agrees with structured-headers (RFC 9651) on sf-string items', async (t) => {
  const agreed: Array<[string, string | null]> = [
    // Plain strings.
    ['"abc"', 'abc'], ['""', ''], ['"a b  c"', 'a b  c'], ['"eyJhbGciOiJFUzI1NiJ9.e30.c2ln"', 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln'],
    ['"~!#$%&\'()*+,-./:;<=>?@[]^_`{|}"', '~!#$%&\'()*+,-./:;<=>?@[]^_`{|}'],
    // Escapes: \" and \\ only.
    ['"a\\"b"', 'a"b'], ['"a\\\\b"', 'a\\b'], ['"\\""', '"'], ['"\\\\"', '\\'], ['"\\\\\\""', '\\"'],
    ['"a\\nb"', null], ['"a\\tb"', null], ['"\\a"', null], ['"a\\ "', null], ['"a\\', null], ['"a\\"', null], ['"\\"', null],
    // Non-ASCII and control characters.
    ['"é"', null], ['"\u2028"', null], ['"a\tb"', null], ['"a\u007fb"', null], ['"a\u0000"', null], ['"a\nb"', null], ['"\u001f"', null],
    // Quotes: missing, extra, doubled.
    ['"abc', null], ['abc"', null], ['"', null], ['"x""y"', null], ['"x" "y"', null], ['""""', null], ['"x"a', null],
    // Spaces before and after (SP only; tabs are not RFC 9651's item whitespace).
    ['  "abc"  ', 'abc'], [' "abc"', 'abc'], ['"abc" ', 'abc'], ['\t"abc"', null], ['"abc"\t', null], ['', null], [' ', null], ['   ', null],
    // Parameters: ignored, but they must be well formed.
    ['"x";id="y"', 'x'], ['"x";a;b=1', 'x'], ['"x";a="; ,"', 'x'], ['"x";a="\\"; ,\\\\"', 'x'], ['"x"; a', 'x'], ['"x"; a=1', 'x'],
    ['"x";a=b;a=c', 'x'], ['"x";*a=tok', 'x'], ['"x";a.b-c_d*=1', 'x'], ['"x";a*=*b', 'x'], ['"x";*', 'x'], ['"x";a=-1', 'x'],
    ['"x";a=1.5', 'x'], ['"x";a=?1', 'x'], ['"x";a=?0;b', 'x'], ['"x";a=:YQ==:', 'x'], ['"x";a=:YQ==:;b', 'x'], ['"x";a=@1', 'x'],
    ['"x";a=@-1', 'x'], ['"x";a=a/b:c', 'x'], ['"x";a=*', 'x'], ['"x";a;b;c', 'x'], ['"x";a=b  ', 'x'], ['"x";id="y"  ', 'x'],
    ['"x";', null], ['"x" ;a', null], ['"x";A', null], ['"x";aB=1', null], ['"x";1a', null], ['"x";a=', null], ['"x";a =1', null],
    ['"x";a= 1', null], ['"x";a=b"c', null], ['"x";a="y"z', null], ['"x";a="unterminated', null], ['"x";a="b";', null],
    ['"x";a="y"\t', null], ['"x";a="\\n"', null], ['"x";;a', null], ['"x";a=b,c', null],
    // Lists of items are not an item.
    ['"a", "b"', null], ['"a","b"', null], ['"x",', null], ['"x";a="b","c"', null], ['"x";a=b, "c"', null], ['("a" "b")', null],
    // Other items: not a String.
    ['abc', null], ['1', null], ['-1', null], ['1.5', null], ['?1', null], [':YQ==:', null], ['@1', null], ['%"x"', null], ['*tok', null],
    ['abc;a="x"', null], ['1;a="x"', null]
  ]
  for (const [field, expected] of agreed) {
    t.strictSame([parseStringItem(field), theirs(field)], [expected, expected], show(field))
  }

  // Deliberate difference: a parameter's value is only delimited (a quoted string, or a run of
  // anything but `;`, `,`, `"` and space), never parsed, since DBSC ignores parameters. So values
  // RFC 9651 would fail on (a malformed number, boolean or byte sequence, a non-ASCII or control
  // character, a token with characters no token has) are let through; the String is the same.
  const lenient = [
    '"x";a=1.2.3', '"x";a=1.2345', '"x";a=1234567890123456', '"x";a=1abc', '"x";a=-', '"x";a=?', '"x";a=?2', '"x";a=@',
    '"x";a=:!!:', '"x";a=:abc', '"x";a=é', '"x";a=)', '"x";a=(b)', '"x";a=\\', '"x";a=\u0000', '"x";a=b\t', '"x";a="é"', '"x";a="\u0001"'
  ]
  for (const field of lenient) {
    t.strictSame([parseStringItem(field), theirs(field)], ['x', null], `lenient on a parameter value: ${show(field)}`)
  }

  // Disagreement (reported, not deliberate): an RFC 9651 §3.3.8 Display String as a parameter's
  // value, `%"..."`, is a valid item structured-headers reads; its quote ends our delimiting, so
  // we refuse the field.
  for (const field of ['"x";a=%"x"', '"x";a=%"a b"', '"x";a=%"a;b"', '"x";a=tok;b=%"c"']) {
    t.strictSame([parseStringItem(field), theirs(field)], [null, 'x'], `a Display String parameter: ${show(field)}`)
  }

  // structured-headers 2.1.0 reads a Date to the end of the input, so refuses a Date parameter
  // followed by another (RFC 9651 §4.2.9 stops at the first non-digit): we are right there.
  t.strictSame([parseStringItem('"x";a=@1;b'), theirs('"x";a=@1;b')], ['x', null], 'a Date parameter, then another')
})

t.test('parseStringItem agrees with structured-headers on every character, bare and escaped', async (t) => {
  let disagreements = 0
  let strings = 0
  for (let code = 0; code < 0x180; code++) {
    const character = String.fromCharCode(code)
    for (const field of [`"${character}"`, `"\\${character}"`, `"a${character}b"`, `"x";${character}`, `"x";a=${character}`]) {
      const ours = parseStringItem(field)
      const their = theirs(field)
      if (ours !== null) strings++
      // The last shape, an unquoted parameter value, is the lenient case above: there we only never refuse what they read.
      if (field.startsWith('"x";a=') ? their !== null && ours !== their : ours !== their) {
        disagreements++
        t.fail(`disagree on ${show(field)}: ${String(ours)} against ${String(their)}`)
      }
    }
  }
  t.equal(disagreements, 0)
  t.ok(strings > 3 * 95, 'printable ASCII read as Strings')
})

t.test('parseStringItem, generated fields: never a String structured-headers refuses but on a parameter, never refuses one it reads', async (t) => {
  // Fields of the characters that matter to the grammar; Display Strings and Dates (the two
  // differences above) left out.
  const alphabet = fc.constantFrom('"', '\\', ';', ',', '=', ' ', '\t', 'a', 'b', 'z', '*', '1', '.', '-', ':', '?', '(', ')', 'é', 'Q')
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(alphabet, { maxLength: 24 }).map((characters) => characters.join('')), (field) => {
    const ours = parseStringItem(field)
    const their = theirs(field)
    if (their !== null && ours !== their) return false
    // What we read is always the String RFC 9651 reads from the same leading quoted part.
    if (ours !== null && !field.replace(/^ +/, '').startsWith(serializeString(ours))) return false
    return ours === null || theirs(serializeString(ours)) === ours
  }), { numRuns: 20_000 }), '20 000 generated fields agree')
})

t.test('serializeString round-trips through structured-headers, as its own serializer writes it', async (t) => {
  let printable = ''
  for (let code = 0x20; code < 0x7f; code++) printable += String.fromCharCode(code)
  for (const value of [
    '', 'abc', 'a"b', 'a\\b', '\\"', '"\\', '\\\\', '""', ' lead and trail ', printable, '/auth/dbsc/registration',
    '1800000600.AAAAAAAAAAAAAAAAAAAAAA', 'sid.eyJjcnYiOiJQLTI1NiJ9'
  ]) {
    const serialized = serializeString(value)
    t.equal(serialized, serializeItem([value, new Map()]), `${JSON.stringify(value)}: as structured-headers writes it`)
    t.strictSame(parseItem(serialized), [value, new Map()], `${JSON.stringify(value)}: structured-headers reads it back`)
    t.equal(parseStringItem(serialized), value, `${JSON.stringify(value)}: and so do we`)
    t.equal(parseStringItem(`${serialized};id=${serializeString(value)}`), value, 'with a parameter of the same')
  }
})

const NOW = 1_800_000_000_000
const EXPIRES = NOW + 600_000
const JKT = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs'

t.test('DbscMacs challenges: for one purpose, session and key, until they expire', async (t) => {
  const macs = new DbscMacs(REFRESH_SECRET)
  const challenge = macs.challenge('refresh', 'sid', JKT, EXPIRES)
  t.match(challenge, /^\d{10}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}$/)
  const [seconds, nonce] = challenge.split('.') as [string, string, string]
  const key = createHmac('sha256', REFRESH_SECRET).update('fastify-token-auth:dbsc-challenge').digest()
  const mac = createHmac('sha256', key).update(`refresh.sid.${JKT}.${seconds}.${nonce}`).digest().subarray(0, 16).toString('base64url')
  t.equal(challenge, `${EXPIRES / 1000}.${nonce}.${mac}`, 'the expiry in seconds, a nonce, and 16 bytes of an HMAC over both with a key of its own')
  t.not(macs.challenge('refresh', 'sid', JKT, EXPIRES), challenge, 'two challenges for the same things in the same second differ (their nonces)')
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'sid', JKT, NOW), EXPIRES, 'accepted: its expiry in ms')
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'sid', JKT, EXPIRES - 1), EXPIRES, 'a millisecond before expiry')
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'sid', JKT, EXPIRES), undefined, 'exactly at expiry: refused')
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'sid', JKT, EXPIRES + 1), undefined, 'after expiry')
  t.equal(macs.acceptsChallenge(challenge, 'registration', 'sid', JKT, NOW), undefined, 'another purpose')
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'sie', JKT, NOW), undefined, 'another session')
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'sid', `${JKT.slice(0, -1)}t`, NOW), undefined, 'another key')
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'sid', '', NOW), undefined, 'no key')

  const registration = macs.challenge('registration', 'sid', '', EXPIRES)
  t.equal(macs.acceptsChallenge(registration, 'registration', 'sid', '', NOW), EXPIRES, 'a registration challenge, before a key is known')
  t.equal(macs.acceptsChallenge(registration, 'refresh', 'sid', '', NOW), undefined, 'is no refresh challenge')

  const fractional = macs.challenge('refresh', 'sid', JKT, EXPIRES + 1)
  t.equal(fractional.split('.')[0], String(EXPIRES / 1000 + 1), 'an expiry within a second: rounded up')
  t.equal(macs.acceptsChallenge(fractional, 'refresh', 'sid', JKT, NOW), EXPIRES + 1000, 'and returned as whole seconds')

  const [expiry, , tag] = challenge.split('.') as [string, string, string]
  const flipped = `${tag.slice(0, 5)}${tag[5] === 'A' ? 'B' : 'A'}${tag.slice(6)}`
  t.equal(macs.acceptsChallenge(`${expiry}.${nonce}.${flipped}`, 'refresh', 'sid', JKT, NOW), undefined, 'a tampered mac')
  t.equal(macs.acceptsChallenge(`${Number(expiry) + 3600}.${nonce}.${tag}`, 'refresh', 'sid', JKT, NOW), undefined, 'a later expiry with the same mac')
  t.equal(macs.acceptsChallenge(`${expiry}.${nonce.slice(1)}A.${tag}`, 'refresh', 'sid', JKT, NOW), undefined, 'another nonce with the same mac')
  t.equal(macs.acceptsChallenge(`0${expiry}.${nonce}.${tag}`, 'refresh', 'sid', JKT, NOW), undefined, 'a leading zero: other text, so another mac')
  const thirteen = `${'1'.repeat(13)}.${nonce}.${tag}`
  for (const value of [
    '1.2', 'abc', '', '.', `${expiry}.`, `.${tag}`, `${expiry}.${tag}`, `${expiry}.${nonce}.${tag}A`, `${expiry}.${nonce}.${tag.slice(1)}`,
    `${expiry}.${nonce}.${tag}=`, `${expiry}.${nonce}.${tag.slice(0, 21)}+`, ` ${challenge}`, `${challenge} `, `${expiry},${nonce}.${tag}`,
    `-${expiry}.${nonce}.${tag}`, `${expiry}.5.${tag}`, thirteen
  ]) {
    t.equal(macs.acceptsChallenge(value, 'refresh', 'sid', JKT, NOW), undefined, `shape ${JSON.stringify(value)}`)
  }
  // The longest expiry read: 12 digits of seconds.
  const far = macs.challenge('refresh', 'sid', JKT, 999_999_999_999_000)
  t.equal(macs.acceptsChallenge(far, 'refresh', 'sid', JKT, NOW), 999_999_999_999_000, '12 digits')
  t.equal(macs.acceptsChallenge(macs.challenge('refresh', 'sid', JKT, 1_000_000_000_000_000), 'refresh', 'sid', JKT, NOW), undefined, '13 digits: never accepted')

  t.equal(new DbscMacs(Buffer.from(REFRESH_SECRET)).acceptsChallenge(challenge, 'refresh', 'sid', JKT, NOW), EXPIRES, 'a Buffer secret of the same bytes')
  t.equal(new DbscMacs(`${REFRESH_SECRET}x`).acceptsChallenge(challenge, 'refresh', 'sid', JKT, NOW), undefined, 'another secret')
  t.not(new DbscMacs(`${REFRESH_SECRET}x`).challenge('refresh', 'sid', JKT, EXPIRES), challenge)
})

t.test('DbscMacs device cookies: for one session and key, until they expire', async (t) => {
  const macs = new DbscMacs(REFRESH_SECRET)
  const cookie = macs.deviceCookie('sid', JKT, EXPIRES)
  t.match(cookie, /^\d{10}\.[A-Za-z0-9_-]{22}$/)
  const key = createHmac('sha256', REFRESH_SECRET).update('fastify-token-auth:dbsc-device-cookie').digest()
  t.equal(cookie, `${EXPIRES / 1000}.${createHmac('sha256', key).update(`sid.${JKT}.${EXPIRES / 1000}`).digest().subarray(0, 16).toString('base64url')}`)
  t.equal(macs.acceptsDeviceCookie(cookie, 'sid', JKT, NOW), true)
  t.equal(macs.acceptsDeviceCookie(cookie, 'sid', JKT, EXPIRES - 1), true, 'a millisecond before expiry')
  t.equal(macs.acceptsDeviceCookie(cookie, 'sid', JKT, EXPIRES), false, 'exactly at expiry')
  t.equal(macs.acceptsDeviceCookie(cookie, 'sid', JKT, EXPIRES + 1), false, 'after expiry')
  t.equal(macs.acceptsDeviceCookie(cookie, 'sie', JKT, NOW), false, 'another session')
  t.equal(macs.acceptsDeviceCookie(cookie, 'sid', `${JKT.slice(0, -1)}t`, NOW), false, 'another key')
  const [expiry, tag] = cookie.split('.') as [string, string]
  t.equal(macs.acceptsDeviceCookie(`${expiry}.${tag[0] === 'A' ? 'B' : 'A'}${tag.slice(1)}`, 'sid', JKT, NOW), false, 'a tampered mac')
  t.equal(macs.acceptsDeviceCookie(`${Number(expiry) + 1}.${tag}`, 'sid', JKT, NOW), false, 'a later expiry')
  for (const value of ['1.2', 'abc', '', `${'1'.repeat(13)}.${tag}`, `${cookie}x`]) {
    t.equal(macs.acceptsDeviceCookie(value, 'sid', JKT, NOW), false, `shape ${JSON.stringify(value)}`)
  }
  t.equal(new DbscMacs('another secret').acceptsDeviceCookie(cookie, 'sid', JKT, NOW), false, 'another secret')
})

t.test('challenges and device cookies never pass for each other: separate keys, even over the same text', async (t) => {
  const macs = new DbscMacs(REFRESH_SECRET)
  // Challenge ('refresh', 'a', 'b') and device cookie ('refresh', 'a.b') MAC the same text,
  // `refresh.a.b.<expiry>`: only the key tells them apart.
  const challenge = macs.challenge('refresh', 'a', 'b', EXPIRES)
  const cookie = macs.deviceCookie('refresh', 'a.b', EXPIRES)
  t.not(challenge, cookie)
  t.equal(macs.acceptsChallenge(challenge, 'refresh', 'a', 'b', NOW), EXPIRES)
  t.equal(macs.acceptsDeviceCookie(cookie, 'refresh', 'a.b', NOW), true)
  t.equal(macs.acceptsChallenge(cookie, 'refresh', 'a', 'b', NOW), undefined, 'a device cookie is no challenge')
  t.equal(macs.acceptsDeviceCookie(challenge, 'refresh', 'a.b', NOW), false, 'a challenge is no device cookie')
  const sid = 'sid'
  t.equal(macs.acceptsDeviceCookie(macs.challenge('refresh', sid, JKT, EXPIRES), sid, JKT, NOW), false, 'nor for the same session and key')
  t.equal(macs.acceptsChallenge(macs.deviceCookie(sid, JKT, EXPIRES), 'refresh', sid, JKT, NOW), undefined)
})
