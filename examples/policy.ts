import createError from '@fastify/error'
import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify'
import type { TokenAuthOptions } from '../lib/index.js'
import type { ExampleConfig } from './config.js'

/**
 * The demo's session policy (docs/design.md, «Session policy»): a step-up route, a role change
 * that reaches live sessions, a cap on sessions per user, and a refresh risk rule, each set from
 * the environment (STEP_UP_MAX_AGE, MAX_SESSIONS, SESSION_LIMIT_POLICY, REFRESH_POLICY).
 */

export type Role = 'admin' | 'user'

/** What the policy routes need of the user directory. */
export interface PolicyUsers {
  /** The user with the new role, or undefined for an unknown id. */
  setRole (id: string, role: Role): { username: string, role: Role } | undefined
  setEmail (id: string, email: string): void
}

const UserNotFoundError = createError('USER_NOT_FOUND', 'No such user', 404)

/**
 * REFRESH_POLICY=same-device («The refresh risk hook»): a refresh token replayed from another
 * browser or tool than the one that signed in ends the session. The User-Agent is no secret, so
 * this stops only a careless thief; it shows where a real risk engine would plug in.
 */
const sameDevice: NonNullable<TokenAuthOptions['onRefresh']> = ({ session, client }) =>
  client.userAgent === session.firstUserAgent
    ? undefined
    : { action: 'deny', reason: 'the refresh came from another User-Agent than the sign-in' }

/** The plugin options of the policy. */
export function sessionPolicyOptions (config: ExampleConfig): Pick<TokenAuthOptions, 'maxSessionsPerUser' | 'sessionLimitPolicy' | 'onRefresh'> {
  return {
    ...(config.maxSessions === undefined ? {} : { maxSessionsPerUser: config.maxSessions, sessionLimitPolicy: config.sessionLimitPolicy }),
    ...(config.refreshPolicy === 'same-device' ? { onRefresh: sameDevice } : {})
  }
}

/**
 * `POST /account/email` (step-up: a sign-in at most STEP_UP_MAX_AGE seconds old, «Step-up
 * authentication»), `POST /admin/users/:id/role` (admins; the user's live sessions get the new
 * role at their next refresh, «Claims that change»), and the log lines of the policy's events.
 */
export function registerSessionPolicy (app: FastifyInstance, config: ExampleConfig, users: PolicyUsers, requireAdmin: onRequestAsyncHookHandler): void {
  app.tokenAuth.events.on('newSession', (event) => {
    // A User-Agent none of the user's live sessions has: where an app would send a "new sign-in" mail.
    app.log.info({ userId: event.userId, sessionId: event.sessionId, ip: event.ip, knownUserAgent: event.knownUserAgent },
      event.knownUserAgent ? 'new session' : 'new session from a new User-Agent')
  })
  app.tokenAuth.events.on('refreshDenied', (event) => {
    app.log.warn({ userId: event.userId, sessionId: event.sessionId, ip: event.ip, reason: event.reason }, 'refresh denied: session ended')
  })

  app.post<{ Body: { email: string } }>('/account/email', {
    onRequest: app.tokenAuth.requireAuth({ maxAge: config.stepUpMaxAge }),
    schema: {
      body: {
        type: 'object',
        required: ['email'],
        additionalProperties: false,
        properties: { email: { type: 'string', minLength: 3, maxLength: 254, pattern: '^[^@\\s]+@[^@\\s]+$' } }
      }
    }
  }, async (request) => {
    users.setEmail(request.user.sub, request.body.email)
    return { email: request.body.email }
  })

  app.post<{ Params: { id: string }, Body: { role: Role } }>('/admin/users/:id/role', {
    onRequest: [app.authenticate, requireAdmin],
    schema: {
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } },
      body: { type: 'object', required: ['role'], additionalProperties: false, properties: { role: { enum: ['admin', 'user'] } } }
    }
  }, async (request) => {
    const user = users.setRole(request.params.id, request.body.role)
    if (user === undefined) throw new UserNotFoundError()
    // loadUser reads the directory at the next refresh; this also refuses the older access tokens now.
    const sessionIds = await app.tokenAuth.updateUserClaims(request.params.id, { username: user.username, role: user.role })
    return { id: request.params.id, role: user.role, sessionsUpdated: sessionIds.length }
  })
}
