import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AlreadyBoundError, InvalidRefreshTokenError, MissingRefreshTokenError } from '../errors.js'
import type { PresentedRefreshToken } from '../refresh-tokens.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import { dbscRefreshResponses, dbscRegistrationResponses, documented, refreshSecurity } from './schemas.js'
import { dropDeadCookie } from './refresh.js'
import { clientInfo } from './transport.js'

type DbscContext = Pick<RouteContext, 'options' | 'sessions' | 'transport' | 'crossSiteCheck' | 'devices'>

/**
 * DBSC's registration endpoint (docs/design.md, «Device Bound Session Credentials (DBSC)»): the
 * browser, offered registration by a login or refresh answer, posts its new key's proof; the
 * session's refresh token rotates into one bound to that key, and the device cookie is set.
 */
export function dbscRegistrationRoute (app: FastifyInstance, path: string, context: DbscContext): void {
  const { options, sessions, transport, devices } = context
  app.post(path, {
    bodyLimit: BODY_LIMIT,
    onRequest: context.crossSiteCheck,
    schema: documented({
      summary: 'DBSC registration: bind this session to the browser\'s key (W3C DBSC)',
      security: refreshSecurity(options.refreshTokenTransport),
      response: dbscRegistrationResponses
    })
  }, async (request, reply) => {
    const { token, presented } = refreshCookie(request, context)
    // Before the proof: a bound session keeps its key, and its refusal spends no challenge.
    if (presented.jkt !== undefined || presented.dbsc !== undefined) throw new AlreadyBoundError()
    const key = await devices.registrationKey(request, presented.sid)
    const tokens = await dropDeadCookie(reply, transport, { token, inBody: false }, async () => await sessions.bindDevice(token, clientInfo(request), key.jkt))
    transport.send(reply, tokens, false)
    return devices.grant(reply, { sessionId: tokens.sessionId, key })
  })
}

/**
 * DBSC's refresh endpoint: the browser renews the device cookie of the session it names, signing
 * our challenge with the session key. No rotation and no store call but the challenge's spending;
 * the refresh cookie must be the bound session's, so a logged-out session (its cookie cleared)
 * or another one ends the browser's DBSC session (a 4xx).
 */
export function dbscRefreshRoute (app: FastifyInstance, path: string, context: DbscContext): void {
  const { options, devices } = context
  app.post(path, {
    bodyLimit: BODY_LIMIT,
    onRequest: context.crossSiteCheck,
    schema: documented({
      summary: 'DBSC refresh: renew the device cookie with a signature of the session key (W3C DBSC)',
      security: refreshSecurity(options.refreshTokenTransport),
      response: dbscRefreshResponses
    })
  }, async (request, reply) => {
    const session = devices.deviceSession(request)
    const { presented } = refreshCookie(request, context)
    if (presented.sid !== session.sessionId || presented.dbsc !== session.key.jkt) throw new InvalidRefreshTokenError()
    await devices.proveRefresh(request, reply, session)
    return devices.grant(reply, session)
  })
}

/** The refresh cookie DBSC's requests carry (they have no body), read without the store. */
function refreshCookie (request: FastifyRequest, { sessions, transport }: DbscContext): { token: string, presented: PresentedRefreshToken } {
  const sent = transport.presented(request)
  if (sent === undefined || sent.inBody) throw new MissingRefreshTokenError()
  const presented = sessions.readRefreshToken(sent.token)
  if (presented === null) throw new InvalidRefreshTokenError()
  return { token: sent.token, presented }
}
