import { ACCESS_TOKEN_ALGORITHMS, type AccessTokenAlgorithm, generateAccessKey, generateSecret } from '../lib/index.js'

/** The demo's configuration, read from the environment by `configFromEnv`. */
export interface ExampleConfig {
  logLevel: string
  tokenStore: 'memory' | 'redis' | 'postgres'
  redisUrl: string
  databaseUrl: string
  accessTokenTtl: number
  refreshTokenTtl: number
  /** Absolute session lifetime, seconds; refreshing never extends a session past it. */
  sessionMaxAge: number
  reuseGrace: number
  loginRateLimit: number
  /** Login attempts per username per window; undefined: the plugin's default. */
  accountRateLimit: number | undefined
  /** Window of both login limits, seconds. */
  rateLimitWindow: number
  /** Milliseconds before a store call answers 503; undefined: the plugin's default. */
  storeTimeout: number | undefined
  /** The first demo user (role admin). */
  username: string
  password: string
  /** The second demo user, `bob` (role user). */
  secondPassword: string
  accessTokenAlg: AccessTokenAlgorithm
  /** HS256 key of access tokens (used when accessTokenAlg is HS256). */
  accessTokenSecret: string
  /** PEM private key of access tokens (asymmetric algorithms only). */
  accessTokenPrivateKey: string | undefined
  /** PEM public key of a retired signing key whose tokens still verify. */
  accessTokenPreviousPublicKey: string | undefined
  refreshTokenSecret: string
  issuer: string | undefined
  /** The resource server allowed to call POST /auth/introspect (RFC 7662), when both are set. */
  introspectionClient: { id: string, secret: string } | undefined
  /** Keys were generated at start: tokens die with the process. */
  generatedSecrets: boolean
  /** Secure cookies need HTTPS; a local demo runs on plain http unless NODE_ENV=production. */
  secureCookies: boolean
  /** `__Host-refresh_token` (Secure, Path=/, no Domain): a sibling subdomain cannot plant it. */
  cookieHostPrefix: boolean
  /** Seconds since the sign-in after which POST /account/email asks for the password again. */
  stepUpMaxAge: number
  /** Live sessions per user; undefined: no cap. */
  maxSessions: number | undefined
  /** What a login over the cap does: end the least recently used session, or be refused. */
  sessionLimitPolicy: 'end-least-recent' | 'refuse'
  /** `same-device`: a refresh from another User-Agent than the sign-in's ends the session. */
  refreshPolicy: 'any' | 'same-device'
  /** The plugin's `dpop` option (sender-constrained sessions, RFC 9449). */
  dpop: 'off' | 'optional' | 'required'
  /** The plugin's `dpopNonce`: proofs must carry a server nonce. */
  dpopNonce: boolean
  /** The plugin's `dbsc` (Device Bound Session Credentials for browsers); its device cookie's lifetime in seconds. */
  dbsc: false | { cookieMaxAge: number }
}

