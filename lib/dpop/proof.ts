import { constants, createHash, createPublicKey, hash, type KeyObject, verify } from 'node:crypto'

/*
 * DPoP proofs (RFC 9449; docs/design.md, «Sender-constrained sessions (DPoP)»): the checks of
 * RFC 9449 §4.3 on the `DPoP` header's compact JWS, in the order the design lists them, with
 * node:crypto alone. What this module does not do: count the `DPoP` headers (the caller has the
 * raw headers), issue nonces (./nonce.ts) and the replay check (the store's `useOnce`, last, so a
 * proof refused here uses up nothing): it hands the caller the key that check records.
 */

/** `Ed25519` is RFC 9864's fully-specified name of EdDSA over Ed25519 (oauth4webapi signs with it); `EdDSA` the older one. */
export const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256', 'ES384'] as const
export type DpopAlgorithm = typeof DPOP_ALGORITHMS[number]
export const MAX_PROOF_LENGTH = 4096
/** Seconds a proof's iat may lie in the future beyond clockTolerance. */
export const FUTURE_SKEW_SECONDS = 5

/** Longest `jti` accepted: it only has to be unique per key (§4.2), and the replay key hashes it anyway. */
const MAX_JTI_LENGTH = 256
/** RFC 9449 §4.3 asks for an acceptable algorithm; RFC 7518 §3.3 asks for RSA keys of at least 2048 bits. */
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
/** Bytes of SHA-256 kept in a replay key: 128 bits, 22 base64url characters. */
const REPLAY_KEY_BYTES = 16
/** Three non-empty segments of the base64url alphabet, no padding (RFC 7515 §7.1). */
const COMPACT_JWS = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/
/** Members that make a JWK private (RFC 7518 §6.2.2, §6.3.2 and §6.4; `k` of a symmetric key): §4.3 refuses them. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']
/** RFC 7638 §3.2: the required members of each key type, in lexicographic order. */
const THUMBPRINT_MEMBERS = new Map<unknown, readonly string[]>([
  ['EC', ['crv', 'kty', 'x', 'y']],
  ['OKP', ['crv', 'kty', 'x']],
  ['RSA', ['e', 'kty', 'n']]
])

/**
 * What an algorithm needs of the key (`crv`: none for RSA, whose size is checked once imported)
 * and how its signature is checked: `digest` null for EdDSA (Ed25519 hashes internally),
 * `signatureBytes` the length of a JWS ECDSA signature, r‖s (RFC 7518 §3.4).
 */
interface Verifier {
  kty: string
  crv?: string
  digest: string | null
  signatureBytes?: number
  options?: { dsaEncoding?: 'ieee-p1363', padding?: number, saltLength?: number }
}

/** EdDSA is Ed25519 only (§4.3 leaves the choice to local policy). */
const VERIFIERS = new Map<unknown, Verifier>([
  ['ES256', { kty: 'EC', crv: 'P-256', digest: 'sha256', signatureBytes: 64, options: { dsaEncoding: 'ieee-p1363' } }],
  ['ES384', { kty: 'EC', crv: 'P-384', digest: 'sha384', signatureBytes: 96, options: { dsaEncoding: 'ieee-p1363' } }],
  ['EdDSA', { kty: 'OKP', crv: 'Ed25519', digest: null }],
  ['Ed25519', { kty: 'OKP', crv: 'Ed25519', digest: null }],
  ['RS256', { kty: 'RSA', digest: 'sha256' }],
  // RFC 7518 §3.5: the PSS salt is as long as the hash.
  ['PS256', { kty: 'RSA', digest: 'sha256', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } }]
])

const keys = new Map<string, KeyObject>()

/**
 * Why a proof was refused. `reason` is a short English phrase naming the failed check (safe to
 * show a client: never echoes key material or the proof). `nonce` is true when the proof was
 * refused for its nonce alone (missing or not current): every check before the nonce passed
 * (the design's order puts only the `ath` check after it), so a client that signs again with the
 * server's nonce may succeed (RFC 9449 §8, `use_dpop_nonce`).
 */
export class DpopProofError extends Error {
  readonly reason: string
  readonly nonce: boolean

  constructor (reason: string, nonce = false) {
    super(`Invalid DPoP proof: ${reason}`)
    this.name = 'DpopProofError'
    this.reason = reason
    this.nonce = nonce
  }
}

