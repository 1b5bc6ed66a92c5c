import { constants, createPublicKey, hash, type KeyObject, verify } from 'node:crypto'

/*
 * Compact JWS signed by a client's own public key: what a DPoP proof (RFC 9449, ./dpop/proof.ts)
 * and a DBSC proof (W3C DBSC, ./dbsc/proof.ts) have in common. The shape of the text, the public
 * JWK and what verifying it may cost, its RFC 7638 thumbprint, and the signature, with node:crypto
 * alone. Each caller checks its own `typ` and claims, and refuses with its own error: a check
 * here fails through the `Refuse` it is given, with a short phrase safe to show a client.
 */

/** Builds the caller's error from the phrase naming the failed check. */
export type Refuse = (reason: string) => Error

type Json = Record<string, unknown>

/** Three non-empty segments of the base64url alphabet, no padding (RFC 7515 §7.1). */
const COMPACT_JWS = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/
/** Members that make a JWK private (RFC 7518 §6.2.2, §6.3.2 and §6.4; `k` of a symmetric key). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']
/** RFC 7638 §3.2: the required members of each key type, in lexicographic order. */
const THUMBPRINT_MEMBERS = new Map<unknown, readonly string[]>([
  ['EC', ['crv', 'kty', 'x', 'y']],
  ['OKP', ['crv', 'kty', 'x']],
  ['RSA', ['e', 'kty', 'n']]
])
/** RFC 7518 §3.3 asks for RSA keys of at least 2048 bits. */
const MIN_RSA_BITS = 2048
/**
 * A client chooses its key, so it chooses what a verification costs us: an RSA verification grows
 * with the modulus and with the public exponent, and OpenSSL bounds the exponent only above 3072
 * bits. So no modulus beyond 4096 bits and no exponent beyond 32 bits (65537 is the usual one):
 * a proof costs no more than an honest one would.
 */
const MAX_RSA_BITS = 4096
const MAX_RSA_EXPONENT = 2n ** 32n
/** Imported keys kept, by thumbprint; the map is emptied when full (no LRU bookkeeping on the hot path). */
const KEY_CACHE_SIZE = 1000

/**
 * What an algorithm needs of the key (`crv`: none for RSA, whose size is checked once imported)
 * and how its signature is checked: `digest` null for EdDSA (Ed25519 hashes internally),
 * `signatureBytes` the length of a JWS ECDSA signature, r‖s (RFC 7518 §3.4).
 */
export interface Verifier {
  kty: string
  crv?: string
  digest: string | null
  signatureBytes?: number
  options?: { dsaEncoding?: 'ieee-p1363', padding?: number, saltLength?: number }
}

/** The asymmetric JWS algorithms either proof may use (each caller allows its own subset); EdDSA is Ed25519 only. */
export const VERIFIERS = new Map<unknown, Verifier>([
  ['ES256', { kty: 'EC', crv: 'P-256', digest: 'sha256', signatureBytes: 64, options: { dsaEncoding: 'ieee-p1363' } }],
  ['ES384', { kty: 'EC', crv: 'P-384', digest: 'sha384', signatureBytes: 96, options: { dsaEncoding: 'ieee-p1363' } }],
  ['EdDSA', { kty: 'OKP', crv: 'Ed25519', digest: null }],
  ['Ed25519', { kty: 'OKP', crv: 'Ed25519', digest: null }],
  ['RS256', { kty: 'RSA', digest: 'sha256' }],
  // RFC 7518 §3.5: the PSS salt is as long as the hash.
  ['PS256', { kty: 'RSA', digest: 'sha256', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } }]
])

const keys = new Map<string, KeyObject>()

/** A compact JWS taken apart: its decoded header, and the encoded segments the signature covers. */
export interface CompactJws {
  header: Json
  encodedHeader: string
  encodedClaims: string
  signature: Buffer
}

/** A client's public key: its RFC 7638 members, thumbprint and imported key. */
export interface ClientKey {
  members: Record<string, string>
  jkt: string
  key: KeyObject
}

/** The segments of `text` and its header, a JSON object. Bounded before anything is decoded: the text is the client's. */
export function splitCompact (text: unknown, maxLength: number, refuse: Refuse): CompactJws {
  if (typeof text !== 'string') throw refuse('not a compact JWS of three base64url segments')
  if (text.length > maxLength) throw refuse('proof too long')
  const segments = COMPACT_JWS.exec(text)
  if (segments === null) throw refuse('not a compact JWS of three base64url segments')
  const [, encodedHeader, encodedClaims, encodedSignature] = segments as unknown as [string, string, string, string]
  const header = jsonObject(encodedHeader)
  if (header === null) throw refuse('header is not a JSON object')
  // RFC 7515 §4.1.11: an extension we would have to understand; we understand none.
  if ('crit' in header) throw refuse('crit is not supported')
  return { header, encodedHeader, encodedClaims, signature: Buffer.from(encodedSignature, 'base64url') }
}

