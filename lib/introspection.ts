import type { SessionService } from './sessions.js'
import type { AccessTokenClaims } from './tokens.js'

/*
 * What the RFC 7662 introspection endpoint answers about a token (docs/design.md, «Token
 * introspection endpoint»). No Fastify types: the route authenticates the caller, this decides.
 * The store is asked every time, so a resource server sees a revocation made on any instance at
 * once, not after the revocation feed reaches this one.
 */

/** RFC 7662 §2.2: `{ active: false }` and nothing else for anything not live. */
export type Introspection = { active: false } | { active: true, [claim: string]: unknown }

const INACTIVE: Introspection = { active: false }

export async function introspect (sessions: SessionService, token: string): Promise<Introspection> {
  const refresh = sessions.readRefreshToken(token)
  if (refresh !== null) {
    const session = await sessions.liveSession(refresh.sub, refresh.sid)
    // Only the session's current token is live: a rotated one can no longer be exchanged for
    // anything but the successor already issued.
    if (session === null || session.tokenHash !== refresh.hash) return INACTIVE
    return {
      active: true,
      token_type: 'refresh_token',
      sub: session.userId,
      sid: session.id,
      iat: Math.floor((session.rotatedAt ?? session.createdAt) / 1000),
      exp: Math.floor(session.expiresAt / 1000),
      // RFC 9449 §6.2: the key a bound token is bound to.
      ...(refresh.jkt === undefined ? {} : { cnf: { jkt: refresh.jkt } })
    }
  }
  let claims: AccessTokenClaims & Record<string, unknown>
  try {
    claims = sessions.verifyAccessToken<AccessTokenClaims & Record<string, unknown>>(token)
  } catch {
    return INACTIVE
  }
  if (await sessions.liveSession(claims.sub, claims.sid) === null) return INACTIVE
  // A bound access token carries `cnf` already; its type says how it must be presented.
  return { active: true, token_type: claims.cnf === undefined ? 'Bearer' : 'DPoP', ...claims }
}
