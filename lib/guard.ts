import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { MalformedAuthorizationError, MissingTokenError } from './errors.js'
import type { SessionService } from './sessions.js'

// RFC 6750 §3: no error code when the request carried no token, `invalid_token` when it did.
const CHALLENGE = 'Bearer'
const INVALID_REQUEST = 'Bearer error="invalid_request"'
const INVALID_TOKEN = 'Bearer error="invalid_token"'

/**
 * The access-token hook: `Authorization: Bearer <token>` -> signature, type and claims ->
 * revoked-session check (memory only) -> `request.user`. Usable as `onRequest` or `preHandler`.
 */
export function createAuthenticate (sessions: SessionService): onRequestAsyncHookHandler {
  return async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = bearerToken(request.headers.authorization, reply)
    try {
      request.user = sessions.verifyAccessToken(token)
    } catch (error) {
      reply.header('www-authenticate', INVALID_TOKEN)
      throw error
    }
  }
}

/** The token of an `Authorization: Bearer` header; the scheme is case-insensitive (RFC 7235). */
function bearerToken (header: string | undefined, reply: FastifyReply): string {
  if (header === undefined || header.length < 7 || header.slice(0, 7).toLowerCase() !== 'bearer ') {
    // No header, another scheme, or a bare "Bearer": no token was offered.
    reply.header('www-authenticate', CHALLENGE)
    throw new MissingTokenError()
  }
  const token = header.slice(7)
  if (token === '' || token.includes(' ')) {
    reply.header('www-authenticate', INVALID_REQUEST)
    throw new MalformedAuthorizationError()
  }
  return token
}
