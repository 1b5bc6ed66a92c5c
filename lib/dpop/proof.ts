import { createHash, hash } from 'node:crypto'
import { clientKey, splitCompact, verifiedClaims, verifierOf } from '../jws.js'

export { jwkThumbprint } from '../jws.js'

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
/** Bytes of SHA-256 kept in a replay key: 128 bits, 22 base64url characters. */
const REPLAY_KEY_BYTES = 16

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

/** The checks of RFC 9449 §4.3 but the replay check, in the order of docs/design.md; a DpopProofError names the first that failed. */
export function verifyProof (proof: string, expectations: ProofExpectations): VerifiedProof {
  // 1. and 2. The shape, then the header: typ, alg, and a public key that fits alg.
  const jws = splitCompact(proof, MAX_PROOF_LENGTH, refuse)
  if (jws.header.typ !== 'dpop+jwt') throw new DpopProofError('typ is not dpop+jwt')
  // An algorithm the app did not configure is refused like `none` and HMAC.
  const verifier = verifierOf(jws.header.alg, expectations.algorithms, refuse)
  const { jkt, key } = clientKey(jws.header.jwk, verifier, refuse)

  // 3. The signature.
  const claims = verifiedClaims(jws, verifier, key, refuse)

  // 4. The claims: jti, htm, htu, iat (§4.2; the window of §11.1).
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

/** DPoP's refusals of the checks ../jws.ts makes. */
function refuse (reason: string): DpopProofError {
  return new DpopProofError(reason)
}
