import type { FastifyRequest } from 'fastify'
import type { DpopAlgorithm } from '../dpop/proof.js'
import type { AccessTokenKey } from '../keys.js'
import type { RefreshHook } from '../refresh-hook.js'
import type { AuthUser } from '../sessions.js'
import type { TokenStore } from '../stores/types.js'

// The options as an app writes them, grouped by what they govern. Each option's default, unit
// and validation are stated once, in ./spec.ts; the compiler ties the two files together, and
// test/options-table.test.ts checks every `@default` below against the spec.
//
// Units, one rule: lifetimes of tokens and sessions are in seconds (like JWT `exp` and a
// cookie's Max-Age); timeouts and intervals of this process are in milliseconds (like
// `setTimeout` and @fastify/rate-limit's `timeWindow`).

export type RefreshTokenTransport = 'cookie' | 'body' | 'both'

/** What `Clear-Site-Data` may name (W3C Clear Site Data). */
export const CLEAR_SITE_DATA_TYPES = ['cache', 'cookies', 'storage', 'executionContexts', 'clientHints', 'prefetchCache', 'prerenderCache', '*'] as const
export type ClearSiteDataType = typeof CLEAR_SITE_DATA_TYPES[number]

/** One ready-made route: rename it, or `false` to leave it out. */
export interface RouteOptions {
  /** Path under `prefix`. */
  path?: string
}

export interface RefreshRouteOptions extends RouteOptions {
  /**
   * `GET` reproduces APIs that refresh with a GET (a migration aid, see
   * examples/seed-compatible.ts). Less safe: a GET can be triggered by a link, an image or a
   * prefetch, and only SameSite and the cross-site check stand between it and a rotation.
   * Needs the cookie transport (a GET has no body).
   * @default 'POST'
   */
  method?: 'POST' | 'GET'
}

/** The ready-made routes, each `{ path }` or `false`. */
export interface RoutesOptions {
  login?: RouteOptions | false
  refresh?: RefreshRouteOptions | false
  logout?: RouteOptions | false
  /** Re-authentication of the current session (step-up): the login's body and the refresh token. */
  reauthenticate?: RouteOptions | false
  sessions?: RouteOptions | false
  /** The RFC 7009 token revocation endpoint. */
  revoke?: RouteOptions | false
  /** The RFC 7662 introspection endpoint, registered when `introspection` names clients. */
  introspect?: RouteOptions | false
  /** DBSC's registration endpoint, registered when `dbsc` is on. */
  dbscRegistration?: RouteOptions | false
  /** DBSC's refresh endpoint, registered when `dbsc` is on: the browser renews the device cookie here. */
  dbscRefresh?: RouteOptions | false
}

export interface CookieOptions {
  /**
   * Cookie name. With `hostPrefix` the name gets the `__Host-` prefix.
   * @default 'refresh_token'
   */
  name?: string
  /**
   * Send the cookie over HTTPS only. Turn off for plain-http development only: it is never
   * derived from request headers, which a client can spoof.
   * @default true
   */
  secure?: boolean
  /**
   * `Strict` keeps the cookie off every cross-site request; `Lax` allows top-level navigations.
   * @default 'strict'
   */
  sameSite?: 'strict' | 'lax'
  /**
   * Cookie path. Scoped to the auth routes so the refresh token travels nowhere else.
   * @default the route prefix
   */
  path?: string
  /** Cookie domain; leave unset to bind the cookie to this host only. */
  domain?: string
  /**
   * Name the cookie `__Host-<name>`: browsers then require Secure, Path=/ and no Domain, so a
   * sibling subdomain cannot plant or overwrite it.
   * @default false
   */
  hostPrefix?: boolean
}

export interface RateLimitOptions {
  /** Attempts within `timeWindow`. */
  max: number
  /** Window length in milliseconds. */
  timeWindow: number
}

/** A resource server allowed to introspect tokens (RFC 7662 §2.1), by HTTP Basic authentication. */
export interface IntrospectionClient {
  /** Its client id, as it sends it in the Basic credentials. */
  id: string
  /** Its secret: at least 32 random bytes, like every secret of the plugin. */
  secret: string
}

export interface IntrospectionOptions {
  /** The resource servers that may call the introspection endpoint. */
  clients: IntrospectionClient[]
  /**
   * Introspection requests per client IP within the window, authenticated or not; `false`
   * disables it (only behind another limiter).
   * @default { max: 600, timeWindow: 60000 }
   */
  rateLimit?: RateLimitOptions | false
}

/** Device Bound Session Credentials (docs/design.md, «Device Bound Session Credentials (DBSC)»). */
export interface DbscOptions {
  /**
   * Name of the short-lived device cookie a DBSC-bound session's refresh needs. With
   * `cookie.hostPrefix` it gets the `__Host-` prefix; its other attributes are the refresh cookie's.
   * @default 'device_session'
   */
  cookieName?: string
  /**
   * Seconds the device cookie lives: how long a copied cookie jar stays usable off the device.
   * The browser renews it with a signature of its key before a refresh needs it.
   * @default 600
   */
  cookieMaxAge?: number
}

