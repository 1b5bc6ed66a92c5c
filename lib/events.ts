import { EventEmitter } from 'node:events'

/** Where a request came from; never any token material. */
export interface ClientInfo {
  ip: string | null
  userAgent: string | null
}

export interface LoginEvent extends ClientInfo { userId: string, sessionId: string }
export interface LoginFailedEvent extends ClientInfo { username: string }
export interface RefreshEvent extends ClientInfo {
  userId: string
  sessionId: string
  /** True when the immediate predecessor was answered inside the grace window. */
  grace: boolean
  /**
   * True when the immediate predecessor was presented after the grace window while its successor
   * was still unused: a client that never received that successor (a lost response, or a
   * rotation the store applied after a 503), answered with a new one that replaces it.
   */
  recovered: boolean
}
export interface ReuseDetectedEvent extends ClientInfo { userId: string, sessionId: string }
export interface LogoutEvent { userId: string, sessionId: string }
export interface LogoutAllEvent { userId: string, sessionIds: string[] }
export type RevocationReason = 'logout' | 'logout-all' | 'reuse' | 'revoked' | 'user-unavailable' | 'session-limit' | 'refresh-denied'
export interface SessionRevokedEvent { userId: string, sessionId: string, reason: RevocationReason }
/** A session started (login or `issueSession`), docs/design.md «Session policy». */
export interface NewSessionEvent extends ClientInfo {
  userId: string
  sessionId: string
  /** Whether another live session of the user has this User-Agent as its latest or first one. */
  knownUserAgent: boolean
}
/** The user of a session proved who they are again (`POST /reauthenticate`), «Step-up authentication». */
export interface ReauthenticatedEvent extends ClientInfo { userId: string, sessionId: string, acr?: string }
/** `updateUserClaims` changed the claims of these sessions («Claims that change»). */
export interface ClaimsUpdatedEvent { userId: string, sessionIds: string[] }
/** The `onRefresh` hook denied a refresh; the session was ended («The refresh risk hook»). */
export interface RefreshDeniedEvent extends ClientInfo { userId: string, sessionId: string, reason: string }
/** The token store stopped answering: the first failed call of an outage. */
export interface StoreUnavailableEvent {
  /** What the failed call threw (a timeout, a refused connection...). */
  cause: unknown
}
/** The token store answers again: the first successful call after an outage. */
export interface StoreRecoveredEvent {
  /** Milliseconds from the first failed call to this one. */
  unavailableMs: number
  /** How many requests the plugin's routes answered 503 meanwhile. */
  unavailableResponses: number
}
/** The plugin's routes whose 503s are counted apart. */
export type TokenAuthRoute = 'login' | 'refresh' | 'reauthenticate' | 'logout' | 'sessions' | 'revoke' | 'introspect' | 'dbscRegistration' | 'dbscRefresh'
/** A plugin route answered 503 (store unavailable): the client was told to retry. */
export interface UnavailableResponseEvent { route: TokenAuthRoute }

/** Every event and its payload, for `tokenAuth.events.on(name, listener)`. */
export interface TokenAuthEventMap {
  login: [LoginEvent]
  loginFailed: [LoginFailedEvent]
  refresh: [RefreshEvent]
  reuseDetected: [ReuseDetectedEvent]
  logout: [LogoutEvent]
  logoutAll: [LogoutAllEvent]
  sessionRevoked: [SessionRevokedEvent]
  newSession: [NewSessionEvent]
  reauthenticated: [ReauthenticatedEvent]
  claimsUpdated: [ClaimsUpdatedEvent]
  refreshDenied: [RefreshDeniedEvent]
  storeUnavailable: [StoreUnavailableEvent]
  storeRecovered: [StoreRecoveredEvent]
  unavailableResponse: [UnavailableResponseEvent]
}

/**
 * A typed emitter for audit and alerting. A listener that throws is reported through
 * `onListenerError` and never changes the answer a client gets.
 */
export class TokenAuthEvents extends EventEmitter<TokenAuthEventMap> {
  readonly #onListenerError: (error: unknown, event: keyof TokenAuthEventMap) => void

  constructor (onListenerError: (error: unknown, event: keyof TokenAuthEventMap) => void) {
    super()
    this.#onListenerError = onListenerError
  }

  override emit<E extends keyof TokenAuthEventMap> (event: E, ...args: TokenAuthEventMap[E]): boolean {
    try {
      return super.emit<E>(event, ...(args as any))
    } catch (error) {
      this.#onListenerError(error, event)
      return true
    }
  }
}
