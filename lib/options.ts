import type { FastifyRequest } from 'fastify'
import { InvalidOptionError } from './errors.js'
import { type AccessTokenKey, type ResolvedKey, resolveAccessKeys, validateSecret } from './keys.js'
import type { AuthUser } from './sessions.js'
import type { TokenStore } from './stores/types.js'

export const DEFAULT_ACCESS_TOKEN_TTL = 15 * 60
export const DEFAULT_REFRESH_TOKEN_TTL = 14 * 24 * 60 * 60
export const DEFAULT_SESSION_MAX_AGE = 30 * 24 * 60 * 60
export const DEFAULT_REUSE_GRACE = 5
export const DEFAULT_REUSE_GRACE_LIMIT = 5
export const DEFAULT_PREFIX = '/auth'
export const DEFAULT_COOKIE_NAME = 'refresh_token'
/**
 * Login throttling presets. Both limits count every attempt before the password is checked, so
 * a throttled client learns nothing (the right password is refused too). The per-account limit
 * stops slow guessing against one account from many addresses; it is kept loose enough that a
 * stranger cannot lock a user out for long (ASVS v5 6.3.1: no malicious lockout).
 */
export const loginThrottlePresets = {
  /** Internet-facing admin consoles: 5 per minute per IP, 5 per 15 minutes per account. */
  strict: { loginRateLimit: { max: 5, timeWindow: 60_000 }, accountRateLimit: { max: 5, timeWindow: 15 * 60_000 } },
  /** The defaults: 10 per minute per IP, 20 per 15 minutes per account. */
  balanced: { loginRateLimit: { max: 10, timeWindow: 60_000 }, accountRateLimit: { max: 20, timeWindow: 15 * 60_000 } },
  /** Many users behind one NAT (campus, office): 60 per minute per IP, 30 per 15 minutes per account. */
  relaxed: { loginRateLimit: { max: 60, timeWindow: 60_000 }, accountRateLimit: { max: 30, timeWindow: 15 * 60_000 } }
} as const satisfies Record<string, { loginRateLimit: RateLimitOptions, accountRateLimit: RateLimitOptions }>
export const DEFAULT_LOGIN_RATE_LIMIT = loginThrottlePresets.balanced.loginRateLimit
export const DEFAULT_ACCOUNT_RATE_LIMIT = loginThrottlePresets.balanced.accountRateLimit
export const DEFAULT_JWKS_PATH = '/.well-known/jwks.json'
export const DEFAULT_JWKS_MAX_AGE = 300
/** What `clearSiteData: true` clears: everything but execution contexts. */
const DEFAULT_CLEAR_SITE_DATA = ['cache', 'cookies', 'storage'] as const
const CLEAR_SITE_DATA_TYPES = ['cache', 'cookies', 'storage', 'executionContexts', 'clientHints', 'prefetchCache', 'prerenderCache', '*'] as const
export type ClearSiteDataType = typeof CLEAR_SITE_DATA_TYPES[number]
export const DEFAULT_STORE_TIMEOUT = 5000
export const DEFAULT_SWEEP_INTERVAL = 60_000
export const DEFAULT_REVOCATION_POLL_INTERVAL = 5000
export const DEFAULT_VERIFY_CACHE_SIZE = 1000
export { MIN_SECRET_BYTES } from './keys.js'
/** A browser caps cookie lifetimes at 400 days (RFC 6265bis); so do we. */
const MAX_LIFETIME = 400 * 24 * 60 * 60

export type RefreshTokenTransport = 'cookie' | 'body' | 'both'

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

/** The plugin's options. Secrets are required; everything else has a safe default. */
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

