import type { FastifyInstance } from 'fastify'
import { acceptableAccessToken } from '../guard.js'
import { singleAuthorization } from '../single-header.js'
import type { SessionService } from '../sessions.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import { documented, logoutQuerystring, logoutSecurity, noContentResponses, refreshBodySchema } from './schemas.js'
import type { PresentedRefreshToken } from './transport.js'

/** The one session a logout without `?all=true` ends. */
export type SessionToEnd =
  | { by: 'refresh-token', refreshToken: string }
  | { by: 'access-token', sessionId: string, userId: string }
  | { by: 'nothing' }

/**
 * Which session a logout without `?all=true` ends (docs/design.md, «Logout and revoke all»). The
 * refresh token decides whenever there is one, even a dead one (RFC 7009: a token that ends
 * nothing still answers 204), and any access token is then ignored. Without one, an acceptable
 * access token names its session. An unacceptable one ends nothing and is not refused: the
 * client is leaving anyway, so the answer is still 204, with no WWW-Authenticate challenge.
 */
export function sessionToEnd (
  refreshToken: PresentedRefreshToken | undefined, authorization: string | undefined | null, sessions: Pick<SessionService, 'verifyAccessToken'>
): SessionToEnd {
  if (refreshToken !== undefined) return { by: 'refresh-token', refreshToken: refreshToken.token }
  const claims = acceptableAccessToken(authorization, sessions)
  return claims === null ? { by: 'nothing' } : { by: 'access-token', sessionId: claims.sid, userId: claims.sub }
}

/**
 * `POST /logout`: ends this session, or with `?all=true` every session of the user
 * (docs/design.md, «Logout and revoke all»). Either way the revocation reaches the sessions'
 * access tokens («Revocation reaches access tokens»); a store that cannot answer makes it a 503
 * and keeps the cookie («Fail closed»).
 */
export function logoutRoute (
  app: FastifyInstance, path: string, context: Pick<RouteContext, 'options' | 'sessions' | 'transport' | 'crossSiteCheck' | 'authenticate' | 'dpop' | 'devices'>
): void {
  const { options, sessions, transport, authenticate, dpop, devices } = context
  app.post<{ Querystring: { all?: 'true' | 'false' }, Body: { refreshToken?: string } | undefined }>(path, {
    bodyLimit: BODY_LIMIT,
    onRequest: context.crossSiteCheck,
    schema: documented({
      summary: 'End this session, or every session of the user with ?all=true',
      security: logoutSecurity(options.refreshTokenTransport),
      querystring: logoutQuerystring,
      ...(transport.usesBody ? { body: refreshBodySchema(options.responseFormat, false) } : {}),
      response: noContentResponses('Logged out')
    })
  }, async (request, reply) => {
    if (request.query.all === 'true') {
      // Ending every session needs the user's proof: the access token is required, refused as
      // on any protected route (401 with its challenge), and no refresh token stands in for it.
      await authenticate.call(app, request, reply)
      await sessions.revokeUserSessions(request.user!.sub, 'logout-all')
    } else {
      const target = sessionToEnd(transport.presented(request), singleAuthorization(request), sessions)
      // Read only for a binding to check: the logout reads it anyway.
      const token = target.by === 'refresh-token' && (dpop.enabled || devices.enabled) ? sessions.readRefreshToken(target.refreshToken) : null
      // A bound session's refresh token ends it only with a proof of its key («Sender-constrained
      // sessions (DPoP)»); only then is a proof looked at, so no other token makes the store record
      // one. A DBSC-bound one only beside its device cookie («Device Bound Session Credentials (DBSC)»).
      const proofKey = dpop.enabled && token?.jkt !== undefined ? await dpop.keyOf(request, reply) : undefined
      if (token === null || devices.carriesDevice(request, token)) await endSession(sessions, target, proofKey)
    }
    if (transport.usesCookie) transport.clearCookie(reply)
    if (options.clearSiteData !== undefined) reply.header('clear-site-data', options.clearSiteData)
    reply.code(204)
  })
}

async function endSession (sessions: SessionService, target: SessionToEnd, proofKey: string | undefined): Promise<void> {
  if (target.by === 'refresh-token') {
    await sessions.logout(target.refreshToken, proofKey)
  } else if (target.by === 'access-token') {
    await sessions.revokeSession(target.sessionId, { userId: target.userId, reason: 'logout' })
  }
}
