import type { FastifyInstance, FastifyReply } from 'fastify'
import { GraceExhaustedError, MissingRefreshTokenError, UnsupportedGrantTypeError } from '../errors.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import { documented, refreshBodySchema, refreshSecurity, tokenResponses } from './schemas.js'
import { clientInfo, type PresentedRefreshToken, type TokenTransport } from './transport.js'

/** The refresh route (`POST`, or `GET` when so configured): a refresh token for new tokens, rotating it. */
export function refreshRoute (
  app: FastifyInstance, path: string, context: Pick<RouteContext, 'options' | 'sessions' | 'transport' | 'crossSiteCheck' | 'dpop' | 'devices'>
): void {
  const { options, sessions, transport, dpop, devices } = context
  app.route<{ Body: Record<string, string> | undefined }>({
    method: options.refreshMethod,
    url: path,
    bodyLimit: BODY_LIMIT,
    onRequest: context.crossSiteCheck,
    schema: documented({
      summary: 'Exchange the refresh token for new tokens (rotation)',
      security: refreshSecurity(options.refreshTokenTransport),
      ...(transport.usesBody ? { body: refreshBodySchema(options.responseFormat, options.responseFormat === 'oauth2') } : {}),
      response: tokenResponses(options.responseFormat, transport.usesBody, dpop.enabled)
    }),
    handler: async function refresh (request, reply): Promise<object> {
      const grantType = request.body?.grant_type
      if (grantType !== undefined && grantType !== 'refresh_token') throw new UnsupportedGrantTypeError()
      const presented = transport.presented(request)
      if (presented === undefined) throw new MissingRefreshTokenError()
      // Read here only for a binding to check: the rotation reads it anyway, and a refresh is hot.
      const read = dpop.enabled || devices.enabled ? sessions.readRefreshToken(presented.token) : null
      // A DBSC-bound session refreshes only beside its device cookie; the refresh cookie is kept
      // (docs/design.md, «Device Bound Session Credentials (DBSC)»).
      if (read !== null) devices.requireDevice(request, read)
      // A token we did not mint is refused before any proof is looked at: nobody without one can
      // make the store record proofs (docs/design.md, «Sender-constrained sessions (DPoP)»).
      const proofKey = !dpop.enabled || read === null ? undefined : await dpop.keyOf(request, reply)
      return await dropDeadCookie(reply, transport, presented, async () => {
        const tokens = await sessions.refresh(presented.token, clientInfo(request), request, proofKey)
        if (!presented.inBody && read?.jkt === undefined && read?.dbsc === undefined) devices.offer(reply, tokens.sessionId)
        return transport.send(reply, tokens, presented.inBody)
      })
    }
  })
}

/**
 * Runs what a presented refresh token is exchanged for (refresh, re-authentication): a dead
 * refresh token is dropped from the browser. On 503 it is kept (docs/design.md, «Fail closed»).
 * A superseded one is left alone because a parallel response is setting its successor
 * (docs/design.md, «Refresh-token rotation»).
 */
export async function dropDeadCookie<T> (
  reply: FastifyReply, transport: Pick<TokenTransport, 'clearCookie'>, presented: PresentedRefreshToken, exchange: () => T | Promise<T>
): Promise<T> {
  try {
    return await exchange()
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode
    if (status === 401 && !(error instanceof GraceExhaustedError) && !presented.inBody) transport.clearCookie(reply)
    throw error
  }
}
