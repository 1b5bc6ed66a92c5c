import {
  AlreadyBoundError, ClaimsChangedError, GraceExhaustedError, InvalidRefreshTokenError, RefreshDeniedError, RefreshTokenExpiredError, RefreshTokenReusedError,
  SessionLimitReachedError, SessionRevokedError, UserUnavailableError
} from './errors.js'
import type { ClientInfo, RevocationReason, TokenAuthEvents } from './events.js'
import { type AuthUser, type RotationChanges, type SessionInfo, sessionInfoOf, type SessionServiceOptions, type TokenSet } from './session-types.js'
import type { RevocationList } from './revocations.js'
import { RevocationFeed } from './revocation-feed.js'
import { StoreCalls } from './store-calls.js'
import type { StoreHealth } from './store-health.js'
import { hookSession, type RefreshHook, type RefreshHookContext, runRefreshHook } from './refresh-hook.js'
import { authenticationAt, isKnownUserAgent, sessionLimitOf } from './session-policy.js'
import type { SessionLimit, SessionRecord, TokenStore } from './stores/types.js'
import { type AccessTokenClaims, randomId, type SignedAccessToken, type TokenCodec } from './tokens.js'
import { type KeyBinding, type PresentedRefreshToken, TOKEN_ID_BYTES } from './refresh-tokens.js'
import { checkBinding, type DpopMode } from './dpop/binding.js'

export type { AuthUser, SessionInfo, SessionServiceOptions, TokenSet } from './session-types.js'

/** A session, the refresh token it is answered with, and the DPoP key the request proved, if any. */
type Grant = { refreshToken: string, session: SessionRecord, proofKey: string | undefined }

/**
 * The token state machine (docs/design.md, «Token model»): issue, rotate with grace and theft detection, revoke, list.
 * No Fastify types: routes and helpers call it, stores persist it, events report it.
 */
export class SessionService {
  readonly #store: TokenStore
  readonly #codec: TokenCodec
  readonly #events: TokenAuthEvents
  readonly #revocations: RevocationList
  readonly #idleTtl: number
  readonly #maxAge: number
  readonly #grace: number
  readonly #graceLimit: number
  /** Every store call, with its deadline and health report. */
  readonly #calls: StoreCalls
  readonly #revocationTtl: number
  readonly #feed: RevocationFeed
  readonly #loadUser: ((userId: string) => Promise<AuthUser | null>) | undefined
  readonly #onRefresh: RefreshHook | undefined
  readonly #onRefreshTimeout: number
  readonly #sessionLimit: SessionLimit | undefined
  readonly #dpop: DpopMode
  readonly now: () => number
  /** Whether the store is answering; every store call reports to it. */
  readonly health: StoreHealth

  constructor (options: SessionServiceOptions) {
    this.#store = options.store
    this.#codec = options.codec
    this.#events = options.events
    this.#revocations = options.revocations
    this.#idleTtl = options.refreshTokenTtl * 1000
    this.#maxAge = options.sessionMaxAge * 1000
    this.#grace = options.reuseGrace * 1000
    this.#graceLimit = options.reuseGraceLimit
    this.#calls = new StoreCalls(options.storeTimeout, options.events)
    this.#revocationTtl = options.revocationTtl
    this.#loadUser = options.loadUser
    this.#onRefresh = options.onRefresh
    this.#onRefreshTimeout = options.onRefreshTimeout ?? 1000
    this.#sessionLimit = sessionLimitOf(options, this.#revocationTtl)
    this.#dpop = options.dpop ?? 'off'
    this.now = options.now ?? Date.now
    this.health = this.#calls.health
    this.#feed = new RevocationFeed(this.#store, this.#revocations, this.#calls, this.now, this.#revocationTtl)
  }

