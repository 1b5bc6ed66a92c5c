// The plugin server the capacity measurements load: `node --import tsx bench/capacity-server.ts`,
// configured by CAPACITY_SERVER (JSON, a ServerConfig), started by bench/capacity-costs.ts
// (startCapacityServer). Prints `listening <port>`; answers over IPC (usage, issue, session,
// revoke, sweep).
import { performance } from 'node:perf_hooks'
import { countGcPauses } from './server/gc-pauses.js'
import { connectRedis, DATABASE_URL } from './server/stores.js'

export const ACCESS_SECRET = 'capacity-access-secret-0123456789-abcdefghijk'
export const REFRESH_SECRET = 'capacity-refresh-secret-0123456789-abcdefghij'
export const PASSWORD = 'capacity-password'

export interface ServerConfig {
  store: 'memory' | 'redis' | 'postgres'
  /** Redis key prefix (redis). */
  prefix?: string
  /** PostgreSQL schema, already migrated (postgres). */
  schema?: string
  /** revocationPollInterval, ms (default 5000, the plugin's). */
  pollIntervalMs?: number
  /** false: the store's push (subscribeRevocations) is hidden, so revocations arrive by polling only. */
  push?: boolean
}

type Request = { id: number } & (
  { type: 'usage' } | { type: 'issue', count: number, firstUser: number } | { type: 'session', user: string } |
  { type: 'revoke', sessionId: string } | { type: 'sweep' })

async function serve (): Promise<void> {
  const config = JSON.parse(process.env.CAPACITY_SERVER ?? '{}') as ServerConfig
  const { default: Fastify } = await import('fastify')
  const { default: tokenAuth, MemoryStore } = await import('../lib/index.js')
  let store: import('../lib/index.js').TokenStore
  let close = async () => {}
  if (config.store === 'redis') {
    const { RedisStore } = await import('../lib/stores/redis/index.js')
    const client = await connectRedis()
    if ('unreachable' in client) throw new Error(client.unreachable)
    store = new RedisStore({ client, prefix: config.prefix ?? 'fta-capacity:' })
    close = async () => { await client.close() }
  } else if (config.store === 'postgres') {
    const { PostgresStore } = await import('../lib/stores/postgres/index.js')
    const { default: pg } = await import('pg')
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10, idleTimeoutMillis: 0 })
    pool.on('error', () => {})
    store = new PostgresStore({ pool, schema: config.schema ?? 'public' })
    close = async () => { await pool.end() }
  } else {
    store = new MemoryStore({ maxSessions: 10_000_000 })
  }
  // Hiding the prototype's method leaves the plugin nothing to subscribe with: polling only.
  if (config.push === false) Object.defineProperty(store, 'subscribeRevocations', { value: undefined })
  const app = Fastify({ logger: false })
  await app.register(tokenAuth, {
    accessTokenSecret: ACCESS_SECRET,
    refreshTokenSecret: REFRESH_SECRET,
    // Trivial on purpose: the measured login is the plugin's work, not a password hash.
    verifyCredentials: async (username, password) => password === PASSWORD ? { id: username, claims: { username } } : null,
    loginRateLimit: false,
    accountRateLimit: false,
    refreshTokenTtl: 60 * 60,
    // No sweep during a measurement; the sweep step calls it on purpose.
    sweepInterval: 60 * 60 * 1000,
    revocationPollInterval: config.pollIntervalMs ?? 5000,
    store
  })
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub }))
  await app.ready()
  const gc = countGcPauses()
  const answer = async (message: Request): Promise<object> => {
    switch (message.type) {
      case 'usage': return { cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), gc: { ...gc }, store: null }
      case 'issue': {
        // One user per session (the worst case for Redis keys), 64 at a time so round trips overlap.
        const tokens: string[] = new Array(message.count)
        let next = 0
        await Promise.all(Array.from({ length: Math.min(64, message.count) }, async () => {
          while (next < message.count) {
            const i = next++
            const user = `cap-${message.firstUser + i}`
            tokens[i] = (await app.tokenAuth.issueSession({ id: user, claims: { username: user } })).refreshToken
          }
        }))
        return { tokens }
      }
      case 'session': {
        const set = await app.tokenAuth.issueSession({ id: message.user, claims: { username: message.user } })
        return { accessToken: set.accessToken, refreshToken: set.refreshToken, sessionId: set.sessionId }
      }
      case 'revoke': return { revoked: await app.tokenAuth.revokeSession(message.sessionId) }
      case 'sweep': return { removed: await store.sweep(Date.now()) }
    }
  }
  process.on('message', (message: Request) => {
    answer(message).then((reply) => process.send?.({ ...reply, id: message.id }), (error: unknown) => {
      process.send?.({ id: message.id, error: String(error) })
    })
  })
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    app.close().then(close).catch((error: unknown) => console.error(error)).finally(() => process.exit(0))
  }
  process.once('SIGTERM', stop)
  process.once('disconnect', stop)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  process.stdout.write(`listening ${new URL(address).port}\n`)
}

serve().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