export interface ProofExpectations {
  method: string // the request's method, e.g. 'POST'
  url: string // the request's absolute URL `${protocol}://${host}${url}`; its query and fragment are ignored
  now: number // ms since epoch
  lifetime: number // seconds: iat at most this far in the past (dpopProofLifetime)
  clockTolerance: number // seconds, added to FUTURE_SKEW_SECONDS for an iat in the future
  algorithms: readonly DpopAlgorithm[]
  /** When present, the proof must carry ath = base64url(SHA-256(accessToken)). */
  accessToken?: string
  /** When present, a string `nonce` claim accepted by it is required (a DpopProofError with `nonce: true` otherwise). */
  acceptsNonce?: (nonce: string) => boolean
}

export interface VerifiedProof {
  /** RFC 7638 thumbprint of the proof's jwk, base64url SHA-256 (43 characters). */
  jkt: string
  jti: string
  /**
   * ms since epoch after which this proof can no longer pass the iat check with this `lifetime`:
   * `ceil((iat + lifetime) * 1000)`, plus one second so instances whose clocks differ by less
   * than that cannot accept it once its replay record is gone. Clocks further apart need a
   * store that keeps records longer.
   */
  expiresAt: number
  /** What the replay cache records: 22 base64url characters (the first 128 bits of SHA-256 over `${jkt}.${jti}`), whatever the client put in jti. */
  replayKey: string
}

type Json = Record<string, unknown>

/** The checks of RFC 9449 §4.3 but the replay check, in the order of docs/design.md; a DpopProofError names the first that failed. */
export function verifyProof (proof: string, expectations: ProofExpectations): VerifiedProof {
  // 1. Bounded before anything is decoded: the header is the client's, of any length.
  if (typeof proof !== 'string') throw new DpopProofError('not a compact JWS of three base64url segments')
  if (proof.length > MAX_PROOF_LENGTH) throw new DpopProofError('proof too long')
  const segments = COMPACT_JWS.exec(proof)
  if (segments === null) throw new DpopProofError('not a compact JWS of three base64url segments')
  const [, encodedHeader, encodedClaims, encodedSignature] = segments as unknown as [string, string, string, string]

  // 2. The header: typ, alg, and a public key that fits alg.
  const header = jsonObject(encodedHeader)
  if (header === null) throw new DpopProofError('header is not a JSON object')
  if (header.typ !== 'dpop+jwt') throw new DpopProofError('typ is not dpop+jwt')
  // RFC 7515 §4.1.11: an extension we would have to understand; we understand none.
  if ('crit' in header) throw new DpopProofError('crit is not supported')
  const verifier = VERIFIERS.get(header.alg)
  // `none` and HMAC have no verifier; an algorithm the app did not configure is refused alike.
  if (verifier === undefined || !(expectations.algorithms as readonly unknown[]).includes(header.alg)) {
    throw new DpopProofError('alg not allowed')
  }
  const jwk = header.jwk
  if (!isObject(jwk)) throw new DpopProofError('jwk missing or not an object')
  if (PRIVATE_MEMBERS.some((member) => Object.hasOwn(jwk, member))) throw new DpopProofError('jwk has a private member')
  if (jwk.kty !== verifier.kty || jwk.crv !== verifier.crv) throw new DpopProofError('jwk does not fit alg')
  const members = thumbprintMembers(jwk)
  if (members === null) throw new DpopProofError('jwk is not a valid public key')
  const jkt = thumbprintOf(members)
  const key = publicKey(members, jkt)

  // 3. The signature. ECDSA in its JWS form only (r‖s of the curve's length): node would read a
  // DER signature as well, which RFC 7518 §3.4 does not allow. High and low S verify alike.
  const signature = Buffer.from(encodedSignature, 'base64url')
  if (verifier.signatureBytes !== undefined && signature.length !== verifier.signatureBytes) {
    throw new DpopProofError('ECDSA signature is not r||s')
  }
  const signed = Buffer.from(`${encodedHeader}.${encodedClaims}`)
  if (!verify(verifier.digest, signed, { key, ...verifier.options }, signature)) throw new DpopProofError('signature invalid')

  // 4. The claims: jti, htm, htu, iat (§4.2; the window of §11.1).
  const claims = jsonObject(encodedClaims)
  if (claims === null) throw new DpopProofError('claims are not a JSON object')
  const jti = claims.jti
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) throw new DpopProofError('jti missing or invalid')
  if (claims.htm !== expectations.method) throw new DpopProofError('htm does not match')
  const htu = typeof claims.htu === 'string' ? normalisedHtu(claims.htu) : null
  // null: the claim is no http(s) URL. A request URL that does not parse (null) matches no htu.
  if (htu === null || htu !== normalisedHtu(expectations.url)) throw new DpopProofError('htu does not match')
  const iat = claims.iat
  // JSON can spell Infinity (1e400): not a time.
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new DpopProofError('iat missing or invalid')
  const now = expectations.now / 1000
  if (iat < now - expectations.lifetime) throw new DpopProofError('iat too old')
  if (iat > now + FUTURE_SKEW_SECONDS + expectations.clockTolerance) throw new DpopProofError('iat in the future')

  // 5. The nonce (§8): the one refusal a client can cure by signing again.
  if (expectations.acceptsNonce !== undefined) {
    if (typeof claims.nonce !== 'string') throw new DpopProofError('nonce missing', true)
    if (!expectations.acceptsNonce(claims.nonce)) throw new DpopProofError('nonce not current', true)
  }

  // 6. ath (§4.3, §7): a plain comparison, not a constant-time one. The expected value hashes
  // the token this very request sent, which the client can hash itself: timing tells it nothing.
  if (expectations.accessToken !== undefined) {
    if (typeof claims.ath !== 'string') throw new DpopProofError('ath missing')
    if (claims.ath !== accessTokenHash(expectations.accessToken)) throw new DpopProofError('ath does not match')
  }

  return {
    jkt,
    jti,
    expiresAt: Math.ceil((iat + expectations.lifetime) * 1000) + 1000,
    replayKey: createHash('sha256').update(`${jkt}.${jti}`).digest().toString('base64url', 0, REPLAY_KEY_BYTES)
  }
}

