import { InvalidOptionError } from './errors.js'
import type { ResolvedKey } from './keys.js'
import type { Resolved } from './options/checks.js'
import { optionSpecs, refreshMethod } from './options/spec.js'
import type { TokenAuthOptions } from './options/types.js'

export type * from './options/types.js'
export { DEFAULT_COOKIE_NAME, DEFAULT_PREFIX, loginThrottlePresets } from './options/spec.js'

type SpecResults = Resolved<typeof optionSpecs>

/**
 * Options after validation, defaults filled: one field per option, typed by what its spec
 * resolves to, with the access keys resolved from `accessTokenKeys` or `accessTokenSecret`.
 */
export type ResolvedOptions = Omit<SpecResults, 'accessTokenSecret' | 'accessTokenKeys'> & {
  accessKeys: ResolvedKey[]
  /** `routes.refresh.method`. */
  refreshMethod: 'POST' | 'GET'
}

/** Keys Fastify passes alongside ours to every plugin. */
const FASTIFY_REGISTER_OPTIONS = new Set(['prefix', 'logLevel', 'logSerializers'])

/** Validates the options and fills defaults; throws `FST_TOKEN_AUTH_INVALID_OPTION` naming the option. */
export function resolveOptions (options: TokenAuthOptions): ResolvedOptions {
  for (const key of Object.keys(options)) {
    if (!Object.hasOwn(optionSpecs, key) && !FASTIFY_REGISTER_OPTIONS.has(key)) {
      throw new InvalidOptionError(key, `unknown option; valid options are ${Object.keys(optionSpecs).join(', ')}`)
    }
  }
  const given = options as unknown as Record<string, unknown>
  const { accessTokenSecret, accessTokenKeys, ...resolved } = Object.fromEntries(
    Object.entries(optionSpecs).map(([name, spec]) => [name, spec.resolve(given[name], name, options)])
  ) as SpecResults
  const refreshRoute = options.routes === false ? undefined : options.routes?.refresh
  const reauthenticateRoute = options.routes === false ? undefined : options.routes?.reauthenticate
  const result = {
    ...resolved,
    // Re-authentication checks a password: without `verifyCredentials` it is left out unless asked for (then refused below).
    routes: resolved.verifyCredentials === undefined && reauthenticateRoute === undefined ? { ...resolved.routes, reauthenticate: false as const } : resolved.routes,
    accessKeys: accessTokenKeys,
    refreshMethod: refreshMethod.resolve(refreshRoute === false ? undefined : refreshRoute?.method, 'routes.refresh.method', options)
  }
  checkRelations(result)
  return result
}

/** The rules between options; each option's own rule is in ./options/spec.ts. */
function checkRelations (options: ResolvedOptions): void {
  const { accessKeys, refreshTokenSecret } = options
  if (accessKeys.some((key) => key.algorithm === 'HS256' && Buffer.from(key.verificationKey).equals(Buffer.from(refreshTokenSecret)))) {
    throw new InvalidOptionError('refreshTokenSecret', 'must differ from every access-token secret, so neither token verifies as the other')
  }
  if (options.sessionMaxAge < options.refreshTokenTtl) {
    throw new InvalidOptionError('sessionMaxAge', `must be at least refreshTokenTtl (${options.refreshTokenTtl}), got ${options.sessionMaxAge}`)
  }
  if (options.routes.login !== false && options.verifyCredentials === undefined) {
    throw new InvalidOptionError('verifyCredentials', 'a function is required while the login route is enabled (set routes.login to false otherwise)')
  }
  if (options.routes.reauthenticate !== false && options.verifyCredentials === undefined) {
    throw new InvalidOptionError('verifyCredentials', 'a function is required while the reauthenticate route is enabled (set routes.reauthenticate to false otherwise)')
  }
  if (options.refreshMethod === 'GET' && options.refreshTokenTransport !== 'cookie') {
    throw new InvalidOptionError('routes.refresh.method', 'GET needs refreshTokenTransport \'cookie\': a GET request has no body')
  }
  if (options.dpop !== 'off' && options.store !== undefined && typeof options.store.useOnce !== 'function') {
    throw new InvalidOptionError('store', 'must implement useOnce (the replay cache of DPoP proofs) while dpop is on')
  }
  if (options.dbsc !== false) {
    if (options.refreshTokenTransport === 'body') throw new InvalidOptionError('dbsc', 'needs the refresh cookie: refreshTokenTransport \'cookie\' or \'both\'')
    if (options.store !== undefined && typeof options.store.useOnce !== 'function') {
      throw new InvalidOptionError('store', 'must implement useOnce (where DBSC challenges are spent) while dbsc is on')
    }
    if (options.dbsc.cookieName === options.cookie.name) throw new InvalidOptionError('dbsc.cookieName', 'must differ from the refresh cookie\'s name')
    // A browser without a refresh endpoint would renew its device cookie nowhere: its session would stop refreshing.
    if (options.routes.dbscRefresh === false && options.routes.dbscRegistration !== false) {
      throw new InvalidOptionError('routes.dbscRefresh', 'is needed while dbsc registers sessions (set routes.dbscRegistration to false too)')
    }
  }
  if (options.jwks !== false && !accessKeys.some((key) => key.publicJwk !== undefined)) {
    throw new InvalidOptionError('jwks', 'needs an asymmetric access-token key (EdDSA, ES256 or RS256) in accessTokenKeys; HMAC secrets are never published')
  }
}