interface TokenAuthBaseOptions {
  /** HMAC key for refresh tokens, at least 32 random bytes, different from every access-token secret. Refresh tokens never leave this service, so they are always HS256. */
  refreshTokenSecret: string | Buffer
  /**
   * Access-token lifetime in seconds. Short, because an access token is checked without the
   * store: revocation reaches it through the in-memory denylist.
   * @default 900
   */
  accessTokenTtl?: number
  /**
   * Idle lifetime of a session in seconds: a refresh token unused this long expires.
   * @default 1209600 (14 days)
   */
  refreshTokenTtl?: number
  /**
   * Absolute lifetime of a session in seconds; refreshing never extends a session beyond it.
   * @default 2592000 (30 days)
   */
  sessionMaxAge?: number
  /**
   * Seconds during which the refresh token just rotated away is answered with the *same*
   * successor (two tabs racing). After the window, or with 0, it is answered with a new
   * successor only while the last one was never used (a lost response, a 503), and is theft
   * once it was (docs/design.md, «Refresh-token rotation»).
   * @default 5
   */
  reuseGrace?: number
  /**
   * How many times the predecessor may be answered inside one grace window; beyond it the
   * request gets a 401 (the session stays alive).
   * @default 5
   */
  reuseGraceLimit?: number
  /** `iss` claim of access tokens, checked on verification. */
  issuer?: string
  /** `aud` claim of access tokens, checked on verification. */
  audience?: string
  /**
   * Seconds of clock skew tolerated when verifying access tokens. The issuer verifies its own
   * tokens, so there is no skew to forgive by default.
   * @default 0
   */
  clockTolerance?: number
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
  /**
   * Where sessions live.
   * @default a new MemoryStore (one process, lost on restart)
   */
  store?: TokenStore
  /**
   * Prefix of the ready-made routes.
   * @default '/auth'
   */
  prefix?: string
  /**
   * The ready-made routes; `false` registers none (helpers and the hook still work).
   * Each route takes `{ path }` or `false`.
   */
  routes?: false | {
    login?: RouteOptions | false
    refresh?: RefreshRouteOptions | false
    logout?: RouteOptions | false
    sessions?: RouteOptions | false
  }
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
   * Login attempts per client IP; `false` disables throttling (only behind another limiter).
   * @default { max: 10, timeWindow: 60000 }
   */
  loginRateLimit?: RateLimitOptions | false
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
  /**
   * Publish the public access-token keys at `GET /.well-known/jwks.json` (RFC 7517), so other
   * services verify our access tokens without sharing a secret. Needs an asymmetric key;
   * HMAC secrets are never published.
   * @default false
   */
  jwks?: boolean | JwksOptions
  /**
   * Send `Clear-Site-Data` with a successful logout, so the browser drops what the app cached or
   * stored for the signed-out user. `true` clears `"cache", "cookies", "storage"` — every cookie
   * of the origin, not only ours.
   * @default false
   */
  clearSiteData?: boolean | ClearSiteDataType[]
  /**
   * Login attempts per account (the normalised username, whether or not it exists) within the
   * window, on top of the per-IP `loginRateLimit`; `false` disables it. See `loginThrottlePresets`.
   * @default { max: 20, timeWindow: 900000 }
   */
  accountRateLimit?: RateLimitOptions | false
  /**
   * Shape of the login and refresh responses. `'oauth2'` makes them an RFC 6749 token endpoint:
   * `{ access_token, token_type, expires_in, refresh_token? }`, errors as
   * `{ error: 'invalid_grant' | 'invalid_request' | 'unsupported_grant_type', error_description }`
   * with status 400, the body field `refresh_token`, an optional `grant_type`, and
   * form-encoded bodies accepted besides JSON.
   * @default 'default'
   */
  responseFormat?: 'default' | 'oauth2'
}

/**
 * The plugin's options. Keys are required: `refreshTokenSecret`, and either
 * `accessTokenSecret` (HS256) or `accessTokenKeys`; everything else has a safe default.
 */
export interface TokenAuthOptions extends TokenAuthBaseOptions {
  /** HMAC key for access tokens (HS256), at least 32 random bytes. Shorthand for `accessTokenKeys: [{ algorithm: 'HS256', secret }]`. */
  accessTokenSecret?: string | Buffer
  /**
   * Access-token keys, instead of `accessTokenSecret`: the first signs, every one verifies
   * (rotation: put the new key first and keep the old one until the tokens it signed have
   * expired). Each token names its key in `kid`; each key pins its algorithm.
   */
  accessTokenKeys?: AccessTokenKey[]
}

