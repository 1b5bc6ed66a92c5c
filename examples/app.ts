import { createPublicKey } from 'node:crypto'
import createError from '@fastify/error'
import fastifyRateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type onRequestAsyncHookHandler } from 'fastify'
import pg from 'pg'
import tokenAuth, {
  type AccessTokenAlgorithm, type AccessTokenKey, type AuthUser, createVerifyCredentials, hashPassword, type TokenStore, verifyPassword
} from '../lib/index.js'
import { migrate, PostgresStore } from '../lib/stores/postgres/index.js'
import { RedisStore } from '../lib/stores/redis/index.js'
import type { ExampleConfig } from './config.js'
import { registerMetricsRoute } from './metrics.js'
import { registerSessionPolicy, type Role, sessionPolicyOptions } from './policy.js'

export { configFromEnv, type ExampleConfig } from './config.js'

declare module '../lib/index.js' {
  interface TokenAuthClaims {
    username: string
    role: string
  }
}

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
  email?: string
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
    setRole (id: string, role: Role): DemoUser | undefined {
      const user = byId.get(id)
      if (user !== undefined) user.role = role
      return user
    },
    setEmail (id: string, email: string): void {
      const user = byId.get(id)
      if (user !== undefined) user.email = email
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
 * POST /me/password, POST /admin/users/:id/disable, the session policy's routes
 * (examples/policy.ts), GET /health.
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
    ...sessionPolicyOptions(config),
    dpop: config.dpop,
    dpopNonce: config.dpopNonce,
    dbsc: config.dbsc,
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

  registerSessionPolicy(app, config, users, requireAdmin)

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
