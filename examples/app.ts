import { createPublicKey } from 'node:crypto'
import createError from '@fastify/error'
import fastifyRateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type onRequestAsyncHookHandler } from 'fastify'
import pg from 'pg'
import tokenAuth, {
  ACCESS_TOKEN_ALGORITHMS, type AccessTokenAlgorithm, type AccessTokenKey, type AuthUser, createVerifyCredentials, generateAccessKey,
  generateSecret, hashPassword, type TokenStore, verifyPassword
} from '../lib/index.js'
import { migrate, PostgresStore } from '../lib/stores/postgres/index.js'
import { RedisStore } from '../lib/stores/redis/index.js'
import { registerMetricsRoute } from './metrics.js'

declare module '../lib/index.js' {
  interface TokenAuthClaims {
    username: string
    role: string
  }
}

type Role = 'admin' | 'user'

/** The asymmetric algorithm each Node key type signs with. */
const ALGORITHM_OF_KEY_TYPE: Record<string, AccessTokenAlgorithm> = { ed25519: 'EdDSA', ec: 'ES256', rsa: 'RS256' }

const ForbiddenError = createError('FORBIDDEN', 'This route needs the admin role', 403)
const WrongPasswordError = createError('WRONG_PASSWORD', 'The current password is wrong', 403)
const UserNotFoundError = createError('USER_NOT_FOUND', 'No such user', 404)
const RouteNotFoundError = createError('NOT_FOUND', 'Not found', 404)
const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1'])
const PasswordChangeThrottledError = createError('PASSWORD_CHANGE_THROTTLED', 'Too many password changes, retry in %s seconds', 429)
/** Password changes per user per window: the current-password check must not become a guessing oracle. */
const PASSWORD_CHANGE_LIMIT = { max: 5, timeWindow: 15 * 60_000 }

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
    cookieHostPrefix
  }
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

/** The access-token key options: one HMAC secret, or the signing key pair plus a retired public key. */
function accessTokenKeyOptions (config: ExampleConfig): { accessTokenSecret: string } | { accessTokenKeys: AccessTokenKey[], jwks: true } {
  if (config.accessTokenAlg === 'HS256') return { accessTokenSecret: config.accessTokenSecret }
  const keys: AccessTokenKey[] = [{ algorithm: config.accessTokenAlg, privateKey: config.accessTokenPrivateKey as string }]
  const previous = config.accessTokenPreviousPublicKey
  if (previous !== undefined) {
    const type = createPublicKey(previous).asymmetricKeyType ?? ''
    const algorithm = ALGORITHM_OF_KEY_TYPE[type]
    if (algorithm === undefined) throw new Error(`ACCESS_TOKEN_PREVIOUS_PUBLIC_KEY must be an Ed25519, EC or RSA public key, got a ${type} key`)
    keys.push({ algorithm, publicKey: previous })
  }
  // Other services verify our access tokens with the published public keys.
  return { accessTokenKeys: keys, jwks: true }
}

interface DemoUser {
  id: string
  username: string
  role: Role
  passwordHash: string
  disabled: boolean
}

/**
 * The demo's users (alice the admin, bob a user), passwords hashed with the plugin's scrypt
 * helper. `createVerifyCredentials` checks unknown users against a dummy hash, so "no such user"
 * and "wrong password" take the same time.
 */
async function createUserDirectory (config: ExampleConfig) {
  const users = await Promise.all([
    [config.username, config.password, 'admin'],
    ['bob', config.secondPassword, 'user']
  ].map(async ([username, password, role], index): Promise<DemoUser> => ({
    id: `user-${index + 1}`, username: username as string, role: role as Role, passwordHash: await hashPassword(password as string), disabled: false
  })))
  const byName = new Map(users.map((user) => [user.username, user]))
  const byId = new Map(users.map((user) => [user.id, user]))
  const toAuthUser = (user: DemoUser): AuthUser<{ username: string, role: Role }> | null =>
    user.disabled ? null : { id: user.id, claims: { username: user.username, role: user.role } }

  return {
    verifyCredentials: createVerifyCredentials({
      findUser: async (username) => byName.get(username),
      passwordHash: (user) => user.passwordHash,
      toAuthUser
    }),
    /** On every refresh: a disabled (or deleted) user's session ends there. */
    async loadUser (id: string) {
      const user = byId.get(id)
      return user === undefined ? null : toAuthUser(user)
    },
    /** False when `current` is not the user's password. */
    async changePassword (id: string, current: string, next: string): Promise<boolean> {
      const user = byId.get(id)
      if (user === undefined || !await verifyPassword(current, user.passwordHash)) return false
      user.passwordHash = await hashPassword(next)
      return true
    },
    /** False for an unknown user. */
    disable (id: string): boolean {
      const user = byId.get(id)
      if (user === undefined) return false
      user.disabled = true
      return true
    }
  }
}

/**
 * The store TOKEN_STORE names (undefined: the plugin's default memory store). A store the app
 * creates is the app's to close, after the plugin has let go of it: onClose hooks run in reverse
 * registration order, and this one is added before the plugin registers its own.
 */
async function createStore (config: ExampleConfig, app: FastifyInstance): Promise<TokenStore | undefined> {
  if (config.tokenStore === 'redis') {
    const store = new RedisStore({ url: config.redisUrl })
    app.addHook('onClose', async () => { await store.close() })
    return store
  }
  if (config.tokenStore === 'postgres') {
    const pool = new pg.Pool({ connectionString: config.databaseUrl })
    // An idle connection the server drops (a restart, a failover, pg_terminate_backend, an idle
    // timeout) makes the Pool emit 'error'; unhandled, that ends the process. The Pool replaces
    // the connection by itself, and a query that was running fails and is answered 503.
    pool.on('error', (error) => { app.log.warn({ err: error }, 'PostgreSQL pool: an idle connection was dropped') })
    app.addHook('onClose', async () => { await pool.end() })
    await migrate(pool)
    return new PostgresStore({ pool })
  }
  return undefined
}

