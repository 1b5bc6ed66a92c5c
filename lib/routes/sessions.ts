import type { FastifyInstance } from 'fastify'
import { SessionNotFoundError } from '../errors.js'
import type { RouteContext } from './context.js'
import { bearerSecurity, documented, noContentResponses, sessionListResponses, sessionParams } from './schemas.js'

/**
 * `GET /sessions` and `DELETE /sessions/:id`: the user lists and ends their own sessions. Only
 * the access token authenticates them, so they need no cross-site check; an ended session's
 * access tokens fail at once (docs/design.md, «Revocation reaches access tokens»).
 */
export function sessionRoutes (app: FastifyInstance, path: string, context: Pick<RouteContext, 'sessions' | 'authenticate'>): void {
  const { sessions, authenticate } = context
  app.get(path, {
    onRequest: authenticate,
    schema: documented({ summary: "List the user's sessions", security: bearerSecurity, response: sessionListResponses })
  }, async (request) => {
    const user = request.user!
    const list = await sessions.listSessions(user.sub)
    return { sessions: list.map((session) => ({ ...session, current: session.id === user.sid })) }
  })

  app.delete<{ Params: { id: string } }>(`${path}/:id`, {
    onRequest: authenticate,
    schema: documented({
      summary: 'End one of the user\'s sessions',
      security: bearerSecurity,
      params: sessionParams,
      response: noContentResponses('Session ended')
    })
  }, async (request, reply) => {
    // Only the user's own sessions: another user's id is answered as an unknown one.
    const ended = await sessions.revokeSession(request.params.id, { userId: request.user!.sub, reason: 'revoked' })
    if (!ended) throw new SessionNotFoundError()
    reply.code(204)
  })
}
