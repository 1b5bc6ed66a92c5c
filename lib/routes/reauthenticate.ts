import type { FastifyInstance } from 'fastify'
import { InvalidCredentialsError, MissingRefreshTokenError, ReauthenticationUserMismatchError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import type { LoginBody } from './login.js'
import { dropDeadCookie } from './refresh.js'
import { documented, reauthenticateBodySchema, reauthenticateResponses, refreshSecurity } from './schemas.js'
import { clientInfo } from './transport.js'

/**
 * `POST /reauthenticate` (docs/design.md, «Step-up authentication»): the user of the current
 * session proves who they are again, with the login's credentials and throttles; the session
 * (named by its refresh token, read as the refresh route reads it) keeps its id and gets fresh
 * tokens with a new `auth_time`. Wrong credentials, or another user's, leave it untouched.
 */
export function reauthenticateRoute (
  app: FastifyInstance, path: string,
  context: Pick<RouteContext, 'options' | 'sessions' | 'events' | 'transport' | 'crossSiteCheck' | 'loginThrottles' | 'dpop' | 'devices'>
): void {
  const { options, sessions, events, transport, loginThrottles, dpop, devices } = context
  const verifyCredentials = options.verifyCredentials as NonNullable<ResolvedOptions['verifyCredentials']>
  app.post<{ Body: LoginBody }>(path, {
    bodyLimit: BODY_LIMIT,
    onRequest: [context.crossSiteCheck, ...loginThrottles.onRequest],
    preHandler: loginThrottles.preHandler,
    schema: documented({
      summary: 'Prove again who the user of the current session is (step-up)',
      security: refreshSecurity(options.refreshTokenTransport),
      body: reauthenticateBodySchema(options.responseFormat, options.refreshTokenTransport),
      response: reauthenticateResponses(options.responseFormat, transport.usesBody, dpop.enabled)
    })
  }, async (request, reply) => {
    const presented = transport.presented(request)
    if (presented === undefined) throw new MissingRefreshTokenError()
    const { username, password } = request.body
    const client = clientInfo(request)
    // Whose session it is, before the password is looked at: a token that does not verify fails
    // as on the refresh route.
    const token = await dropDeadCookie(reply, transport, presented, () => sessions.presentedRefreshToken(presented.token))
    devices.requireDevice(request, token)
    const proofKey = await dpop.keyOf(request, reply)
    const user = await verifyCredentials(username, password, request)
    if (user === null) {
      events.emit('loginFailed', { username, ...client })
      throw new InvalidCredentialsError()
    }
    if (user.id !== token.sub) throw new ReauthenticationUserMismatchError()
    return await dropDeadCookie(reply, transport, presented, async () => {
      const tokens = await sessions.reauthenticate(presented.token, user, client, proofKey)
      // The successor goes where the token came from, unless the client asks for the body.
      return transport.send(reply, tokens, presented.inBody || request.body.refreshTokenTransport === 'body')
    })
  })
}