export interface JwksOptions {
  /**
   * Path of the route, at the app root (not under `prefix`).
   * @default '/.well-known/jwks.json'
   */
  path?: string
  /**
   * Seconds other services may cache the key set. Keep it below the time a retired key stays
   * listed after it stops signing, so verifiers see new keys before tokens carry them.
   * @default 300
   */
  maxAge?: number
}

/**
 * The plugin's options. Keys are required: `refreshTokenSecret`, and either
 * `accessTokenSecret` (HS256) or `accessTokenKeys`; everything else has a safe default.
 */
export interface TokenAuthOptions {
  // Keys (docs/design.md, «Separate keys and explicit types»)

  /** HMAC key for access tokens (HS256), at least 32 random bytes. Shorthand for `accessTokenKeys: [{ algorithm: 'HS256', secret }]`. */
  accessTokenSecret?: string | Buffer
  /**
   * Access-token keys, instead of `accessTokenSecret`: the first signs, every one verifies
   * (rotation: put the new key first and keep the old one until the tokens it signed have
   * expired). Each token names its key in `kid`; each key pins its algorithm.
   */
  accessTokenKeys?: AccessTokenKey[]
  /** HMAC key for refresh tokens, at least 32 random bytes, different from every access-token secret. Refresh tokens never leave this service, so they are always HS256. */
  refreshTokenSecret: string | Buffer

  // Lifetimes, in seconds (docs/design.md, «Lifetimes»)

  /**
   * Access-token lifetime in seconds. Short, because an access token is checked without the
   * store: revocation reaches it through the in-memory denylist.
   * @default 900
   */
  accessTokenTtl?: number
  /**
   * Idle lifetime of a session in seconds: a refresh token unused this long expires.
   * @default 1209600
   */
  refreshTokenTtl?: number
  /**
   * Absolute lifetime of a session in seconds; refreshing never extends a session beyond it.
   * @default 2592000, or refreshTokenTtl if longer
   */
  sessionMaxAge?: number
  /**
   * Seconds of clock skew tolerated when verifying access tokens. The issuer verifies its own
   * tokens, so there is no skew to forgive by default.
   * @default 0
   */
  clockTolerance?: number

  // Rotation (docs/design.md, «Refresh-token rotation»)

  /**
   * Seconds during which the refresh token just rotated away is answered with the *same*
   * successor (two tabs racing). After the window, or with 0, it is answered with a new
   * successor only while the last one was never used (a lost response, a 503), and is theft
   * once it was.
   * @default 5
   */
  reuseGrace?: number
  /**
   * How many times the predecessor may be answered inside one grace window; beyond it the
   * request gets a 401 (the session stays alive).
   * @default 5
   */
  reuseGraceLimit?: number

  // Access-token claims

  /** `iss` claim of access tokens, checked on verification. */
  issuer?: string
  /** `aud` claim of access tokens, checked on verification. */
  audience?: string

  // Users

  /**
   * Checks a username and password; resolves with the user, or `null` for a bad pair. Must
   * take the same time for unknown users as for wrong passwords. Required for the login route.
   */
  verifyCredentials?: (username: string, password: string, request: FastifyRequest) => Promise<AuthUser | null>
  /**
   * Reloads a user on every refresh, so changed claims reach new access tokens and a disabled
   * user (`null`) loses the session. Without it, the claims captured at login are reused.
   */
  loadUser?: (userId: string) => Promise<AuthUser | null>

  // Session policy (docs/design.md, «Session policy»)

  /**
   * At most this many live sessions per user; a login beyond it applies `sessionLimitPolicy`.
   * Unset: no cap.
   */
  maxSessionsPerUser?: number
  /**
   * What a login over `maxSessionsPerUser` does: `'end-least-recent'` ends the sessions used
   * least recently (their access tokens are refused at once), `'refuse'` answers 403.
   * @default 'end-least-recent'
   */
  sessionLimitPolicy?: 'end-least-recent' | 'refuse'
  /**
   * Called before every refresh of a live session with the session, the client and the request:
   * allow (`undefined`), `{ action: 'deny', reason }` (the session ends, 401) or
   * `{ action: 'shorten', expiresIn }` (seconds left to the session at most). A hook that throws,
   * is late or answers anything else fails closed: 503, nothing rotated.
   */
  onRefresh?: RefreshHook
  /**
   * Milliseconds `onRefresh` may take before the refresh answers 503.
   * @default 1000
   */
  onRefreshTimeout?: number

  // Routes and what travels on them