/** Reads DESIGN §4's variables; throws a clear error for a bad value. */
export function configFromEnv (env: NodeJS.ProcessEnv = process.env): ExampleConfig {
  const tokenStore = env.TOKEN_STORE ?? 'memory'
  if (tokenStore !== 'memory' && tokenStore !== 'redis' && tokenStore !== 'postgres') {
    throw new Error(`TOKEN_STORE must be memory, redis or postgres, got "${tokenStore}"`)
  }
  const accessTokenAlg = (env.ACCESS_TOKEN_ALG ?? 'HS256') as AccessTokenAlgorithm
  if (!ACCESS_TOKEN_ALGORITHMS.includes(accessTokenAlg)) {
    throw new Error(`ACCESS_TOKEN_ALG must be one of ${ACCESS_TOKEN_ALGORITHMS.join(', ')}, got "${accessTokenAlg}"`)
  }
  const asymmetric = accessTokenAlg !== 'HS256'
  const previousPublicKey = pem(env.ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY)
  if (previousPublicKey !== undefined && !asymmetric) {
    throw new Error('ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY needs an asymmetric ACCESS_TOKEN_ALG (EdDSA, ES256 or RS256)')
  }
  const refreshTokenTtl = wholeNumber(env, 'REFRESH_TOKEN_TTL', 14 * 24 * 3600)
  const cookieHostPrefix = env.COOKIE_HOST_PREFIX === 'true'
  const sessionLimitPolicy = oneOf(env, 'SESSION_LIMIT_POLICY', ['end-least-recent', 'refuse'] as const)
  const refreshPolicy = oneOf(env, 'REFRESH_POLICY', ['any', 'same-device'] as const)
  const dpop = oneOf(env, 'DPOP', ['off', 'optional', 'required'] as const)
  const accessKeyGiven = asymmetric ? env.ACCESS_TOKEN_PRIVATE_KEY !== undefined : env.ACCESS_TOKEN_SECRET !== undefined
  return {
    logLevel: env.LOG_LEVEL ?? 'info',
    tokenStore,
    redisUrl: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    databaseUrl: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    accessTokenTtl: wholeNumber(env, 'ACCESS_TOKEN_TTL', 900),
    refreshTokenTtl,
    sessionMaxAge: wholeNumber(env, 'SESSION_MAX_AGE', Math.max(refreshTokenTtl, 30 * 24 * 3600)),
    reuseGrace: wholeNumber(env, 'REFRESH_REUSE_GRACE', 5, 0),
    loginRateLimit: wholeNumber(env, 'LOGIN_RATE_LIMIT', 10),
    accountRateLimit: env.ACCOUNT_RATE_LIMIT === undefined ? undefined : wholeNumber(env, 'ACCOUNT_RATE_LIMIT', 0),
    rateLimitWindow: wholeNumber(env, 'RATE_LIMIT_WINDOW', 60),
    storeTimeout: env.STORE_TIMEOUT_MS === undefined ? undefined : wholeNumber(env, 'STORE_TIMEOUT_MS', 0),
    username: env.DEMO_USERNAME ?? 'alice',
    password: env.DEMO_PASSWORD ?? 'correct-horse-battery-staple',
    secondPassword: env.DEMO_SECOND_PASSWORD ?? 'bob-password-1234',
    accessTokenAlg,
    // Random per start when absent; a too-short secret given here is refused by the plugin at boot.
    accessTokenSecret: env.ACCESS_TOKEN_SECRET ?? generateSecret(),
    accessTokenPrivateKey: asymmetric ? pem(env.ACCESS_TOKEN_PRIVATE_KEY) ?? generateAccessKey(accessTokenAlg) : undefined,
    accessTokenPreviousPublicKey: previousPublicKey,
    refreshTokenSecret: env.REFRESH_TOKEN_SECRET ?? generateSecret(),
    issuer: env.TOKEN_ISSUER === '' ? undefined : env.TOKEN_ISSUER,
    introspectionClient: env.INTROSPECTION_CLIENT_ID === undefined || env.INTROSPECTION_CLIENT_SECRET === undefined
      ? undefined
      : { id: env.INTROSPECTION_CLIENT_ID, secret: env.INTROSPECTION_CLIENT_SECRET },
    generatedSecrets: !accessKeyGiven || env.REFRESH_TOKEN_SECRET === undefined,
    // The prefix only works with Secure: browsers drop a __Host- cookie without it.
    secureCookies: env.NODE_ENV === 'production' || cookieHostPrefix,
    cookieHostPrefix,
    stepUpMaxAge: wholeNumber(env, 'STEP_UP_MAX_AGE', 300),
    maxSessions: env.MAX_SESSIONS === undefined ? undefined : wholeNumber(env, 'MAX_SESSIONS', 0),
    sessionLimitPolicy,
    refreshPolicy,
    dpop,
    dpopNonce: env.DPOP_NONCE === 'true',
    dbsc: oneOf(env, 'DBSC', ['off', 'on'] as const) === 'on' ? { cookieMaxAge: wholeNumber(env, 'DBSC_COOKIE_MAX_AGE', 600, 10) } : false
  }
}

/** One of `choices`, the first when the variable is absent. */
function oneOf<T extends string> (env: NodeJS.ProcessEnv, name: string, choices: readonly [T, ...T[]]): T {
  const raw = env[name] ?? choices[0]
  if (!(choices as readonly string[]).includes(raw)) throw new Error(`${name} must be ${choices.join(' or ')}, got "${raw}"`)
  return raw as T
}

function wholeNumber (env: NodeJS.ProcessEnv, name: string, fallback: number, min = 1): number {
  const raw = env[name]
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < min) throw new Error(`${name} must be a whole number >= ${min}, got "${raw}"`)
  return value
}

/** A PEM from one env line: `.env` files and CI secrets often carry its newlines as literal `\n`. */
function pem (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value.replaceAll('\\n', '\n')
}