  /**
   * Starts a session for an authenticated user and returns its first tokens. With
   * `maxSessionsPerUser`, the store ends the least recently used sessions or refuses (403), in
   * the same step as the insert (docs/design.md, «Session caps»). `proofKey`: the thumbprint of
   * the DPoP key the login proved, which the session is bound to («Sender-constrained sessions (DPoP)»).
   */
  async issue (user: AuthUser, client: ClientInfo, proofKey?: string): Promise<TokenSet> {
    if (typeof user?.id !== 'string' || user.id === '') {
      // A bug in the app's callback, not a client error: fail loudly rather than sign `sub: undefined`.
      throw new TypeError('fastify-token-auth: a user must be an object with a non-empty string `id`')
    }
    const now = this.now()
    const authentication = authenticationAt(now, user)
    // Only worth a store read when someone listens («Session policy»).
    const known = this.#events.listenerCount('newSession') > 0
      ? isKnownUserAgent(await this.#calls.run(() => this.#store.listUserSessions(user.id, now)), client)
      : false
    const sessionId = this.#store.sessionIdFor?.(user.id) ?? randomId(16)
    const minted = this.#codec.refresh.mint(user.id, sessionId, randomId(TOKEN_ID_BYTES), proofKey === undefined ? {} : { jkt: proofKey })
    const absoluteExpiresAt = now + this.#maxAge
    const session: SessionRecord = {
      id: sessionId,
      userId: user.id,
      claims: user.claims ?? {},
      createdAt: now,
      lastUsedAt: now,
      expiresAt: Math.min(now + this.#idleTtl, absoluteExpiresAt),
      absoluteExpiresAt,
      tokenHash: minted.hash,
      previousTokenHash: null,
      rotatedAt: null,
      graceUses: 0,
      userAgent: client.userAgent,
      ip: client.ip,
      firstUserAgent: client.userAgent,
      firstIp: client.ip,
      authentication,
      claimsVersion: 0
    }
    const sessionLimit = this.#sessionLimit
    const result = await this.#calls.run((deadline) => this.#store.createSession(session, sessionLimit === undefined ? { deadline } : { deadline, sessionLimit }))
    if (result.outcome === 'refused') throw new SessionLimitReachedError()
    for (const ended of result.ended) this.#revoked(ended, 'session-limit', now)
    this.#events.emit('login', { userId: user.id, sessionId: session.id, ...client })
    this.#events.emit('newSession', { userId: user.id, sessionId: session.id, ...client, knownUserAgent: known })
    return this.#tokens({ refreshToken: minted.token, session, proofKey }, now)
  }

  /**
   * Exchanges a refresh token for new tokens (docs/design.md, «Refresh-token rotation»). Throws a
   * coded 401 for anything but the current token or its predecessor (answered inside the grace
   * window, recovered after it while its successor is unused); reuse ends the session. The
   * `onRefresh` hook, when set, decides first («The refresh risk hook»). `proofKey`: the DPoP key
   * the request proved, which a bound session's must be («Sender-constrained sessions (DPoP)»).
   */
  async refresh (refreshToken: string, client: ClientInfo, request?: RefreshHookContext['request'], proofKey?: string): Promise<TokenSet> {
    const presented = this.#codec.refresh.read(refreshToken)
    checkBinding(this.#dpop, presented, proofKey)
    const changes: RotationChanges = {}
    if (this.#loadUser !== undefined) {
      const user = await this.#loadUser(presented.sub)
      if (user === null) {
        await this.revokeSession(presented.sid, { reason: 'user-unavailable' })
        throw new UserUnavailableError()
      }
      changes.claims = user.claims ?? {}
    }
    if (this.#onRefresh !== undefined) {
      const expiresIn = await this.#checkRefresh(this.#onRefresh, presented, client, request)
      if (expiresIn !== undefined) changes.absoluteExpiresAt = this.now() + expiresIn * 1000
    }
    const { outcome, tokens } = await this.#rotate(presented, client, changes, proofKey)
    // The hottest event: its payload is built only when someone listens.
    if (this.#events.listenerCount('refresh') > 0) {
      this.#events.emit('refresh', {
        userId: tokens.userId, sessionId: tokens.sessionId, grace: outcome === 'grace', recovered: outcome === 'recovered', ...client
      })
    }
    return tokens
  }

  /**
   * Re-authentication (docs/design.md, «Step-up authentication»): the session of the refresh
   * token, whose user `user` must be (the caller checked the password), proved who it is now.
   * Same session, fresh tokens with the new `auth_time`. A grace answer would re-issue tokens
   * of the old authentication, so it is refused as superseded.
   */
  async reauthenticate (refreshToken: string, user: AuthUser, client: ClientInfo, proofKey?: string): Promise<TokenSet> {
    const presented = this.#codec.refresh.read(refreshToken)
    checkBinding(this.#dpop, presented, proofKey)
    const authentication = authenticationAt(this.now(), user)
    const { outcome, tokens } = await this.#rotate(presented, client, { claims: user.claims ?? {}, authentication }, proofKey)
    if (outcome === 'grace') throw new GraceExhaustedError()
    this.#events.emit('reauthenticated', {
      userId: tokens.userId, sessionId: tokens.sessionId, ...(authentication.acr !== undefined ? { acr: authentication.acr } : {}), ...client
    })
    return tokens
  }