  /**
   * Prefix of the ready-made routes.
   * @default '/auth'
   */
  prefix?: string
  /**
   * The ready-made routes; `false` registers none (helpers and the hook still work).
   * Each route takes `{ path }` or `false`.
   * @default { login: '/login', refresh: '/refresh', reauthenticate: '/reauthenticate', logout: '/logout', sessions: '/sessions', revoke: '/revoke', introspect: '/introspect', dbscRegistration: '/dbsc/registration', dbscRefresh: '/dbsc/refresh' }
   */
  routes?: false | RoutesOptions
  /**
   * Shape of the login and refresh responses. `'oauth2'` makes them an RFC 6749 token endpoint:
   * `{ access_token, token_type, expires_in, refresh_token? }`, errors as
   * `{ error: 'invalid_grant' | 'invalid_request' | 'unsupported_grant_type', error_description }`
   * with status 400, the body field `refresh_token`, an optional `grant_type`, and
   * form-encoded bodies accepted besides JSON.
   * @default 'default'
   */
  responseFormat?: 'default' | 'oauth2'
  /**
   * How the refresh token travels: an HttpOnly cookie (browsers), a JSON body field
   * `refreshToken` (mobile and CLI clients), or either (the request decides).
   * @default 'cookie'
   */
  refreshTokenTransport?: RefreshTokenTransport
  /** The refresh-token cookie. */
  cookie?: CookieOptions
  /**
   * Origins besides the server's own allowed to call the cookie-authenticated routes
   * (exact `scheme://host[:port]` strings).
   * @default []
   */
  allowedOrigins?: string[]
  /**
   * Send `Clear-Site-Data` with a successful logout, so the browser drops what the app cached or
   * stored for the signed-out user. `true` clears `"cache", "cookies", "storage"` — every cookie
   * of the origin, not only ours.
   * @default false
   */
  clearSiteData?: boolean | ClearSiteDataType[]
  /**
   * Publish the public access-token keys at `GET /.well-known/jwks.json` (RFC 7517), so other
   * services verify our access tokens without sharing a secret. Needs an asymmetric key;
   * HMAC secrets are never published.
   * @default false
   */
  jwks?: boolean | JwksOptions
  /**
   * The RFC 7662 introspection endpoint (`POST /introspect`) for resource servers that must see
   * a revocation at once: the clients allowed to call it and its rate limit. Off unless set.
   * @default false
   */
  introspection?: false | IntrospectionOptions

  // Login throttling (see `loginThrottlePresets`)

  /**
   * Login attempts per client IP; `false` disables throttling (only behind another limiter).
   * @default { max: 10, timeWindow: 60000 }
   */
  loginRateLimit?: RateLimitOptions | false
  /**
   * Login attempts per account (the normalised username, whether or not it exists) within the
   * window, on top of the per-IP `loginRateLimit`; `false` disables it.
   * @default { max: 20, timeWindow: 900000 }
   */
  accountRateLimit?: RateLimitOptions | false

  // Sender-constrained sessions (RFC 9449; docs/design.md, «Sender-constrained sessions (DPoP)»)

  /**
   * DPoP: `'optional'` binds a session to the key of the DPoP proof its login carries (a login
   * without one is a bearer session), `'required'` refuses logins and refreshes without a proof.
   * Needs a store with `useOnce`, the proofs' replay cache (the three stores here have it).
   * @default 'off'
   */
  dpop?: 'off' | 'optional' | 'required'
  /**
   * The proof algorithms accepted, a non-empty subset of the default.
   * @default ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256', 'ES384']
   */
  dpopAlgorithms?: DpopAlgorithm[]
  /**
   * Seconds a DPoP proof stays acceptable after its `iat`; its `jti` is remembered that long.
   * @default 60
   */
  dpopProofLifetime?: number
  /**
   * Require a server nonce in every DPoP proof (RFC 9449 §8): answers carry `DPoP-Nonce`, and a
   * proof without a current one is refused with `use_dpop_nonce` (the client retries once).
   * @default false
   */
  dpopNonce?: boolean
  /**
   * Device Bound Session Credentials (W3C DBSC) for browsers: login offers the browser to bind the
   * refresh cookie to a key it keeps (a TPM where it has one); once bound, a refresh also needs a
   * short-lived device cookie that only that browser can renew. Browsers without DBSC keep bearer
   * sessions. Needs the cookie transport (`'cookie'` or `'both'`) and a store with `useOnce`.
   * `true` takes the defaults.
   * @default false
   */
  dbsc?: boolean | DbscOptions

  // The store, and this process's work around it

  /**
   * Where sessions live.
   * @default a new MemoryStore (one process, lost on restart)
   */
  store?: TokenStore
  /**
   * Milliseconds a store call may take before the request answers 503.
   * @default 5000
   */
  storeTimeout?: number
  /**
   * Milliseconds between sweeps of expired sessions and revocation entries.
   * @default 60000
   */
  sweepInterval?: number
  /**
   * Milliseconds between reads of the store's revocation feed: the longest another process may
   * still accept the access tokens of a session revoked elsewhere when the store cannot push
   * revocations (or missed one while disconnected).
   * @default 5000
   */
  revocationPollInterval?: number
  /**
   * Verified access tokens cached (LRU, keyed by the whole token, bounded by `exp`), so a client
   * reusing its token skips the HMAC; revocation is still checked on every request.
   * 0 disables the cache.
   * @default 1000
   */
  verifyCacheSize?: number
}
