import { DPOP_ALGORITHMS, type DpopAlgorithm } from '../dpop/proof.js'
import { InvalidOptionError } from '../errors.js'
import { resolveAccessKeys, validateSecret } from '../keys.js'
import type { TokenStore } from '../stores/types.js'
import {
  boolean, checkPath, describe, integer, lifetime, objectOrUndefined, type OptionSpec, oneOf, optionalString, path, resolveFields, show
} from './checks.js'
import {
  CLEAR_SITE_DATA_TYPES, type CookieOptions, type DbscOptions, type IntrospectionClient, type IntrospectionOptions, type JwksOptions, type RateLimitOptions,
  type RoutesOptions, type TokenAuthOptions
} from './types.js'

// Every option once, in the order of ./types.ts: its default, its unit and its validation. The
// `satisfies` below makes the compiler refuse an option missing here or one the interface lacks;
// rules between options live in ../options.ts.

const DAY = 24 * 60 * 60
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

const ROUTE_PATHS = {
  login: '/login',
  refresh: '/refresh',
  reauthenticate: '/reauthenticate',
  logout: '/logout',
  sessions: '/sessions',
  revoke: '/revoke',
  introspect: '/introspect',
  dbscRegistration: '/dbsc/registration',
  dbscRefresh: '/dbsc/refresh'
} as const
type RouteName = keyof typeof ROUTE_PATHS
export type ResolvedRoutes = Record<RouteName, string | false>
const ROUTE_NAMES = Object.keys(ROUTE_PATHS) as RouteName[]

/** `routes.refresh.method`, resolved by ../options.ts into `refreshMethod`. */
export const refreshMethod = oneOf(['POST', 'GET'] as const, 'POST')

const refreshTokenTtl = lifetime(14 * DAY)
const SESSION_MAX_AGE = 30 * DAY
const sessionMaxAge = lifetime(SESSION_MAX_AGE)
const prefix = path(DEFAULT_PREFIX, true)

/** A cookie name: letters, digits, `- _ .`. */
function cookieName (fallback: string): OptionSpec<string> {
  return {
    default: show(fallback),
    resolve (value, name): string {
      const result = value ?? fallback
      if (typeof result !== 'string' || !/^[\w\-.]+$/.test(result)) {
        throw new InvalidOptionError(name, `must be a cookie token (letters, digits, - _ .), got ${describe(result)}`)
      }
      return result
    }
  }
}

const cookieFields = {
  name: cookieName(DEFAULT_COOKIE_NAME),
  secure: boolean(true),
  sameSite: oneOf(['strict', 'lax'] as const, 'strict'),
  path: { default: 'the route prefix', resolve: (value: unknown, name: string) => value === undefined ? undefined : checkPath(value, name) },
  domain: optionalString(),
  hostPrefix: boolean(false)
} satisfies { [K in keyof Required<CookieOptions>]: OptionSpec<unknown> }

const dbscFields = {
  cookieName: cookieName('device_session'),
  cookieMaxAge: integer(600, { min: 10, max: DAY, unit: 'seconds' })
} satisfies { [K in keyof Required<DbscOptions>]: OptionSpec<unknown> }

const jwksFields = {
  path: path('/.well-known/jwks.json'),
  maxAge: integer(300, { min: 0, max: DAY, unit: 'seconds' })
} satisfies { [K in keyof Required<JwksOptions>]: OptionSpec<unknown> }

function rateLimit (fallback: RateLimitOptions): OptionSpec<RateLimitOptions | false> {
  const fields = { max: integer(fallback.max, { min: 1 }), timeWindow: integer(fallback.timeWindow, { min: 1, unit: 'milliseconds' }) }
  return {
    default: show(fallback),
    fields,
    resolve (value, name, options) {
      if (value === false) return false
      return resolveFields(fields, objectOrUndefined<RateLimitOptions>(value, name, 'false or { max, timeWindow }'), name, options)
    }
  }
}

const introspectionFields = {
  clients: {
    default: 'none: required',
    resolve (value: unknown, name: string): IntrospectionClient[] {
      if (!Array.isArray(value) || value.length === 0) throw new InvalidOptionError(name, `must be a non-empty array of { id, secret }, got ${describe(value)}`)
      const ids = new Set<string>()
      return value.map((client: unknown, index) => {
        const at = `${name}[${index}]`
        const { id, secret } = objectOrUndefined<Partial<IntrospectionClient>>(client, at, 'an object { id, secret }')
        if (typeof id !== 'string' || id === '' || id.length > 256) throw new InvalidOptionError(`${at}.id`, `must be a string of 1 to 256 characters, got ${describe(id)}`)
        if (ids.has(id)) throw new InvalidOptionError(`${at}.id`, `duplicates "${id}"`)
        ids.add(id)
        if (typeof secret !== 'string') throw new InvalidOptionError(`${at}.secret`, `must be a string, got ${describe(secret)}`)
        validateSecret(secret, `${at}.secret`)
        return { id, secret }
      })
    }
  },
  rateLimit: rateLimit({ max: 600, timeWindow: 60_000 })
} satisfies { [K in keyof Required<IntrospectionOptions>]: OptionSpec<unknown> }

