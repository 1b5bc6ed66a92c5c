import type { FastifyInstance } from 'fastify'
import { InvalidCredentialsError, UnsupportedGrantTypeError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import { documented, loginBodySchema, sessionLimitResponse, tokenResponses } from './schemas.js'
import { clientInfo } from './transport.js'

export interface LoginBody { username: string, password: string, refreshTokenTransport?: 'cookie' | 'body', grant_type?: string }

/** `POST /login`: username and password for a new session's tokens. */
export function loginRoute (
  app: FastifyInstance, path: string, context: Pick<RouteContext, 'options' | 'sessions' | 'events' | 'transport' | 'crossSiteCheck' | 'loginThrottles' | 'dpop' | 'devices'>
): void {
  const { options, sessions, events, transport, loginThrottles, dpop, devices } = context
  const verifyCredentials = options.verifyCredentials as NonNullable<ResolvedOptions['verifyCredentials']>
  app.post<{ Body: LoginBody }>(path, {
    bodyLimit: BODY_LIMIT,
    onRequest: [context.crossSiteCheck, ...loginThrottles.onRequest],
    preHandler: loginThrottles.preHandler,
    schema: documented({
      summary: 'Log in with a username and password',
      security: [],
      body: loginBodySchema(options.responseFormat, options.refreshTokenTransport),
      response: { ...tokenResponses(options.responseFormat, transport.usesBody, dpop.enabled), ...sessionLimitResponse(options) }
    })
  }, async (request, reply) => {
    const { username, password } = request.body
    // RFC 6749 §4.3.2: the resource owner password credentials grant.
    if (request.body.grant_type !== undefined && request.body.grant_type !== 'password') throw new UnsupportedGrantTypeError()
    // The proof first: a request refused for it costs no password check (and gets its nonce).
    const proofKey = await dpop.keyOf(request, reply, true)
    const user = await verifyCredentials(username, password, request)
    const client = clientInfo(request)
    if (user === null) {
      events.emit('loginFailed', { username, ...client })
      throw new InvalidCredentialsError()
    }
    const tokens = await sessions.issue(user, client, proofKey)
    const inBody = options.refreshTokenTransport === 'body' || request.body.refreshTokenTransport === 'body'
    // A browser's bearer session may bind itself to a DBSC key (a DPoP-bound one is bound already).
    if (!inBody && proofKey === undefined) devices.offer(reply, tokens.sessionId)
    return transport.send(reply, tokens, inBody)
  })
}
