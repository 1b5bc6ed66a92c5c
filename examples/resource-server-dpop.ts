import type { FastifyReply, FastifyRequest } from 'fastify'
import { DPOP_ALGORITHMS, DpopProofError, errors, MemoryStore, verifyDpopProof } from '../lib/index.js'

/**
 * DPoP-bound access tokens (RFC 9449 §7) at the resource server of ./resource-server.ts, checked
 * the way the plugin's `authenticate` checks them (docs/design.md, «Sender-constrained sessions
 * (DPoP)»): a token whose payload has `cnf.jkt` (the auth server issues one to a client that
 * logged in with a proof) is accepted only as `Authorization: DPoP <token>` with a `DPoP` proof
 * for this very request (method, URL, `ath`) signed by the key `cnf.jkt` names, used once; the
 * same token as `Bearer` is refused, so a copy of it is useless without the private key. A token
 * without `cnf` stays a `Bearer` token, and never a `DPoP` one.
 *
 * What it leaves out: nonces (§8). The auth server's are an HMAC under its refresh-token secret,
 * which this service must not have; proofs here are bounded by their `iat` window instead.
 */

/** Seconds a proof's `iat` may lie in the past: the plugin's `dpopProofLifetime` default. */
const PROOF_LIFETIME = 60
/** Seconds of clock difference allowed beyond the verifier's own 5 (the plugin's `clockTolerance` default). */
const CLOCK_TOLERANCE = 0
/**
 * Proofs remembered at most (22 characters and a number each: a few MB). When full, the oldest
 * goes, as in the plugin's MemoryStore (lib/stores/memory/proof-ids.ts says why that beats
 * refusing new proofs: anyone can sign proofs with a key of their own).
 */
const MAX_PROOFS = 100_000
const ALGS = `algs="${DPOP_ALGORITHMS.join(' ')}"`

/** §7.1: the challenge to a request without credentials offers both schemes. */
export const DPOP_CHALLENGE = `Bearer, DPoP ${ALGS}`

/** A refusal's challenge in the DPoP scheme: `DPoP error="…", error_description="…", algs="…"`. */
export function dpopChallenge (error: string, description?: string): string {
  return `DPoP error="${error}", ${description === undefined ? '' : `error_description="${description}", `}${ALGS}`
}

export type Scheme = 'Bearer' | 'DPoP'

/**
 * Whether an access token, already verified (signature, issuer, type, claims), may be used with
 * the scheme it came with and the request's proof; refuses with the plugin's codes and
 * challenges (docs/design.md, «The `authenticate` hook»), all 401s. The token is checked before
 * this runs, so a bad token costs no proof verification.
 */
export function createDpopCheck (now: () => number = Date.now) {
  // The proofs seen, each until it could no longer pass the `iat` check: the plugin's MemoryStore
  // serves as this service's replay cache (`useOnce`, bounded, the oldest going first when full).
  // One process only: several instances of this service would each have their own, so a proof
  // captured on its way to one could be replayed to another. They need one shared cache whose
  // check-and-record is one atomic step: the RedisStore's `useOnce` (`SET NX PX`), whichever
  // instance asks first; a read followed by a write would let two instances accept the same proof.
  const proofs = new MemoryStore({ maxProofIds: MAX_PROOFS })
  return async function checkBinding (request: FastifyRequest, reply: FastifyReply, scheme: Scheme, token: string): Promise<void> {
    const cnf = (request.user as { cnf?: { jkt?: unknown } }).cnf
    const jkt = cnf?.jkt
    if (scheme === 'Bearer') {
      // Any `cnf` (only the auth server signs one) is a binding we cannot check on a Bearer token.
      if (cnf === undefined) return
      reply.header('www-authenticate', dpopChallenge('invalid_token', 'this token is bound to a key: send it with the DPoP scheme and a proof'))
      throw new errors.InvalidTokenError()
    }
    if (typeof jkt !== 'string') {
      reply.header('www-authenticate', dpopChallenge('invalid_token', 'this token is not bound to a key: send it as Bearer'))
      throw new errors.InvalidTokenError()
    }
    const reason = await refusal(request, token, jkt, proofs, now())
    if (reason === undefined) return
    reply.header('www-authenticate', dpopChallenge('invalid_dpop_proof', reason))
    // Its status is the token endpoint's 400 (§5); a resource server answers 401 (§7.1).
    throw Object.assign(new errors.InvalidDpopProofError(reason), { statusCode: 401 })
  }
}

/** Why the request's proof does not do for a token bound to `jkt`; undefined when it does (and it is now used up). */
async function refusal (request: FastifyRequest, token: string, jkt: string, proofs: MemoryStore, now: number): Promise<string | undefined> {
  const header = request.headers.dpop
  if (header === undefined) return 'a DPoP proof is required'
  // Node joins a repeated unknown header into one value: only the raw headers tell (check 1).
  if (typeof header !== 'string' || sentTwice(request, 'dpop')) return 'more than one DPoP header'
  let proof
  try {
    proof = verifyDpopProof(header, {
      method: request.method,
      // Scheme and host as this service sees them: behind a proxy, its own only with `trustProxy`.
      url: `${request.protocol}://${request.host}${request.url}`,
      now,
      lifetime: PROOF_LIFETIME,
      clockTolerance: CLOCK_TOLERANCE,
      algorithms: DPOP_ALGORITHMS,
      accessToken: token
    })
  } catch (error) {
    if (error instanceof DpopProofError) return error.reason
    throw error
  }
  if (proof.jkt !== jkt) return 'the proof is not signed with the key this token is bound to'
  // Last, so a proof refused for another reason uses up nothing.
  if (!await proofs.useOnce(proof.replayKey, proof.expiresAt, now)) return 'this proof has been used before'
  return undefined
}

/** Whether the header `name` (lower case) came more than once: Node joins or drops repeats, depending on the header. */
export function sentTwice (request: FastifyRequest, name: string): boolean {
  const raw = request.raw.rawHeaders
  let seen = 0
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === name && ++seen > 1) return true
  }
  return false
}
