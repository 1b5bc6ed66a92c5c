import { InvalidDbscProofError } from '../errors.js'
import { type ClientKey, clientKey, jsonObject, splitCompact, verifiedClaims, verifierOf, type Verifier, VERIFIERS } from '../jws.js'

/*
 * DBSC proofs (W3C Device Bound Session Credentials, «DBSC Proof JWT Syntax»; docs/design.md,
 * «Device Bound Session Credentials (DBSC)»): the `Secure-Session-Response` JWT a browser signs
 * with its session key. At registration it carries the public key; at a refresh it does not, and
 * is verified with the key registered. Its `jti` is a challenge of ours, which the caller checks
 * and spends. The shared JWS checks are ../jws.ts.
 */

/** The algorithms the draft names, but `none`, which would bind nothing. */
export const DBSC_ALGORITHMS = ['ES256', 'RS256'] as const
/** A registration proof holds the key: an RSA-4096 key and signature fit in well under this. */
const MAX_PROOF_LENGTH = 4096
/** Our challenges are 33 characters; anything much longer is not one. */
const MAX_CHALLENGE_LENGTH = 128
/** A session identifier: our session id, a dot, the key's RFC 7638 members as base64url JSON. */
const SESSION_IDENTIFIER = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{1,1400})$/

/**
 * Why a DBSC proof or session identifier was refused: `reason`, a short phrase naming the check,
 * safe to show a client. It is the routes' coded 400 itself (`FST_TOKEN_AUTH_INVALID_DBSC_PROOF`).
 */
export class DbscProofError extends InvalidDbscProofError {
  readonly reason: string

  constructor (reason: string) {
    super(reason)
    this.name = 'DbscProofError'
    this.reason = reason
  }
}

/** A registration proof's key, and the challenge it signed. */
export interface VerifiedRegistration {
  key: ClientKey
  challenge: string
}

/**
 * A registration proof: `typ` `dbsc+jwt`, ES256 or RS256, the public key in the header's `jwk`
 * (the draft) or the claims' `key` (what Chromium first shipped; both must then be one key), the
 * signature by that key, and a `jti`.
 */
export function verifyRegistrationProof (proof: string): VerifiedRegistration {
  const { jws, verifier } = header(proof)
  const inHeader = Object.hasOwn(jws.header, 'jwk')
  const inClaims = jsonObject(jws.encodedClaims)?.key
  const key = clientKey(inHeader ? jws.header.jwk : inClaims, verifier, refuse)
  // Both places: the same public key, each checked as a key (no private member in either).
  if (inHeader && inClaims !== undefined && clientKey(inClaims, verifier, refuse).jkt !== key.jkt) {
    throw refuse('jwk and key name different keys')
  }
  return { key, challenge: challengeOf(verifiedClaims(jws, verifier, key.key, refuse)) }
}

/** A refresh proof of the session key `key`: `typ`, an `alg` that fits the key, the signature; resolves with its challenge. */
export function verifyRefreshProof (proof: string, key: ClientKey): string {
  const { jws, verifier } = header(proof)
  if (verifier.kty !== key.members.kty) throw refuse('alg does not fit the session key')
  return challengeOf(verifiedClaims(jws, verifier, key.key, refuse))
}

/** The session identifier we hand a browser for a session and its key: the refresh endpoint reads the key back from it. */
export function sessionIdentifier (sessionId: string, key: ClientKey): string {
  return `${sessionId}.${Buffer.from(JSON.stringify(key.members)).toString('base64url')}`
}

/** The session id and key a `Sec-Secure-Session-Id` names; the caller checks that the key is the session's (its thumbprint). */
export function readSessionIdentifier (identifier: string): { sessionId: string, key: ClientKey } {
  const parts = SESSION_IDENTIFIER.exec(identifier)
  const members = parts === null ? null : jsonObject(parts[2] as string)
  const verifier = members === null ? undefined : verifierOfKey(members)
  if (parts === null || members === null || verifier === undefined) throw new DbscProofError('not a session identifier of ours')
  return { sessionId: parts[1] as string, key: clientKey(members, verifier, refuse) }
}

function header (proof: string): { jws: ReturnType<typeof splitCompact>, verifier: Verifier } {
  const jws = splitCompact(proof, MAX_PROOF_LENGTH, refuse)
  if (jws.header.typ !== 'dbsc+jwt') throw refuse('typ is not dbsc+jwt')
  return { jws, verifier: verifierOf(jws.header.alg, DBSC_ALGORITHMS, refuse) }
}

function challengeOf (claims: Record<string, unknown>): string {
  const jti = claims.jti
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_CHALLENGE_LENGTH) throw refuse('jti missing or invalid')
  return jti
}

/** The verifier a session key's type calls for: P-256 keys sign ES256, RSA keys RS256. */
function verifierOfKey (members: Record<string, unknown>): Verifier | undefined {
  if (members.kty === 'EC') return VERIFIERS.get('ES256')
  return members.kty === 'RSA' ? VERIFIERS.get('RS256') : undefined
}

function refuse (reason: string): DbscProofError {
  return new DbscProofError(reason)
}
