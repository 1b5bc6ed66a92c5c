import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import pg from 'pg'
import tokenAuth, { type AuthUser, type TokenStore } from '../lib/index.js'
import { migrate, PostgresStore } from '../lib/stores/postgres.js'
import { RedisStore } from '../lib/stores/redis.js'

declare module '../lib/index.js' {
  interface TokenAuthClaims {
    username: string
  }
}

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>
const KEY_LENGTH = 64

/** The demo's configuration, read from the environment by `configFromEnv`. */
export interface ExampleConfig {
  logLevel: string
  tokenStore: 'memory' | 'redis' | 'postgres'
  redisUrl: string
  databaseUrl: string
  accessTokenTtl: number
  refreshTokenTtl: number
  reuseGrace: number
  loginRateLimit: number
  username: string
  password: string
  accessTokenSecret: string
  refreshTokenSecret: string
  /** Secrets were generated at start: tokens die with the process. */
  generatedSecrets: boolean
  /** Secure cookies need HTTPS; a local demo runs on plain http unless NODE_ENV=production. */
  secureCookies: boolean
}

/** Reads DESIGN §4's variables; throws a clear error for a bad value. */
export function configFromEnv (env: NodeJS.ProcessEnv = process.env): ExampleConfig {
  const tokenStore = env.TOKEN_STORE ?? 'memory'
  if (tokenStore !== 'memory' && tokenStore !== 'redis' && tokenStore !== 'postgres') {
    throw new Error(`TOKEN_STORE must be memory, redis or postgres, got "${tokenStore}"`)
  }
  const generatedSecrets = env.ACCESS_TOKEN_SECRET === undefined || env.REFRESH_TOKEN_SECRET === undefined
  return {
    logLevel: env.LOG_LEVEL ?? 'info',
    tokenStore,
    redisUrl: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    databaseUrl: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    accessTokenTtl: wholeSeconds(env, 'ACCESS_TOKEN_TTL', 900),
    refreshTokenTtl: wholeSeconds(env, 'REFRESH_TOKEN_TTL', 14 * 24 * 3600),
    reuseGrace: wholeSeconds(env, 'REFRESH_REUSE_GRACE', 5, 0),
    loginRateLimit: wholeSeconds(env, 'LOGIN_RATE_LIMIT', 10),
    username: env.DEMO_USERNAME ?? 'alice',
    password: env.DEMO_PASSWORD ?? 'correct-horse-battery-staple',
    // Random per start when absent; a too-short secret given here is refused by the plugin at boot.
    accessTokenSecret: env.ACCESS_TOKEN_SECRET ?? randomBytes(32).toString('base64url'),
    refreshTokenSecret: env.REFRESH_TOKEN_SECRET ?? randomBytes(32).toString('base64url'),
    generatedSecrets,
    secureCookies: env.NODE_ENV === 'production'
  }
}

function wholeSeconds (env: NodeJS.ProcessEnv, name: string, fallback: number, min = 1): number {
  const raw = env[name]
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < min) throw new Error(`${name} must be a whole number >= ${min}, got "${raw}"`)
  return value
}

/** One user whose password is stored as an scrypt hash, plus a dummy hash so unknown users cost the same. */
async function createUserDirectory (username: string, password: string) {
  const salt = randomBytes(16)
  const hash = await scryptAsync(password, salt, KEY_LENGTH)
  const dummySalt = randomBytes(16)
  const dummyHash = await scryptAsync(randomBytes(16).toString('hex'), dummySalt, KEY_LENGTH)
  const user = { id: 'user-1', username, salt, hash }
  return async function verifyCredentials (name: string, candidate: string): Promise<AuthUser<{ username: string }> | null> {
    const known = name === user.username
    // Always derive and compare once, so "no such user" and "wrong password" take the same time.
    const derived = await scryptAsync(candidate, known ? user.salt : dummySalt, KEY_LENGTH)
    const matches = timingSafeEqual(derived, known ? user.hash : dummyHash)
    return known && matches ? { id: user.id, claims: { username: user.username } } : null
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
    app.addHook('onClose', async () => { await pool.end() })
    await migrate(pool)
    return new PostgresStore({ pool })
  }
  return undefined
}

/** The demo app: the plugin under /auth, a protected GET /me, GET /health. */
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
    app.log.warn('ACCESS_TOKEN_SECRET / REFRESH_TOKEN_SECRET not set: using random secrets, every token dies with this process')
  }
  await app.register(tokenAuth, {
    accessTokenSecret: config.accessTokenSecret,
    refreshTokenSecret: config.refreshTokenSecret,
    accessTokenTtl: config.accessTokenTtl,
    refreshTokenTtl: config.refreshTokenTtl,
    sessionMaxAge: Math.max(config.refreshTokenTtl, 30 * 24 * 3600),
    reuseGrace: config.reuseGrace,
    loginRateLimit: { max: config.loginRateLimit, timeWindow: 60_000 },
    verifyCredentials: await createUserDirectory(config.username, config.password),
    cookie: { secure: config.secureCookies },
    ...(store === undefined ? {} : { store })
  })
  app.tokenAuth.events.on('reuseDetected', (event) => {
    app.log.warn({ userId: event.userId, sessionId: event.sessionId, ip: event.ip }, 'refresh token reuse detected: session revoked')
  })
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub, username: request.user.username }))
  app.get('/health', async () => ({ status: 'ok' }))
  return app
}