/** Options after validation, defaults filled. */
export interface ResolvedOptions {
  accessKeys: ResolvedKey[]
  refreshTokenSecret: string | Buffer
  accessTokenTtl: number
  refreshTokenTtl: number
  sessionMaxAge: number
  reuseGrace: number
  reuseGraceLimit: number
  issuer: string | undefined
  audience: string | undefined
  clockTolerance: number
  verifyCredentials: TokenAuthOptions['verifyCredentials']
  loadUser: TokenAuthOptions['loadUser']
  store: TokenStore | undefined
  prefix: string
  routes: { login: string | false, refresh: string | false, logout: string | false, sessions: string | false }
  refreshTokenTransport: RefreshTokenTransport
  cookie: { name: string, secure: boolean, sameSite: 'strict' | 'lax', path: string, domain: string | undefined }
  allowedOrigins: string[]
  loginRateLimit: RateLimitOptions | false
  storeTimeout: number
  sweepInterval: number
  revocationPollInterval: number
  verifyCacheSize: number
  jwks: { path: string, maxAge: number } | false
  clearSiteData: string | undefined
  accountRateLimit: RateLimitOptions | false
  refreshMethod: 'POST' | 'GET'
  responseFormat: 'default' | 'oauth2'
}

const KNOWN_OPTIONS = new Set([
  'accessTokenSecret', 'refreshTokenSecret', 'accessTokenTtl', 'refreshTokenTtl', 'sessionMaxAge',
  'reuseGrace', 'reuseGraceLimit', 'issuer', 'audience', 'clockTolerance', 'verifyCredentials', 'loadUser',
  'store', 'prefix', 'routes', 'refreshTokenTransport', 'cookie', 'allowedOrigins', 'loginRateLimit',
  'storeTimeout', 'sweepInterval', 'revocationPollInterval', 'verifyCacheSize', 'accessTokenKeys', 'jwks',
  'clearSiteData', 'accountRateLimit', 'responseFormat'
])
const STORE_METHODS = ['createSession', 'rotate', 'revokeSession', 'revokeUserSessions', 'listUserSessions', 'revokedSince', 'sweep', 'close']
const ROUTE_NAMES = ['login', 'refresh', 'logout', 'sessions'] as const
const DEFAULT_ROUTE_PATHS = { login: '/login', refresh: '/refresh', logout: '/logout', sessions: '/sessions' }

