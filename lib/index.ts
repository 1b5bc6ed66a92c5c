import type { FastifyPluginAsync, onRequestAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { createCodec } from './codec.js'
import { type ClientInfo, TokenAuthEvents } from './events.js'
import { DpopProofs } from './dpop/requests.js'
import { createAuthenticate } from './guard.js'
import { resolveOptions, type TokenAuthOptions } from './options.js'
import { startRevocationSync } from './revocation-sync.js'
import { createRequireAuth, type RequireAuthOptions } from './step-up.js'
import { RevocationList } from './revocations.js'
import { jwksRoute, tokenAuthRoutes } from './routes/index.js'
import { type AuthUser, type SessionInfo, SessionService, type TokenSet } from './sessions.js'
import { MemoryStore } from './stores/memory.js'
import type { TokenStore } from './stores/types.js'
import type { AccessTokenClaims, SignedAccessToken } from './tokens.js'

/**
 * Claims your app adds to access tokens (through `verifyCredentials` / `loadUser`). Merge yours:
 * `declare module 'fastify-token-auth' { interface TokenAuthClaims { username: string } }`.
 */
export interface TokenAuthClaims {}

/** `request.user` after `authenticate`: the verified access-token claims. */
export type TokenAuthUser = AccessTokenClaims & TokenAuthClaims

/** The helpers on `fastify.tokenAuth`. */
export interface TokenAuth {
  /** Signs an access token for a user's existing session. */
  signAccessToken (userId: string, sessionId: string, claims?: Partial<TokenAuthClaims>): SignedAccessToken
  /** Verifies an access token exactly as `authenticate` does (signature, type, claims, revocation). */
  verifyAccessToken<Claims extends AccessTokenClaims = TokenAuthUser> (token: string): Claims
  /** Starts a session for a user your own code authenticated; resolves with its first tokens. */
  issueSession (user: AuthUser<Partial<TokenAuthClaims>>, client?: Partial<ClientInfo>): Promise<TokenSet>
  /** Rotates a refresh token, with the grace window and theft detection of the refresh route. */
  rotateRefreshToken (refreshToken: string, client?: Partial<ClientInfo>): Promise<TokenSet>
  /** Ends one session (when `userId` is given, only if it is theirs); resolves with whether one ended. */
  revokeSession (sessionId: string, userId?: string): Promise<boolean>
  /** Ends every session of a user (e.g. after a password change); resolves with the ids ended. */
  revokeUserSessions (userId: string): Promise<string[]>
  /** The user's live sessions, oldest first. */
  listSessions (userId: string): Promise<SessionInfo[]>
  /**
   * Replaces the claims of every live session of a user: their access tokens signed before are
   * refused (`FST_TOKEN_AUTH_CLAIMS_CHANGED`) and the next refresh signs the new claims.
   * Resolves with the ids of the sessions updated.
   */
  updateUserClaims (userId: string, claims: Partial<TokenAuthClaims>): Promise<string[]>
  /**
   * A hook to use instead of `authenticate` on routes that need a recent (`maxAge`, seconds) or
   * a stronger (`acr`) authentication: it refuses others with the RFC 9470 challenge (401).
   */
  requireAuth (options?: RequireAuthOptions): onRequestAsyncHookHandler
  /**
   * Typed audit events: login, loginFailed, refresh, reuseDetected, logout, logoutAll, sessionRevoked,
   * newSession, reauthenticated, claimsUpdated, refreshDenied, and the store's health.
   */
  readonly events: TokenAuthEvents
  readonly store: TokenStore
}

declare module 'fastify' {
  interface FastifyInstance {
    tokenAuth: TokenAuth
    /** The access-token hook: use as `onRequest` (or `preHandler`) on routes that need a user. */
    authenticate: onRequestAsyncHookHandler
  }
  interface FastifyRequest {
    /** The verified access-token claims; set by `authenticate`, absent on routes without it. */
    user: TokenAuthUser
  }
}

// @fastify/jwt declares `request.user` too; this keeps both declarations the same type.
declare module '@fastify/jwt' {
  interface FastifyJWT {
    user: TokenAuthUser
  }
}

const tokenAuthPlugin: FastifyPluginAsync<TokenAuthOptions> = async function tokenAuth (fastify, opts) {
  const options = resolveOptions(opts)
  if (options.store === undefined && process.env.NODE_ENV === 'production') {
    fastify.log.warn('fastify-token-auth: the memory store keeps sessions in this process only and loses them on restart; pass a Redis or PostgreSQL store in production')
  }
  const store = options.store ?? new MemoryStore()
  const events = new TokenAuthEvents((error, event) => fastify.log.error({ err: error, event }, 'fastify-token-auth: an event listener threw'))
  const codec = await createCodec(options)
  // A revoked session's access tokens can live this long: remember the revocation as long.
  const revocationTtl = (options.accessTokenTtl + options.clockTolerance) * 1000
  const sessions = new SessionService({ ...options, store, codec, events, revocationTtl, revocations: new RevocationList(revocationTtl) })
  const dpop = new DpopProofs(options, async (key, expiresAt) => await sessions.spendProof(key, expiresAt), () => sessions.now())
  const authenticate = createAuthenticate(sessions, dpop)
  fastify.decorate('tokenAuth', tokenAuthHelpers(sessions, events, store, createRequireAuth(authenticate, () => sessions.now())))
  fastify.decorate('authenticate', authenticate)
  // `request.user` is assigned by `authenticate`, not declared with decorateRequest: @fastify/jwt
  // declares it too, and the app may register that before or after us.

  if (Object.values(options.routes).some((path) => path !== false)) {
    await fastify.register(tokenAuthRoutes, { prefix: options.prefix, options, sessions, events, authenticate, dpop })
  }

  if (options.jwks !== false) await fastify.register(jwksRoute, { ...options.jwks, keys: options.accessKeys })

  // A store outage is logged twice, when it starts and when it ends (docs/design.md, «Store
  // outages»); what fails meanwhile, requests and background work alike, is part of it.
  events.on('storeUnavailable', ({ cause }) => {
    fastify.log.error({ err: cause }, 'fastify-token-auth: token store unavailable; answering 503 with Retry-After until it recovers')
  })
  events.on('storeRecovered', (event) => {
    fastify.log.warn(event, `fastify-token-auth: token store available again after ${event.unavailableMs} ms; ${event.unavailableResponses} requests were answered 503 meanwhile`)
  })
  const sync = startRevocationSync({
    sessions,
    store,
    pollInterval: options.revocationPollInterval,
    sweepInterval: options.sweepInterval,
    warn: (what, error) => fastify.log.warn({ err: error }, `fastify-token-auth: ${what} failed`),
    ownsStore: options.store === undefined
  })
  fastify.addHook('onReady', async () => { await sync.ready() })
  fastify.addHook('onClose', async () => { await sync.close() })
}

/** `fastify.tokenAuth`: the session service under the public API's names; a missing client is unknown (null). */
function tokenAuthHelpers (sessions: SessionService, events: TokenAuthEvents, store: TokenStore, requireAuth: TokenAuth['requireAuth']): TokenAuth {
  const clientOf = (client: Partial<ClientInfo> = {}): ClientInfo => ({ ip: client.ip ?? null, userAgent: client.userAgent ?? null })
  return {
    signAccessToken: (userId, sessionId, claims = {}) => sessions.signAccessToken(userId, sessionId, claims),
    verifyAccessToken: (token) => sessions.verifyAccessToken(token),
    issueSession: async (user, client) => await sessions.issue(user, clientOf(client)),
    rotateRefreshToken: async (refreshToken, client) => await sessions.refresh(refreshToken, clientOf(client)),
    revokeSession: async (sessionId, userId) => await sessions.revokeSession(sessionId, userId === undefined ? {} : { userId }),
    revokeUserSessions: async (userId) => await sessions.revokeUserSessions(userId),
    listSessions: async (userId) => await sessions.listSessions(userId),
    updateUserClaims: async (userId, claims) => await sessions.updateUserClaims(userId, claims),
    requireAuth,
    events,
    store
  }
}

/** The plugin. Register once per app: `app.register(tokenAuth, { accessTokenSecret, refreshTokenSecret, verifyCredentials })`. */
export const tokenAuth = fp(tokenAuthPlugin, { fastify: '5.x', name: 'fastify-token-auth' })
export default tokenAuth

export { MemoryStore, type MemoryStoreOptions } from './stores/memory.js'
export {
  type Authentication, type CreateOptions, type CreateResult, type RevocationContext, type RevocationRecord, type RotateRequest, type RotateResult,
  type SessionLimit, type SessionRecord, StoreDeadlineError, type TokenStore, type WriteOptions
} from './stores/types.js'
export type { AuthUser, SessionInfo, TokenSet } from './sessions.js'
export type { AccessTokenClaims, RefreshTokenClaims, SignedAccessToken } from './tokens.js'
export type { RequireAuthOptions } from './step-up.js'
export type { RefreshDecision, RefreshHook, RefreshHookContext, RefreshHookSession } from './refresh-hook.js'
export type {
  ClearSiteDataType, CookieOptions, JwksOptions, RateLimitOptions, RefreshRouteOptions, RefreshTokenTransport, RouteOptions, RoutesOptions,
  TokenAuthOptions
} from './options.js'
export { loginThrottlePresets } from './options.js'
export { openApiSecuritySchemes } from './routes/index.js'
export { ACCESS_TOKEN_ALGORITHMS, type AccessTokenAlgorithm, type AccessTokenKey, generateAccessKey, generateSecret } from './keys.js'
export { createVerifyCredentials, hashPassword, verifyPassword, type VerifyCredentialsOptions } from './passwords.js'
export type * from './events.js'
export { TokenAuthEvents } from './events.js'
// For a resource server that verifies our access tokens itself: DPoP-bound ones need their proof
// checked the same way (docs/design.md, «Sender-constrained sessions (DPoP)»).
export {
  accessTokenHash as dpopAccessTokenHash, DPOP_ALGORITHMS, type DpopAlgorithm, DpopProofError, jwkThumbprint,
  type ProofExpectations as DpopProofExpectations, type VerifiedProof as VerifiedDpopProof, verifyProof as verifyDpopProof
} from './dpop/proof.js'
export { collectMetrics, type MetricsCollector, type MetricsOptions, PROMETHEUS_CONTENT_TYPE } from './metrics.js'
export * as errors from './errors.js'
export type { TokenAuthErrorCode } from './errors.js'