/** The verifier of the header's `alg` if `allowed` has it (`none` and HMAC never have one). */
export function verifierOf (alg: unknown, allowed: readonly string[], refuse: Refuse): Verifier {
  const verifier = VERIFIERS.get(alg)
  if (verifier === undefined || !allowed.includes(alg as string)) throw refuse('alg not allowed')
  return verifier
}

/** The public key a JWK describes, if it fits the verifier's key type and has no private member. */
export function clientKey (jwk: unknown, verifier: Verifier, refuse: Refuse): ClientKey {
  if (!isObject(jwk)) throw refuse('jwk missing or not an object')
  if (PRIVATE_MEMBERS.some((member) => Object.hasOwn(jwk, member))) throw refuse('jwk has a private member')
  if (jwk.kty !== verifier.kty || jwk.crv !== verifier.crv) throw refuse('jwk does not fit alg')
  const members = thumbprintMembers(jwk)
  if (members === null) throw refuse('jwk is not a valid public key')
  const jkt = thumbprintOf(members)
  return { members, jkt, key: publicKey(members, jkt, refuse) }
}

/**
 * Verifies the signature and returns the claims, a JSON object. ECDSA in its JWS form only (r‖s
 * of the curve's length): node would read a DER signature as well, which RFC 7518 §3.4 does not
 * allow. High and low S verify alike.
 */
export function verifiedClaims (jws: CompactJws, verifier: Verifier, key: KeyObject, refuse: Refuse): Json {
  if (verifier.signatureBytes !== undefined && jws.signature.length !== verifier.signatureBytes) throw refuse('ECDSA signature is not r||s')
  const signed = Buffer.from(`${jws.encodedHeader}.${jws.encodedClaims}`)
  if (!verify(verifier.digest, signed, { key, ...verifier.options }, jws.signature)) throw refuse('signature invalid')
  const claims = jsonObject(jws.encodedClaims)
  if (claims === null) throw refuse('claims are not a JSON object')
  return claims
}

/** RFC 7638 thumbprint (SHA-256, base64url) of an EC, OKP or RSA public key; a TypeError for any other JWK. */
export function jwkThumbprint (jwk: Record<string, unknown>): string {
  const members = thumbprintMembers(jwk)
  if (members === null) throw new TypeError('fastify-token-auth: a JWK thumbprint needs an EC, OKP or RSA key with its required members as strings')
  return thumbprintOf(members)
}

/** RFC 7638 §3.2's members of a key, in its order, all strings; null for another key type or a missing member. */
export function thumbprintMembers (jwk: Record<string, unknown>): Record<string, string> | null {
  const names = THUMBPRINT_MEMBERS.get(jwk.kty)
  if (names === undefined) return null
  const members: Record<string, string> = {}
  for (const name of names) {
    const value = jwk[name]
    if (typeof value !== 'string') return null
    members[name] = value
  }
  return members
}

/** The members as RFC 7638 §3.3 hashes them: JSON without whitespace, in the order given. */
function thumbprintOf (members: Record<string, string>): string {
  return hash('sha256', JSON.stringify(members), 'base64url')
}

/**
 * The key the members describe. It is imported from those members alone, so the thumbprint,
 * which hashes exactly them, names one key and can key the cache: a client cannot get another
 * key's object out of it.
 */
function publicKey (members: Record<string, string>, jkt: string, refuse: Refuse): KeyObject {
  const cached = keys.get(jkt)
  if (cached !== undefined) return cached
  let key: KeyObject
  try {
    key = createPublicKey({ key: members, format: 'jwk' })
  } catch {
    throw refuse('jwk is not a valid public key')
  }
  // Checked before caching, so every cached RSA key is within bounds.
  if (members.kty === 'RSA') {
    const { modulusLength, publicExponent } = key.asymmetricKeyDetails as { modulusLength: number, publicExponent: bigint }
    if (modulusLength < MIN_RSA_BITS) throw refuse('RSA key shorter than 2048 bits')
    if (modulusLength > MAX_RSA_BITS || publicExponent > MAX_RSA_EXPONENT) throw refuse('RSA key too costly to verify')
  }
  if (keys.size >= KEY_CACHE_SIZE) keys.clear()
  keys.set(jkt, key)
  return key
}

/** A segment's JSON, if it is an object (not an array, not null); null for anything else. */
export function jsonObject (segment: string): Json | null {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString())
  } catch {
    return null
  }
  return isObject(value) ? value : null
}

export function isObject (value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