/** Validates the options and fills defaults; throws `FST_TOKEN_AUTH_INVALID_OPTION` naming the option. */
export function resolveOptions (options: TokenAuthOptions): ResolvedOptions {
  // Fastify passes its own registration keys alongside ours.
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key) && !['prefix', 'logLevel', 'logSerializers'].includes(key)) {
      throw new InvalidOptionError(key, `unknown option; valid options are ${[...KNOWN_OPTIONS].join(', ')}`)
    }
  }
  const accessKeys = resolveAccessKeys(options.accessTokenKeys, options.accessTokenSecret)
  const refreshTokenSecret = validateSecret(options.refreshTokenSecret, 'refreshTokenSecret')
  if (accessKeys.some((key) => key.algorithm === 'HS256' && Buffer.from(key.verificationKey).equals(Buffer.from(refreshTokenSecret)))) {
    throw new InvalidOptionError('refreshTokenSecret', 'must differ from every access-token secret, so neither token verifies as the other')
  }
  const accessTokenTtl = seconds(options.accessTokenTtl, DEFAULT_ACCESS_TOKEN_TTL, 'accessTokenTtl')
  const refreshTokenTtl = seconds(options.refreshTokenTtl, DEFAULT_REFRESH_TOKEN_TTL, 'refreshTokenTtl')
  const sessionMaxAge = seconds(options.sessionMaxAge ?? Math.max(DEFAULT_SESSION_MAX_AGE, refreshTokenTtl), DEFAULT_SESSION_MAX_AGE, 'sessionMaxAge')
  if (sessionMaxAge < refreshTokenTtl) {
    throw new InvalidOptionError('sessionMaxAge', `must be at least refreshTokenTtl (${refreshTokenTtl}), got ${sessionMaxAge}`)
  }
  const prefix = path(options.prefix ?? DEFAULT_PREFIX, 'prefix', true)
  const routes = resolveRoutes(options.routes)
  const transport = oneOf(options.refreshTokenTransport, ['cookie', 'body', 'both'] as const, 'cookie', 'refreshTokenTransport')
  if (routes.login !== false && typeof options.verifyCredentials !== 'function') {
    throw new InvalidOptionError('verifyCredentials', 'a function is required while the login route is enabled (set routes.login to false otherwise)')
  }
  optionalFunction(options.loadUser, 'loadUser')
  const refreshRoute = options.routes === false ? undefined : options.routes?.refresh
  const refreshMethod = oneOf(refreshRoute === false ? undefined : refreshRoute?.method, ['POST', 'GET'] as const, 'POST', 'routes.refresh.method')
  if (refreshMethod === 'GET' && transport !== 'cookie') {
    throw new InvalidOptionError('routes.refresh.method', 'GET needs refreshTokenTransport \'cookie\': a GET request has no body')
  }
  return {
    accessKeys,
    refreshTokenSecret,
    accessTokenTtl,
    refreshTokenTtl,
    sessionMaxAge,
    reuseGrace: count(options.reuseGrace, DEFAULT_REUSE_GRACE, 'reuseGrace', 0),
    reuseGraceLimit: count(options.reuseGraceLimit, DEFAULT_REUSE_GRACE_LIMIT, 'reuseGraceLimit', 0),
    issuer: optionalString(options.issuer, 'issuer'),
    audience: optionalString(options.audience, 'audience'),
    clockTolerance: count(options.clockTolerance, 0, 'clockTolerance', 0, 300),
    verifyCredentials: options.verifyCredentials,
    loadUser: options.loadUser,
    store: resolveStore(options.store),
    prefix,
    routes,
    refreshTokenTransport: transport,
    cookie: resolveCookie(options.cookie, prefix),
    allowedOrigins: resolveOrigins(options.allowedOrigins),
    loginRateLimit: resolveRateLimit(options.loginRateLimit, DEFAULT_LOGIN_RATE_LIMIT, 'loginRateLimit'),
    accountRateLimit: resolveRateLimit(options.accountRateLimit, DEFAULT_ACCOUNT_RATE_LIMIT, 'accountRateLimit'),
    jwks: resolveJwks(options.jwks, accessKeys),
    clearSiteData: resolveClearSiteData(options.clearSiteData),
    refreshMethod,
    responseFormat: oneOf(options.responseFormat, ['default', 'oauth2'] as const, 'default', 'responseFormat'),
    storeTimeout: count(options.storeTimeout, DEFAULT_STORE_TIMEOUT, 'storeTimeout', 1),
    sweepInterval: count(options.sweepInterval, DEFAULT_SWEEP_INTERVAL, 'sweepInterval', 1000),
    revocationPollInterval: count(options.revocationPollInterval, DEFAULT_REVOCATION_POLL_INTERVAL, 'revocationPollInterval', 100),
    verifyCacheSize: count(options.verifyCacheSize, DEFAULT_VERIFY_CACHE_SIZE, 'verifyCacheSize', 0)
  }
}

function seconds (value: unknown, fallback: number, name: string): number {
  const result = value ?? fallback
  if (!Number.isSafeInteger(result) || (result as number) <= 0 || (result as number) > MAX_LIFETIME) {
    throw new InvalidOptionError(name, `must be a whole number of seconds between 1 and ${MAX_LIFETIME}, got ${describe(value)}`)
  }
  return result as number
}

function count (value: unknown, fallback: number, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const result = value ?? fallback
  if (!Number.isSafeInteger(result) || (result as number) < min || (result as number) > max) {
    throw new InvalidOptionError(name, `must be an integer between ${min} and ${max}, got ${describe(value)}`)
  }
  return result as number
}