  /**
   * Binds a bearer session to a browser's DBSC key (docs/design.md, «Device Bound Session
   * Credentials (DBSC)»): the refresh token rotates into one naming the key. The route checked the
   * browser's proof; a session bound already (to a DPoP or a DBSC key) never changes key.
   */
  async bindDevice (refreshToken: string, client: ClientInfo, deviceKey: string): Promise<TokenSet> {
    const presented = this.#codec.refresh.read(refreshToken)
    if (presented.jkt !== undefined || presented.dbsc !== undefined) throw new AlreadyBoundError()
    return (await this.#rotate(presented, client, {}, undefined, { dbsc: deviceKey })).tokens
  }

  /**
   * Asks the hook about a refresh of a live session; resolves with the seconds of a `shorten`.
   * A session that is not live is not shown: the rotation fails as it would without the hook.
   */
  async #checkRefresh (hook: RefreshHook, presented: PresentedRefreshToken, client: ClientInfo, request: RefreshHookContext['request']): Promise<number | undefined> {
    const session = await this.#calls.run(() => this.#store.getSession(presented.sid, this.now()))
    if (session === null) return undefined
    const decision = await runRefreshHook(hook, this.#onRefreshTimeout, { session: hookSession(session), client, request })
    if (decision.action === 'deny') {
      await this.revokeSession(session.id, { reason: 'refresh-denied' })
      this.#events.emit('refreshDenied', { userId: session.userId, sessionId: session.id, reason: decision.reason, ...client })
      throw new RefreshDeniedError()
    }
    return decision.action === 'shorten' ? decision.expiresIn : undefined
  }

  /**
   * One rotation of the presented token, and the tokens it yields; every other outcome is its coded
   * 401. The successor is bound to the presented token's key unless `binding` names another.
   */
  async #rotate (
    presented: PresentedRefreshToken, client: ClientInfo, changes: RotationChanges, proofKey: string | undefined, binding: KeyBinding = presented
  ): Promise<{ outcome: 'rotated' | 'recovered' | 'grace', tokens: TokenSet }> {
    const now = this.now()
    // Minted before the store is asked: the store needs its hash.
    const next = this.#codec.refresh.successor(presented, now, binding)
    const result = await this.#calls.run((deadline) => this.#store.rotate({
      sessionId: presented.sid,
      presentedHash: presented.hash,
      nextHash: next.hash,
      now,
      idleTtl: this.#idleTtl,
      grace: this.#grace,
      graceLimit: this.#graceLimit,
      userAgent: client.userAgent,
      ip: client.ip,
      ...changes,
      keepRevocationFor: this.#revocationTtl,
      deadline
    }))
    switch (result.outcome) {
      case 'rotated':
      case 'recovered':
      case 'grace': {
        const { session } = result
        const refreshToken = result.outcome === 'grace' ? this.#graceAnswer(presented, session, binding) : next.token
        return { outcome: result.outcome, tokens: this.#tokens({ refreshToken, session, proofKey }, now) }
      }
      case 'reused':
        this.#revoked(result.session, 'reuse', now)
        this.#events.emit('reuseDetected', { userId: result.session.userId, sessionId: result.session.id, ...client })
        throw new RefreshTokenReusedError()
      case 'superseded':
        throw new GraceExhaustedError()
      case 'expired':
        throw new RefreshTokenExpiredError()
      default:
        throw new InvalidRefreshTokenError()
    }
  }

  /**
   * Ends one session, only if it belongs to `userId` when given. Its access tokens fail at once.
   * Resolves with whether a session was ended.
   */
  async revokeSession (sessionId: string, options: { userId?: string, reason?: RevocationReason } = {}): Promise<boolean> {
    const session = await this.#calls.run(() => this.#store.revokeSession(sessionId, options.userId, this.#revocationContext()))
    if (session === null) return false
    const reason = options.reason ?? 'revoked'
    this.#revoked(session, reason, this.now())
    if (reason === 'logout') this.#events.emit('logout', { userId: session.userId, sessionId })
    return true
  }

  /** Ends every session of a user; resolves with the ids ended. */
  async revokeUserSessions (userId: string, reason: RevocationReason = 'revoked'): Promise<string[]> {
    const context = this.#revocationContext()
    const sessionIds = await this.#calls.run(() => this.#store.revokeUserSessions(userId, context))
    for (const sessionId of sessionIds) {
      this.#revocations.add(sessionId, context.now)
      this.#events.emit('sessionRevoked', { userId, sessionId, reason })
    }
    if (reason === 'logout-all') this.#events.emit('logoutAll', { userId, sessionIds })
    return sessionIds
  }

  /**
   * Replaces the claims of every live session of a user (docs/design.md, «Claims that change»):
   * their access tokens signed before are refused here at once, on other processes through the
   * feed, and the next refresh signs the new claims. Resolves with the ids of the sessions.
   */
  async updateUserClaims (userId: string, claims: Record<string, unknown>): Promise<string[]> {
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
      throw new TypeError('fastify-token-auth: updateUserClaims takes the claims as an object')
    }
    const records = await this.#calls.run(() => this.#store.updateUserClaims(userId, claims, this.#revocationContext()))
    for (const record of records) this.#revocations.learn(record)
    const sessionIds = records.map((record) => record.sessionId)
    this.#events.emit('claimsUpdated', { userId, sessionIds })
    return sessionIds
  }

  /**
   * Ends the session a refresh token belongs to. A token that does not verify (expired, forged,
   * garbage) identifies no live session, so there is nothing to end: resolves with `false`; so
   * does a bound session's token without a proof of its key (`proofKey`): a thief without the key
   * cannot end it («Sender-constrained sessions (DPoP)»).
   */
  async logout (refreshToken: string, proofKey?: string): Promise<boolean> {
    const presented = this.readRefreshToken(refreshToken)
    if (presented === null || (presented.jkt !== undefined && presented.jkt !== proofKey)) return false
    return await this.revokeSession(presented.sid, { reason: 'logout' })
  }

  /**
   * Records a DPoP proof as spent (the store's replay cache, across processes); resolves with
   * whether this was its first use. A store that cannot answer makes it a 503, like any call.
   */
  async spendProof (replayKey: string, expiresAt: number): Promise<boolean> {
    return await this.#calls.run(() => (this.#store.useOnce as NonNullable<TokenStore['useOnce']>)(replayKey, expiresAt, this.now()))
  }

  /** What a refresh token names, if we minted it; throws its coded 401 otherwise (as a refresh would). */
  presentedRefreshToken (refreshToken: string): PresentedRefreshToken {
    return this.#codec.refresh.read(refreshToken)
  }

  /** What a refresh token names if we minted it (its tag verifies), else `null`; no store call. */
  readRefreshToken (refreshToken: string): PresentedRefreshToken | null {
    return this.#codec.refresh.tryRead(refreshToken)
  }

  /** A live session of the user, as the store has it now (an instance's denylist may lag), or `null`. */
  async liveSession (userId: string, sessionId: string): Promise<SessionRecord | null> {
    const sessions = await this.#calls.run(() => this.#store.listUserSessions(userId, this.now()))
    return sessions.find((session) => session.id === sessionId) ?? null
  }

  /** The user's live sessions, oldest first. */
  async listSessions (userId: string): Promise<SessionInfo[]> {
    const sessions = await this.#calls.run(() => this.#store.listUserSessions(userId, this.now()))
    return sessions.map(sessionInfoOf)
  }

  /** Signs an access token for an existing session (without `auth_time`: the caller vouches for no authentication). */
  signAccessToken (userId: string, sessionId: string, claims: Record<string, unknown>): SignedAccessToken {
    return this.#codec.signAccessToken(userId, sessionId, claims, this.now())
  }

  /**
   * Verifies an access token: signature, type and claims, then the revoked-session check («Revocation reaches access tokens»)
   * and the claims-version check («Claims that change»), Map lookups, so protected requests never wait for the store.
   */
  verifyAccessToken<Claims extends AccessTokenClaims> (token: string): Claims {
    const claims = this.#codec.verifyAccessToken<Claims>(token)
    if (this.#revocations.has(claims.sid)) throw new SessionRevokedError()
    if (this.#revocations.isStale(claims.sid, claims.cv)) throw new ClaimsChangedError()
    return claims
  }

  /** Reads the store's revocation feed into the denylist (./revocation-feed.ts); resolves with how many entries were read. */
  async pollRevocations (): Promise<number> {
    return await this.#feed.poll()
  }

  /** Subscribes the denylist to the store's pushed revocations, when it can push. */
  async subscribeRevocations (): Promise<(() => Promise<void>) | undefined> {
    return await this.#feed.subscribe()
  }

  /** Drops expired sessions and revocation entries. */
  async sweep (): Promise<number> {
    const now = this.now()
    this.#revocations.prune(now)
    return await this.#calls.run(() => this.#store.sweep(now))
  }

  #revocationContext (): { now: number, keepFor: number } {
    return { now: this.now(), keepFor: this.#revocationTtl }
  }

  #revoked (session: SessionRecord, reason: RevocationReason, now: number): void {
    this.#revocations.add(session.id, now)
    this.#events.emit('sessionRevoked', { userId: session.userId, sessionId: session.id, reason })
  }

  /**
   * A grace answer re-issues the successor minted at the rotation (or recovery) it follows, only if
   * the session holds exactly that token: a DBSC registration mints another spelling, which a racing
   * request cannot rebuild, and a token the session does not hold would later read as theft.
   */
  #graceAnswer (presented: PresentedRefreshToken, session: SessionRecord, binding: KeyBinding): string {
    const again = this.#codec.refresh.successor(presented, session.rotatedAt as number, binding)
    if (again.hash !== session.tokenHash) throw new GraceExhaustedError()
    return again.token
  }

  #tokens ({ refreshToken, session, proofKey }: Grant, now: number): TokenSet {
    const access = this.#codec.signAccessToken(session.userId, session.id, session.claims, now, session, proofKey)
    return {
      accessToken: access.token,
      tokenType: proofKey === undefined ? 'Bearer' : 'DPoP',
      expiresIn: access.expiresIn,
      refreshToken,
      refreshTokenExpiresAt: session.expiresAt,
      sessionId: session.id,
      userId: session.userId
    }
  }
}
