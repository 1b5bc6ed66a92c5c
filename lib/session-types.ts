import type { TokenAuthEvents } from './events.js'
import type { RefreshHook } from './refresh-hook.js'
import type { RevocationList } from './revocations.js'
import type { AuthenticationClaims, SessionLimitOptions } from './session-policy.js'
import type { Authentication, SessionRecord, TokenStore } from './stores/types.js'
import type { TokenCodec } from './tokens.js'

// The types of the session service (./sessions.ts), apart so the service is only its behaviour.

/** A user as the app's callbacks describe it. */
export interface AuthUser<Claims = Record<string, unknown>> extends AuthenticationClaims {
  /** Stable user id: the `sub` claim. */
  id: string
  /** Extra access-token claims (e.g. username, roles); kept with the session and re-signed on refresh. */
  claims?: Claims
  /** How the user authenticated (RFC 9470 `acr`, e.g. `mfa`): the access tokens carry it. */
  acr?: string
  /** The methods used (RFC 8176 `amr`, e.g. `['pwd', 'otp']`): the access tokens carry them. */
  amr?: string[]
}

/** What login and refresh hand to a client. */
export interface TokenSet {
  accessToken: string
  /** `DPoP` when the access token is bound to the request's DPoP key (docs/design.md, «Sender-constrained sessions (DPoP)»). */
  tokenType: 'Bearer' | 'DPoP'
  /** Seconds until the access token expires. */
  expiresIn: number
  refreshToken: string
  /** When the refresh token (and, unless used, the session) expires, in ms since the epoch. */
  refreshTokenExpiresAt: number
  sessionId: string
  userId: string
}

/** A session as listed to its user: no token material. */
export interface SessionInfo {
  id: string
  createdAt: string
  lastUsedAt: string
  expiresAt: string
  userAgent: string | null
  ip: string | null
}

/** How a stored session is listed to its user: its times as ISO strings, no token material. */
export function sessionInfoOf (session: SessionRecord): SessionInfo {
  return {
    id: session.id,
    createdAt: new Date(session.createdAt).toISOString(),
    lastUsedAt: new Date(session.lastUsedAt).toISOString(),
    expiresAt: new Date(session.expiresAt).toISOString(),
    userAgent: session.userAgent,
    ip: session.ip
  }
}

export interface SessionServiceOptions extends SessionLimitOptions {
  store: TokenStore
  codec: TokenCodec
  events: TokenAuthEvents
  revocations: RevocationList
  /** Idle lifetime of a session, seconds. */
  refreshTokenTtl: number
  /** Absolute lifetime of a session, seconds. */
  sessionMaxAge: number
  /** Seconds during which a rotated refresh token is still answered. */
  reuseGrace: number
  /** Grace answers allowed per rotation. */
  reuseGraceLimit: number
  /** Milliseconds after which a store call counts as failed. */
  storeTimeout: number
  /** The `dpop` option: whether refreshes must prove a key («Sender-constrained sessions (DPoP)»). */
  dpop?: 'off' | 'optional' | 'required'
  /** Milliseconds a revocation must be remembered: the longest an access token can still be accepted. */
  revocationTtl: number
  /** Reloads a user on refresh; `null` ends the session. */
  loadUser?: ((userId: string) => Promise<AuthUser | null>) | undefined
  /** The refresh risk hook, and its time limit in ms. */
  onRefresh?: RefreshHook | undefined
  onRefreshTimeout?: number
  now?: () => number
}

/** What a rotation may change besides the token: the claims (`loadUser`), a re-authentication, a shorter end. */
export interface RotationChanges {
  claims?: Record<string, unknown> | undefined
  authentication?: Authentication
  absoluteExpiresAt?: number
}