function oneOf<const T extends readonly string[]> (value: unknown, allowed: T, fallback: T[number], name: string): T[number] {
  const result = value ?? fallback
  if (!allowed.includes(result as string)) {
    throw new InvalidOptionError(name, `must be one of ${allowed.map((v) => `'${v}'`).join(', ')}, got ${describe(value)}`)
  }
  return result as T[number]
}

function optionalString (value: unknown, name: string): string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value === '')) {
    throw new InvalidOptionError(name, `must be a non-empty string, got ${describe(value)}`)
  }
  return value
}

function optionalFunction (value: unknown, name: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidOptionError(name, `must be a function, got ${describe(value)}`)
  }
}

function path (value: unknown, name: string, allowEmpty = false): string {
  if (typeof value !== 'string' || (value === '' && !allowEmpty) || (value !== '' && !/^\/[\w\-./]*$/.test(value))) {
    throw new InvalidOptionError(name, `must be a path starting with "/", got ${describe(value)}`)
  }
  return value.endsWith('/') && value.length > 1 ? value.slice(0, -1) : value
}

function resolveRoutes (routes: TokenAuthOptions['routes']): ResolvedOptions['routes'] {
  if (routes === false) return { login: false, refresh: false, logout: false, sessions: false }
  if (routes !== undefined && (routes === null || typeof routes !== 'object')) {
    throw new InvalidOptionError('routes', `must be false or an object, got ${describe(routes)}`)
  }
  const resolved = { ...DEFAULT_ROUTE_PATHS } as ResolvedOptions['routes']
  for (const key of Object.keys(routes ?? {})) {
    if (!(ROUTE_NAMES as readonly string[]).includes(key)) {
      throw new InvalidOptionError(`routes.${key}`, `unknown route; valid routes are ${ROUTE_NAMES.join(', ')}`)
    }
  }
  for (const name of ROUTE_NAMES) {
    const route = routes?.[name]
    if (route === false) {
      resolved[name] = false
    } else if (route !== undefined) {
      if (route === null || typeof route !== 'object') {
        throw new InvalidOptionError(`routes.${name}`, `must be false or { path }, got ${describe(route)}`)
      }
      const unknown = Object.keys(route).find((key) => key !== 'path' && !(name === 'refresh' && key === 'method'))
      if (unknown !== undefined) throw new InvalidOptionError(`routes.${name}.${unknown}`, 'unknown route option')
      resolved[name] = route.path === undefined ? DEFAULT_ROUTE_PATHS[name] : path(route.path, `routes.${name}.path`)
    }
  }
  return resolved
}

function resolveCookie (cookie: CookieOptions | undefined, prefix: string): ResolvedOptions['cookie'] {
  if (cookie !== undefined && (cookie === null || typeof cookie !== 'object')) {
    throw new InvalidOptionError('cookie', `must be an object, got ${describe(cookie)}`)
  }
  const options = cookie ?? {}
  const baseName = options.name ?? DEFAULT_COOKIE_NAME
  if (typeof baseName !== 'string' || !/^[\w\-.]+$/.test(baseName)) {
    throw new InvalidOptionError('cookie.name', `must be a cookie token (letters, digits, - _ .), got ${describe(baseName)}`)
  }
  const secure = options.secure ?? true
  if (typeof secure !== 'boolean') throw new InvalidOptionError('cookie.secure', `must be a boolean, got ${describe(secure)}`)
  const sameSite = oneOf(options.sameSite, ['strict', 'lax'] as const, 'strict', 'cookie.sameSite')
  const domain = optionalString(options.domain, 'cookie.domain')
  if (options.hostPrefix === true) {
    // The browser enforces these for `__Host-`; refusing them here turns a silent drop into a boot error.
    if (!secure) throw new InvalidOptionError('cookie.secure', 'must be true with cookie.hostPrefix (browsers drop insecure __Host- cookies)')
    if (domain !== undefined) throw new InvalidOptionError('cookie.domain', 'must be unset with cookie.hostPrefix')
    if (options.path !== undefined && options.path !== '/') throw new InvalidOptionError('cookie.path', 'must be "/" with cookie.hostPrefix')
    return { name: `__Host-${baseName}`, secure, sameSite, path: '/', domain }
  }
  if (options.hostPrefix !== undefined && options.hostPrefix !== false) {
    throw new InvalidOptionError('cookie.hostPrefix', `must be a boolean, got ${describe(options.hostPrefix)}`)
  }
  const cookiePath = options.path === undefined ? (prefix === '' ? '/' : prefix) : path(options.path, 'cookie.path')
  return { name: baseName, secure, sameSite, path: cookiePath, domain }
}

