import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import {
  ClaimsChangedError, InvalidDpopProofError, InvalidTokenError, MalformedAuthorizationError, MissingTokenError, UseDpopNonceError
} from '../errors.js'
import { isMalformedToken, singleAuthorization } from '../single-header.js'
import type { SessionService } from '../sessions.js'
import { DpopProofError } from './proof.js'
import type { DpopProofs } from './requests.js'

type Scheme = 'Bearer' | 'DPoP'

/**
 * `authenticate` with DPoP on (docs/design.md, «Sender-constrained sessions (DPoP)»; RFC 9449
 * §7): a token bound to a key (`cnf.jkt`) only as `Authorization: DPoP <token>`, with a proof of
 * that key for this very request (method, URL, `ath`); an unbound token only as `Bearer`, and not
 * at all in `'required'` mode. The token is checked first (a cached verification), the proof
 * after (a signature and a store call), so a bad token costs the store nothing.
 */
export function createDpopAuthenticate (sessions: SessionService, dpop: DpopProofs): onRequestAsyncHookHandler {
  const algs = `algs="${dpop.algorithms}"`
  const bearerAccepted = dpop.mode === 'optional'
  // §7.1: both schemes are offered where both are accepted; a refused token is answered in the
  // scheme it came in (RFC 6750 §3 for Bearer), unless only DPoP is accepted.
  const challenge = (error?: string, description?: string, scheme: Scheme = 'DPoP'): string => {
    if (error === undefined) return bearerAccepted ? `Bearer, DPoP ${algs}` : `DPoP ${algs}`
    const params = `error="${error}"${description === undefined ? '' : `, error_description="${description}"`}`
    return scheme === 'Bearer' && bearerAccepted ? `Bearer ${params}` : `DPoP ${params}, ${algs}`
  }
  return async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const presented = credentials(request, reply, challenge)
    let claims: FastifyRequest['user']
    try {
      claims = sessions.verifyAccessToken(presented.token)
    } catch (error) {
      reply.header('www-authenticate', error instanceof ClaimsChangedError
        ? challenge('invalid_token', 'the claims of this token have changed; refresh it', presented.scheme)
        : challenge('invalid_token', undefined, presented.scheme))
      throw error
    }
    const jkt = boundKey(claims)
    if (presented.scheme === 'Bearer') {
      if (jkt !== undefined || !bearerAccepted) {
        reply.header('www-authenticate', challenge('invalid_token', jkt === undefined
          ? 'bearer tokens are not accepted: sign in with DPoP'
          : 'this token is bound to a key: send it with the DPoP scheme and a proof'))
        throw new InvalidTokenError()
      }
      request.user = claims
      return
    }
    if (jkt === undefined) {
      reply.header('www-authenticate', challenge('invalid_token', 'this token is not bound to a key: send it as Bearer'))
      throw new InvalidTokenError()
    }
    let reason: string
    try {
      const proof = await dpop.ofResourceRequest(request, reply, presented.token)
      if (proof !== undefined && proof.jkt === jkt) {
        request.user = claims
        return
      }
      reason = proof === undefined ? 'a DPoP proof is required' : 'the proof is not signed with the key this token is bound to'
    } catch (error) {
      if (!(error instanceof DpopProofError)) throw error
      if (error.nonce) {
        reply.header('www-authenticate', challenge('use_dpop_nonce', 'sign the proof again with the nonce in DPoP-Nonce'))
        throw withStatus(new UseDpopNonceError(), 401)
      }
      reason = error.reason
    }
    reply.header('www-authenticate', challenge('invalid_dpop_proof', reason))
    throw withStatus(new InvalidDpopProofError(reason), 401)
  }
}

/** The scheme and token of the `Authorization` header, or the refusal and its challenge. */
function credentials (
  request: FastifyRequest, reply: FastifyReply, challenge: (error?: string, description?: string, scheme?: Scheme) => string
): { scheme: Scheme, token: string } {
  const header = singleAuthorization(request)
  if (header === null) {
    reply.header('www-authenticate', challenge('invalid_request'))
    throw new MalformedAuthorizationError()
  }
  const space = header?.indexOf(' ') ?? -1
  const name = space > 0 ? (header as string).slice(0, space).toLowerCase() : ''
  if (name !== 'bearer' && name !== 'dpop') {
    reply.header('www-authenticate', challenge())
    throw new MissingTokenError()
  }
  const token = (header as string).slice(space + 1)
  const scheme = name === 'dpop' ? 'DPoP' : 'Bearer'
  if (isMalformedToken(token)) {
    reply.header('www-authenticate', challenge('invalid_request', undefined, scheme))
    throw new MalformedAuthorizationError()
  }
  return { scheme, token }
}

/** The thumbprint a token is bound to (`cnf.jkt`), if any: only we sign `cnf` (an app's claims never set it). */
function boundKey (claims: object): string | undefined {
  return (claims as { cnf?: { jkt: string } }).cnf?.jkt
}

/** RFC 9449 §7.1: the resource server's proof errors are 401s, the token endpoint's 400s. */
function withStatus<E extends { statusCode?: number }> (error: E, statusCode: number): E {
  error.statusCode = statusCode
  return error
}
