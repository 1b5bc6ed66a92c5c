import type { FastifyInstance } from 'fastify'
import type { SessionService } from '../sessions.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import { ACCEPTS_FORMS } from './shared.js'
import { documented, revokeResponses, tokenParameterBody } from './schemas.js'

interface RevokeBody { token: string, token_type_hint?: string }

/**
 * `POST /revoke`, the RFC 7009 token revocation endpoint (docs/design.md, «Token revocation
 * endpoint»): a refresh or access token in, its session ended, 200 whatever the token was. The
 * token itself is the proof: no client authentication (our clients are public), no cookie read
 * (but DBSC's device cookie, which only permits), so no cross-site check either, and RFC 7009's
 * form body is accepted in every response format.
 */
export function revokeRoute (app: FastifyInstance, path: string, context: Pick<RouteContext, 'options' | 'sessions' | 'dpop' | 'devices'>): void {
  const { options, sessions, dpop, devices } = context
  app.post<{ Body: RevokeBody }>(path, {
    bodyLimit: BODY_LIMIT,
    config: ACCEPTS_FORMS,
    schema: documented({
      summary: 'Revoke a refresh or access token, ending its session (RFC 7009)',
      security: [],
      body: tokenParameterBody,
      response: revokeResponses(options.responseFormat)
    })
  }, async (request, reply) => {
    const { token } = request.body
    // A DBSC-bound session's refresh token ends it only beside its device cookie (docs/design.md,
    // «Device Bound Session Credentials (DBSC)»): anything else is still a 200 (RFC 7009 §2.2).
    const refresh = devices.enabled ? sessions.readRefreshToken(token) : null
    if (refresh !== null && !devices.carriesDevice(request, refresh)) return await reply.code(200).send()
    // Only a bound token's revocation needs its key's proof; only then is one looked at, so no
    // other token makes the store record proofs.
    await revokeToken(sessions, token, dpop.enabled && isBound(sessions, token) ? await dpop.keyOf(request, reply) : undefined)
    return await reply.code(200).send()
  })
}

/**
 * Ends the session a refresh or access token belongs to; resolves with whether one was ended.
 * Refresh and access tokens never parse as each other, so `token_type_hint` cannot change the
 * outcome and is not consulted (RFC 7009 §2.1 lets a server search every type). A token that is
 * neither, expired, or of an ended session ends nothing (§2.2: still a 200); nor does a
 * DPoP-bound one without a proof of its key (`proofKey`): a thief without the key cannot end
 * the session (docs/design.md, «Sender-constrained sessions (DPoP)»).
 */
/** Whether the token is one of ours bound to a DPoP key: a refresh token naming a thumbprint, or an access token with `cnf`. */
function isBound (sessions: SessionService, token: string): boolean {
  if (sessions.readRefreshToken(token)?.jkt !== undefined) return true
  try {
    return (sessions.verifyAccessToken(token) as { cnf?: unknown }).cnf !== undefined
  } catch {
    return false
  }
}

async function revokeToken (sessions: SessionService, token: string, proofKey: string | undefined): Promise<boolean> {
  if (await sessions.logout(token, proofKey)) return true
  let claims: { sid: string, sub: string, cnf?: { jkt: string } }
  try {
    claims = sessions.verifyAccessToken(token)
  } catch {
    return false
  }
  if (claims.cnf !== undefined && claims.cnf.jkt !== proofKey) return false
  return await sessions.revokeSession(claims.sid, { userId: claims.sub, reason: 'logout' })
}