/** RFC 7638 thumbprint (SHA-256, base64url) of an EC, OKP or RSA public key; a TypeError for any other JWK. */
export function jwkThumbprint (jwk: Record<string, unknown>): string {
  const members = thumbprintMembers(jwk)
  if (members === null) throw new TypeError('fastify-token-auth: a JWK thumbprint needs an EC, OKP or RSA key with its required members as strings')
  return thumbprintOf(members)
}

/** The `ath` of an access token (RFC 9449 §4.2): base64url SHA-256 of its ASCII text. */
export function accessTokenHash (accessToken: string): string {
  return hash('sha256', accessToken, 'base64url')
}

/**
 * An http(s) URL without query and fragment, as the WHATWG URL parser spells it (scheme and host
 * lower case, default port dropped, percent-encoding as the parser leaves or adds it; RFC 9449
 * §4.3 asks for syntax-based normalisation); null for anything else.
 */
export function normalisedHtu (url: string): string | null {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return null
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return null
  parsed.search = ''
  parsed.hash = ''
  return parsed.href
}

/** RFC 7638 §3.2's members of a key, in its order, all strings; null for another key type or a missing member. */
function thumbprintMembers (jwk: Record<string, unknown>): Record<string, string> | null {
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
function publicKey (members: Record<string, string>, jkt: string): KeyObject {
  const cached = keys.get(jkt)
  if (cached !== undefined) return cached
  let key: KeyObject
  try {
    key = createPublicKey({ key: members, format: 'jwk' })
  } catch {
    throw new DpopProofError('jwk is not a valid public key')
  }
  // Checked before caching, so every cached RSA key is within bounds.
  if (members.kty === 'RSA') {
    const { modulusLength, publicExponent } = key.asymmetricKeyDetails as { modulusLength: number, publicExponent: bigint }
    if (modulusLength < MIN_RSA_BITS) throw new DpopProofError('RSA key shorter than 2048 bits')
    if (modulusLength > MAX_RSA_BITS || publicExponent > MAX_RSA_EXPONENT) throw new DpopProofError('RSA key too costly to verify')
  }
  if (keys.size >= KEY_CACHE_SIZE) keys.clear()
  keys.set(jkt, key)
  return key
}

/** A segment's JSON, if it is an object (not an array, not null); null for anything else. */
function jsonObject (segment: string): Json | null {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString())
  } catch {
    return null
  }
  return isObject(value) ? value : null
}

function isObject (value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