function resolveOrigins (origins: unknown): string[] {
  if (origins === undefined) return []
  if (!Array.isArray(origins)) throw new InvalidOptionError('allowedOrigins', `must be an array of origins, got ${describe(origins)}`)
  return origins.map((origin) => {
    let parsed: URL | undefined
    try {
      parsed = new URL(origin)
    } catch {}
    if (typeof origin !== 'string' || parsed === undefined || parsed.origin !== origin) {
      throw new InvalidOptionError('allowedOrigins', `each entry must be an origin like "https://app.example.com", got ${describe(origin)}`)
    }
    return origin
  })
}

function resolveRateLimit (value: RateLimitOptions | false | undefined, fallback: RateLimitOptions, name: string): RateLimitOptions | false {
  if (value === false) return false
  if (value === undefined) return { ...fallback }
  if (value === null || typeof value !== 'object') {
    throw new InvalidOptionError(name, `must be false or { max, timeWindow }, got ${describe(value)}`)
  }
  return {
    max: count(value.max, fallback.max, `${name}.max`, 1),
    timeWindow: count(value.timeWindow, fallback.timeWindow, `${name}.timeWindow`, 1)
  }
}

function resolveJwks (value: TokenAuthOptions['jwks'], keys: ResolvedKey[]): ResolvedOptions['jwks'] {
  if (value === undefined || value === false) return false
  if (value !== true && (value === null || typeof value !== 'object')) {
    throw new InvalidOptionError('jwks', `must be a boolean or { path, maxAge }, got ${describe(value)}`)
  }
  if (!keys.some((key) => key.publicJwk !== undefined)) {
    throw new InvalidOptionError('jwks', 'needs an asymmetric access-token key (EdDSA, ES256 or RS256) in accessTokenKeys; HMAC secrets are never published')
  }
  const options = value === true ? {} : value
  return {
    path: path(options.path ?? DEFAULT_JWKS_PATH, 'jwks.path'),
    maxAge: count(options.maxAge, DEFAULT_JWKS_MAX_AGE, 'jwks.maxAge', 0, 24 * 60 * 60)
  }
}

/** The header value: quoted directives, e.g. `"cache", "cookies", "storage"`. */
function resolveClearSiteData (value: TokenAuthOptions['clearSiteData']): string | undefined {
  if (value === undefined || value === false) return undefined
  const types = value === true ? DEFAULT_CLEAR_SITE_DATA : value
  if (!Array.isArray(types) || types.length === 0 || !types.every((type) => (CLEAR_SITE_DATA_TYPES as readonly unknown[]).includes(type))) {
    throw new InvalidOptionError('clearSiteData', `must be a boolean or a non-empty array of ${CLEAR_SITE_DATA_TYPES.map((type) => `'${type}'`).join(', ')}, got ${describe(value)}`)
  }
  return types.map((type) => `"${type}"`).join(', ')
}

function resolveStore (store: unknown): TokenStore | undefined {
  if (store === undefined) return undefined
  const missing = STORE_METHODS.filter((method) => typeof (store as Record<string, unknown> | null)?.[method] !== 'function')
  if (missing.length > 0) {
    throw new InvalidOptionError('store', `must implement the TokenStore contract; missing ${missing.join(', ')}`)
  }
  return store as TokenStore
}

function describe (value: unknown): string {
  if (typeof value === 'string') return `"${value}"`
  if (typeof value === 'function') return 'a function'
  if (Buffer.isBuffer(value)) return 'a Buffer'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
