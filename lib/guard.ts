import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import type { DpopProofs } from './dpop/requests.js'
import { createDpopAuthenticate } from './dpop/resource.js'
import { ClaimsChangedError, MalformedAuthorizationError, MissingTokenError } from './errors.js'
import { isMalformedToken, singleAuthorization } from './single-header.js'
import type { SessionService } from './sessions.js'
import type { AccessTokenClaims } from './tokens.js'

// RFC 6750 §3: no error code when the request carried no token, `invalid_token` when it did.
const CHALLENGE = 'Bearer'
const INVALID_REQUEST = 'Bearer error="invalid_request"'
const INVALID_TOKEN = 'Bearer error="invalid_token"'
// The client holds a valid refresh token: telling it why lets it refresh instead of signing in again.
const CLAIMS_CHANGED = 'Bearer error="invalid_token", error_description="the claims of this token have changed; refresh it"'

/**
 * The access-token hook: `Authorization: Bearer <token>` -> signature, type and claims ->
 * revoked-session check (memory only) -> `request.user`. Usable as `onRequest` or `preHandler`.
 * With DPoP on, `Authorization: DPoP <token>` and its proof too (./dpop/resource.ts).
 */
export function createAuthenticate (sessions: SessionService, dpop: DpopProofs): onRequestAsyncHookHandler {
  if (dpop.enabled) return createDpopAuthenticate(sessions, dpop)
  return async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = bearerToken(request, reply)
    try {
      request.user = sessions.verifyAccessToken(token)
    } catch (error) {
      reply.header('www-authenticate', error instanceof ClaimsChangedError ? CLAIMS_CHANGED : INVALID_TOKEN)
      throw error
    }
  }
}

/**
 * The verified claims of an `Authorization` header's access token (`singleAuthorization`), or
 * null when it offers none or one that is not acceptable (malformed, forged, expired, revoked, a refresh token). For a
 * route where the access token is optional: unlike `authenticate`, it refuses nothing, sets no
 * challenge and leaves `request.user` alone.
 */
export function acceptableAccessToken (
  authorization: string | undefined | null, sessions: Pick<SessionService, 'verifyAccessToken'>
): AccessTokenClaims | null {
  const token = authorization === null ? undefined : bearerCredentials(authorization)
  if (token === undefined || isMalformedToken(token)) return null
  try {
    const claims = sessions.verifyAccessToken(token)
    // A DPoP-bound token is acceptable only with a proof of its key, which a bearer header is not.
    return claims.cnf === undefined ? claims : null
  } catch {
    return null
  }
}

/** The token of an `Authorization: Bearer` header, or the error and challenge refusing it. */
function bearerToken (request: FastifyRequest, reply: FastifyReply): string {
  const header = singleAuthorization(request)
  if (header === null) {
    reply.header('www-authenticate', INVALID_REQUEST)
    throw new MalformedAuthorizationError()
  }
  const token = bearerCredentials(header)
  if (token === undefined) {
    // No header, another scheme, or a bare "Bearer": no token was offered.
    reply.header('www-authenticate', CHALLENGE)
    throw new MissingTokenError()
  }
  if (isMalformedToken(token)) {
    reply.header('www-authenticate', INVALID_REQUEST)
    throw new MalformedAuthorizationError()
  }
  return token
}

/** What follows `Bearer ` (the scheme is case-insensitive, RFC 7235), or undefined when the header has no bearer token. */
function bearerCredentials (header: string | undefined): string | undefined {
  if (header === undefined || header.length < 7 || header.slice(0, 7).toLowerCase() !== 'bearer ') return undefined
  return header.slice(7)
}