/** A function, unset by default. */
function optionalFunction<F> (fallback: string): OptionSpec<F | undefined> {
  return {
    default: fallback,
    resolve (value, name) {
      if (value !== undefined && typeof value !== 'function') throw new InvalidOptionError(name, `must be a function, got ${describe(value)}`)
      return value as F | undefined
    }
  }
}

/** The TokenStore methods the plugin calls: a store missing one is refused at boot. */
const STORE_METHODS = ['createSession', 'getSession', 'rotate', 'revokeSession', 'revokeUserSessions', 'listUserSessions', 'updateUserClaims', 'revokedSince', 'sweep', 'close'] as const satisfies ReadonlyArray<keyof TokenStore>

export const optionSpecs = {
  // Validated together with accessTokenKeys (../keys.ts): one of the two is required.
  accessTokenSecret: { default: 'none: this or accessTokenKeys is required', resolve: () => undefined },
  accessTokenKeys: { default: 'none', resolve: (value, _name, options) => resolveAccessKeys(value, options.accessTokenSecret) },
  refreshTokenSecret: { default: 'none: required', resolve: (value, name) => validateSecret(value, name) },

  accessTokenTtl: lifetime(15 * 60),
  refreshTokenTtl,
  sessionMaxAge: {
    ...sessionMaxAge,
    default: `${SESSION_MAX_AGE}, or refreshTokenTtl if longer`,
    resolve: (value, name, options) =>
      sessionMaxAge.resolve(value ?? Math.max(SESSION_MAX_AGE, refreshTokenTtl.resolve(options.refreshTokenTtl, 'refreshTokenTtl', options)), name, options)
  },
  clockTolerance: integer(0, { min: 0, max: 300, unit: 'seconds' }),

  reuseGrace: integer(5, { min: 0, unit: 'seconds' }),
  reuseGraceLimit: integer(5, { min: 0 }),

  issuer: optionalString(),
  audience: optionalString(),

  verifyCredentials: optionalFunction<TokenAuthOptions['verifyCredentials']>('none: required with the login route'),
  loadUser: optionalFunction<TokenAuthOptions['loadUser']>('unset'),

  maxSessionsPerUser: {
    default: 'unset',
    resolve (value, name): number | undefined {
      if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < 1)) {
        throw new InvalidOptionError(name, `must be a positive integer, got ${describe(value)}`)
      }
      return value as number | undefined
    }
  },
  sessionLimitPolicy: oneOf(['end-least-recent', 'refuse'] as const, 'end-least-recent'),
  onRefresh: optionalFunction<TokenAuthOptions['onRefresh']>('unset'),
  onRefreshTimeout: integer(1000, { min: 1, max: 60_000, unit: 'milliseconds' }),

  prefix,
  routes: {
    default: show(ROUTE_PATHS),
    fields: { 'refresh.method': refreshMethod },
    resolve (value, name): ResolvedRoutes {
      if (value === false) return Object.fromEntries(ROUTE_NAMES.map((route) => [route, false])) as ResolvedRoutes
      const routes = objectOrUndefined<RoutesOptions>(value, name, 'false or an object')
      const unknown = Object.keys(routes).find((key) => !(ROUTE_NAMES as string[]).includes(key))
      if (unknown !== undefined) throw new InvalidOptionError(`routes.${unknown}`, `unknown route; valid routes are ${ROUTE_NAMES.join(', ')}`)
      const resolved: ResolvedRoutes = { ...ROUTE_PATHS }
      for (const route of ROUTE_NAMES) {
        const given = routes[route]
        if (given === false) {
          resolved[route] = false
        } else if (given !== undefined) {
          if (given === null || typeof given !== 'object') throw new InvalidOptionError(`routes.${route}`, `must be false or { path }, got ${describe(given)}`)
          const extra = Object.keys(given).find((key) => key !== 'path' && !(route === 'refresh' && key === 'method'))
          if (extra !== undefined) throw new InvalidOptionError(`routes.${route}.${extra}`, 'unknown route option')
          resolved[route] = given.path === undefined ? ROUTE_PATHS[route] : checkPath(given.path, `routes.${route}.path`)
        }
      }
      return resolved
    }
  },
  responseFormat: oneOf(['default', 'oauth2'] as const, 'default'),
  refreshTokenTransport: oneOf(['cookie', 'body', 'both'] as const, 'cookie'),
  cookie: {
    default: 'see the cookie.* rows',
    fields: cookieFields,
    resolve (value, name, options) {
      const { name: baseName, secure, sameSite, path: cookiePath, domain, hostPrefix } =
        resolveFields(cookieFields, objectOrUndefined<CookieOptions>(value, name, 'an object'), name, options)
      if (!hostPrefix) {
        const routesPrefix = prefix.resolve(options.prefix, 'prefix', options)
        return { name: baseName, secure, sameSite, path: cookiePath ?? (routesPrefix === '' ? '/' : routesPrefix), domain }
      }
      // The browser enforces these for `__Host-`; refusing them here turns a silent drop into a boot error.
      if (!secure) throw new InvalidOptionError('cookie.secure', 'must be true with cookie.hostPrefix (browsers drop insecure __Host- cookies)')
      if (domain !== undefined) throw new InvalidOptionError('cookie.domain', 'must be unset with cookie.hostPrefix')
      if (cookiePath !== undefined && cookiePath !== '/') throw new InvalidOptionError('cookie.path', 'must be "/" with cookie.hostPrefix')
      return { name: `__Host-${baseName}`, secure, sameSite, path: '/', domain }
    }
  },
  allowedOrigins: {
    default: show([]),
    resolve (value, name): string[] {
      if (value === undefined) return []
      if (!Array.isArray(value)) throw new InvalidOptionError(name, `must be an array of origins, got ${describe(value)}`)
      return value.map((origin: unknown) => {
        if (typeof origin !== 'string' || !URL.canParse(origin) || new URL(origin).origin !== origin) {
          throw new InvalidOptionError(name, `each entry must be an origin like "https://app.example.com", got ${describe(origin)}`)
        }
        return origin
      })
    }
  },
  clearSiteData: {
    default: show(false),
    /** The header value: quoted directives, e.g. `"cache", "cookies", "storage"`. */
    resolve (value, name): string | undefined {
      if (value === undefined || value === false) return undefined
      // `true` clears everything but execution contexts.
      const types = value === true ? ['cache', 'cookies', 'storage'] : value
      if (!Array.isArray(types) || types.length === 0 || !types.every((type) => (CLEAR_SITE_DATA_TYPES as readonly unknown[]).includes(type))) {
        throw new InvalidOptionError(name, `must be a boolean or a non-empty array of ${CLEAR_SITE_DATA_TYPES.map((type) => `'${type}'`).join(', ')}, got ${describe(value)}`)
      }
      return types.map((type) => `"${type as string}"`).join(', ')
    }
  },
  jwks: {
    default: show(false),
    fields: jwksFields,
    resolve (value, name, options) {
      if (value === undefined || value === false) return false as const
      return resolveFields(jwksFields, objectOrUndefined<JwksOptions>(value === true ? {} : value, name, 'a boolean or { path, maxAge }'), name, options)
    }
  },

  introspection: {
    default: show(false),
    fields: introspectionFields,
    resolve (value, name, options) {
      if (value === undefined || value === false) return false as const
      return resolveFields(introspectionFields, objectOrUndefined<IntrospectionOptions>(value, name, 'false or { clients, rateLimit }'), name, options)
    }
  },

  dpop: oneOf(['off', 'optional', 'required'], 'off'),
  dpopAlgorithms: {
    default: show(DPOP_ALGORITHMS),
    resolve (value, name): DpopAlgorithm[] {
      if (value === undefined) return [...DPOP_ALGORITHMS]
      if (!Array.isArray(value) || value.length === 0 || value.some((algorithm) => !(DPOP_ALGORITHMS as readonly unknown[]).includes(algorithm))) {
        throw new InvalidOptionError(name, `must be a non-empty array of ${DPOP_ALGORITHMS.map((v) => `'${v}'`).join(', ')}, got ${describe(value)}`)
      }
      return [...new Set(value as DpopAlgorithm[])]
    }
  },
  dpopProofLifetime: integer(60, { min: 1, max: 3600, unit: 'seconds' }),
  dpopNonce: boolean(false),
  dbsc: {
    default: show(false),
    fields: dbscFields,
    resolve (value, name, options) {
      if (value === undefined || value === false) return false as const
      const dbsc = resolveFields(dbscFields, objectOrUndefined<DbscOptions>(value === true ? {} : value, name, 'a boolean or { cookieName, cookieMaxAge }'), name, options)
      // The device cookie travels beside the refresh cookie, with the same prefix.
      const hostPrefix = (options.cookie as { hostPrefix?: unknown } | undefined)?.hostPrefix === true
      return { ...dbsc, cookieName: hostPrefix ? `__Host-${dbsc.cookieName}` : dbsc.cookieName }
    }
  },

  loginRateLimit: rateLimit(loginThrottlePresets.balanced.loginRateLimit),
  accountRateLimit: rateLimit(loginThrottlePresets.balanced.accountRateLimit),

  store: {
    default: 'a new MemoryStore (one process, lost on restart)',
    resolve (value, name): TokenStore | undefined {
      if (value === undefined) return undefined
      const missing = STORE_METHODS.filter((method) => typeof (value as Record<string, unknown> | null)?.[method] !== 'function')
      if (missing.length > 0) throw new InvalidOptionError(name, `must implement the TokenStore contract; missing ${missing.join(', ')}`)
      return value as TokenStore
    }
  },
  storeTimeout: integer(5000, { min: 1, unit: 'milliseconds' }),
  sweepInterval: integer(60_000, { min: 1000, unit: 'milliseconds' }),
  revocationPollInterval: integer(5000, { min: 100, unit: 'milliseconds' }),
  verifyCacheSize: integer(1000, { min: 0 })
} satisfies { [K in keyof Required<TokenAuthOptions>]: OptionSpec<unknown> }