/**
 * The demo app: the plugin under /auth, a protected GET /me, GET /admin (admins only),
 * POST /me/password, POST /admin/users/:id/disable, GET /health.
 */
export async function buildApp (config: ExampleConfig, serverOptions: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      // Belt and braces: the default serializers log no headers, but never let a token through.
      redact: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]']
    },
    ...serverOptions
  })
  const store = await createStore(config, app)
  if (config.generatedSecrets) {
    app.log.warn('ACCESS_TOKEN_SECRET (or ACCESS_TOKEN_PRIVATE_KEY) / REFRESH_TOKEN_SECRET not set: using random secrets, every token dies with this process')
  }
  const users = await createUserDirectory(config)
  // Before the plugin, which then reuses it for its login limits.
  await app.register(fastifyRateLimit, { global: false })
  await app.register(tokenAuth, {
    ...accessTokenKeyOptions(config),
    refreshTokenSecret: config.refreshTokenSecret,
    accessTokenTtl: config.accessTokenTtl,
    refreshTokenTtl: config.refreshTokenTtl,
    sessionMaxAge: config.sessionMaxAge,
    reuseGrace: config.reuseGrace,
    loginRateLimit: { max: config.loginRateLimit, timeWindow: config.rateLimitWindow * 1000 },
    ...(config.accountRateLimit === undefined ? {} : { accountRateLimit: { max: config.accountRateLimit, timeWindow: config.rateLimitWindow * 1000 } }),
    ...(config.storeTimeout === undefined ? {} : { storeTimeout: config.storeTimeout }),
    ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
    ...(config.introspectionClient === undefined ? {} : { introspection: { clients: [config.introspectionClient] } }),
    verifyCredentials: users.verifyCredentials,
    loadUser: users.loadUser,
    cookie: { secure: config.secureCookies, hostPrefix: config.cookieHostPrefix },
    // A signed-out browser also drops what the app cached or stored for the user.
    clearSiteData: true,
    ...(store === undefined ? {} : { store })
  })
  app.tokenAuth.events.on('reuseDetected', (event) => {
    app.log.warn({ userId: event.userId, sessionId: event.sessionId, ip: event.ip }, 'refresh token reuse detected: session revoked')
  })

  // An own property only: a claim set carrying `__proto__: { role: 'admin' }` must not pass.
  const requireAdmin: onRequestAsyncHookHandler = async (request) => {
    if (!Object.hasOwn(request.user, 'role') || request.user.role !== 'admin') throw new ForbiddenError()
  }

  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub, username: request.user.username }))
  app.get('/admin', { onRequest: [app.authenticate, requireAdmin] }, async (request) => ({ admin: request.user.username }))

  app.post<{ Body: { currentPassword: string, newPassword: string, logoutOtherSessions?: boolean } }>('/me/password', {
    onRequest: app.authenticate,
    // Counted per user, after authentication: a stolen access token cannot guess the password.
    config: {
      rateLimit: {
        ...PASSWORD_CHANGE_LIMIT,
        hook: 'preHandler',
        keyGenerator: (request) => `password:${request.user.sub}`,
        errorResponseBuilder: (_request, context) => new PasswordChangeThrottledError(Math.ceil(context.ttl / 1000))
      }
    },
    schema: {
      body: {
        type: 'object',
        required: ['currentPassword', 'newPassword'],
        additionalProperties: false,
        properties: {
          currentPassword: { type: 'string', minLength: 1, maxLength: 1024 },
          newPassword: { type: 'string', minLength: 12, maxLength: 1024 },
          logoutOtherSessions: { type: 'boolean' }
        }
      }
    }
  }, async (request, reply) => {
    const { sub, sid } = request.user
    const { currentPassword, newPassword, logoutOtherSessions } = request.body
    if (!await users.changePassword(sub, currentPassword, newPassword)) throw new WrongPasswordError()
    if (logoutOtherSessions === true) {
      // ASVS 7.4.3: a password change can end every other session; this device stays signed in.
      const others = (await app.tokenAuth.listSessions(sub)).filter((session) => session.id !== sid)
      for (const session of others) await app.tokenAuth.revokeSession(session.id, sub)
    }
    reply.code(204)
  })

  app.post<{ Params: { id: string } }>('/admin/users/:id/disable', {
    onRequest: [app.authenticate, requireAdmin],
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } } }
  }, async (request, reply) => {
    if (!users.disable(request.params.id)) throw new UserNotFoundError()
    // loadUser now refuses the user's refreshes; this also ends their access tokens at once.
    await app.tokenAuth.revokeUserSessions(request.params.id)
    reply.code(204)
  })

  app.get('/health', async () => ({ status: 'ok' }))
  // Prometheus counters of the plugin's events, for scrapers on this machine only: the counts
  // tell an attacker how well an attack is going.
  registerMetricsRoute(app, {
    onRequest: async (request) => { if (!LOOPBACK.has(request.ip)) throw new RouteNotFoundError() }
  })
  // The app's own routes fail like the plugin's when the store does: 503 with Retry-After.
  app.addHook('onSend', async (_request, reply) => {
    if (reply.statusCode === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', 1)
  })
  // Fastify's default 404 repeats the URL, query string included: a password or token sent
  // there by mistake would come back in the body. Answer without echoing anything.
  app.setNotFoundHandler(async () => { throw new RouteNotFoundError() })
  // The browser demo at / (examples/demo.ts), with the client helper compiled on the fly.
  await app.register(import('./demo.js'))
  return app
}
