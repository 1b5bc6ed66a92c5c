// One benchmark server per process: `node --import tsx bench/server.ts <scenario>`.
// Prints on stdout `token <jwt>` (scenarios that need one), `prefilled <sessions> <seconds>`
// (the *-1m scenarios), then `listening <port>`; or `skip <reason>` and exits 0 when the store's
// server is unreachable (or a prefill would take too long).
// Over IPC (when spawned with one) it answers, outside HTTP so only the route is measured:
//   { type: 'usage', id }        -> { type: 'usage', id, cpu: process.cpuUsage(), elu: eventLoopUtilization(),
//                                   gc: { ms, major } (time in GC pauses so far, and how many were
//                                   mark-compacts), store: CPU µs used so far by the store's server
//                                   (Redis: INFO cpu; PostgreSQL: /proc of this pool's backends), or null }
//   { type: 'issue', id, count } -> { type: 'tokens', id, tokens } (refresh scenarios only: `count`
//                                   refresh tokens of freshly issued sessions)
// On SIGTERM it closes, then deletes what it put in Redis or PostgreSQL, then exits.
//
// The refresh scenarios differ only in their store:
//   refresh           MemoryStore, holding only the sessions the run issues (~1k-30k)
//   refresh-1m        the same with BENCH_PREFILL_SESSIONS (default 1 000 000) more, put straight
//                     into the store (`createSession` of realistic records over 100k users)
//   refresh-redis     RedisStore on a node-redis client, a key prefix of its own (REDIS_URL)
//   refresh-redis-1m  the same after pipelining BENCH_PREFILL_SESSIONS createSession calls
//                     (skipped if that takes longer than BENCH_PREFILL_TIMEOUT s, default 60)
//   refresh-postgres  PostgresStore on a pg.Pool (max 10) in a schema of its own (DATABASE_URL)
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyInstance } from 'fastify'
import { readFile } from 'node:fs/promises'
import { constants, performance, PerformanceObserver } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import tokenAuth, { generateAccessKey, MemoryStore, type TokenAuthOptions, type TokenStore } from '../lib/index.js'
import type { PrefillJob } from './prefill-worker.js'
import { SCENARIOS, type Scenario } from './scenarios.js'
import { inWindows, openPostgres, openRedis, type OpenedPostgres, type OpenedRedis, sessionRecord } from './stores.js'

const ACCESS_SECRET = 'bench-access-secret-0123456789-abcdefghijklmnop'
const REFRESH_SECRET = 'bench-refresh-secret-0123456789-abcdefghijklmno'
const USER = { id: 'user-1', claims: { username: 'alice' } }
/**
 * Idle lifetime of the refresh scenarios' sessions: an hour, so keys a killed run leaves in a
 * shared Redis expire soon (the lifetime changes no cost).
 */
const SESSION_TTL = 60 * 60
const PREFILL_SESSIONS = integerFromEnv('BENCH_PREFILL_SESSIONS', 1_000_000)
const PREFILL_TIMEOUT = integerFromEnv('BENCH_PREFILL_TIMEOUT', 60)
const PREFILL_WORKER = new URL('./prefill-worker.ts', import.meta.url).href
/** Users the prefilled sessions belong to (10 sessions each by default). */
const PREFILL_USERS = 100_000

type Message = { type: 'issue', id: number, count: number } | { type: 'usage', id: number }

function pluginOptions (overrides: Partial<TokenAuthOptions> = {}): TokenAuthOptions {
  return {
    accessTokenSecret: ACCESS_SECRET,
    refreshTokenSecret: REFRESH_SECRET,
    verifyCredentials: async (username) => username === 'alice' ? USER : null,
    ...overrides
  }
}

interface Built {
  app: FastifyInstance
  token?: string
  issue?: (count: number) => Promise<string[]>
  /** CPU µs the store's server has used so far (all its clients), or null (in-process store). */
  storeCpu?: () => Promise<number | null>
  prefilled?: { sessions: number, seconds: number }
  /** Deletes what the run put in Redis or PostgreSQL and closes the connections. */
  cleanup?: () => Promise<void>
}

type Outcome = Built | { skip: string }

async function build (scenario: Scenario): Promise<Outcome> {
  const app = Fastify({ logger: false })
  const hello = async () => ({ hello: 'world' })

  switch (scenario) {
    case 'bare':
      app.get('/hello', hello)
      return { app }

    case 'diy': {
      await app.register(fastifyJwt, { secret: ACCESS_SECRET })
      app.get('/hello', { onRequest: async (request) => { await request.jwtVerify() } }, hello)
      await app.ready()
      // The same claims, lifetime and size as the plugin's access token, for a like-for-like check.
      const token = app.jwt.sign({ sub: USER.id, sid: 'x'.repeat(22), jti: 'y'.repeat(22), username: 'alice' }, { expiresIn: '15m' })
      return { app, token }
    }

    case 'protected':
    case 'protected-eddsa': {
      // Defaults throughout: memory store, routes on, verify cache on; or an Ed25519 access key.
      const eddsa = { accessTokenSecret: undefined, accessTokenKeys: [{ algorithm: 'EdDSA' as const, privateKey: generateAccessKey('EdDSA') }] }
      await app.register(tokenAuth, pluginOptions(scenario === 'protected' ? {} : eddsa))
      app.get('/hello', { onRequest: app.authenticate }, hello)
      await app.ready()
      const { accessToken } = await app.tokenAuth.issueSession(USER)
      return { app, token: accessToken }
    }

    case 'refresh':
    case 'refresh-1m':
      // A MemoryStore like the default one, but never full: a long run pre-issues more than
      // the default 100 000 sessions, and an evicted session would answer 401.
      return await refreshServer(app, new MemoryStore({ maxSessions: 10_000_000 }), scenario === 'refresh-1m'
        ? async (store) => await prefillMemory(store as MemoryStore)
        : undefined)

    case 'refresh-redis':
    case 'refresh-redis-1m': {
      const redis = await openRedis()
      if ('unreachable' in redis) return { skip: redis.unreachable }
      try {
        const built = await refreshServer(app, redis.store, scenario === 'refresh-redis-1m'
          ? async () => await prefillRedis(redis)
          : undefined, redis.cleanup)
        if ('skip' in built) return built
        return { ...built, storeCpu: async () => await redisCpu(redis) }
      } catch (error) {
        await redis.cleanup()
        throw error
      }
    }

    case 'refresh-postgres': {
      const postgres = await openPostgres()
      if ('unreachable' in postgres) return { skip: postgres.unreachable }
      try {
        const built = await refreshServer(app, postgres.store, undefined, postgres.cleanup)
        if ('skip' in built) return built
        return { ...built, storeCpu: async () => await postgresCpu(postgres) }
      } catch (error) {
        await postgres.cleanup()
        throw error
      }
    }
  }
}

/**
 * The plugin on `store`, prefilled first if asked. The sweep is set to an hour, so it never runs
 * during a measurement: its cost (a walk over every session) is not what the refresh figure is
 * about. `cleanup` is the store's own, run at exit (or now, if the prefill gives up).
 */
async function refreshServer (app: FastifyInstance, store: TokenStore, prefill?: (store: TokenStore) => Promise<Built['prefilled'] | { skip: string }>,
  cleanup?: () => Promise<void>): Promise<Outcome> {
  await app.register(tokenAuth, pluginOptions({
    loginRateLimit: false,
    refreshTokenTtl: SESSION_TTL,
    sweepInterval: 60 * 60 * 1000,
    store
  }))
  await app.ready()
  let prefilled: Built['prefilled']
  if (prefill !== undefined) {
    const result = await prefill(store)
    if (result !== undefined && 'skip' in result) {
      await app.close()
      await cleanup?.()
      return result
    }
    prefilled = result
    // Settle the heap the prefill churned, as a long-running server's would be by then.
    const gc = (globalThis as { gc?: () => void }).gc
    if (gc !== undefined) for (let i = 0; i < 2; i++) gc()
  }
  let users = 0
  const issue = async (count: number) => {
    const tokens: string[] = new Array(count)
    // Concurrent, so a remote store's round trips overlap.
    await inWindows(count, 64, async (i) => {
      // Spread over many users, as real sessions would be.
      const set = await app.tokenAuth.issueSession({ id: `user-${users++ % 1000}`, claims: USER.claims })
      tokens[i] = set.refreshToken
    })
    return tokens
  }
  return { app, issue, ...(prefilled === undefined ? {} : { prefilled }), ...(cleanup === undefined ? {} : { cleanup }) }
}

/** 1M realistic sessions straight into the MemoryStore (no JWT signing), 10 per user. */
async function prefillMemory (store: MemoryStore): Promise<Built['prefilled']> {
  const start = performance.now()
  const ttl = SESSION_TTL * 1000
  for (let n = 0; n < PREFILL_SESSIONS; n++) await store.createSession(sessionRecord(n, n % PREFILL_USERS, Date.now(), ttl))
  return { sessions: store.size, seconds: (performance.now() - start) / 1000 }
}

/**
 * 1M sessions through the store's own createSession (ids from `sessionIdFor`, as the plugin
 * makes them), pipelined by two worker threads (bench/prefill-worker.ts) on connections of their
 * own; gives up after BENCH_PREFILL_TIMEOUT seconds.
 */
async function prefillRedis (redis: OpenedRedis): Promise<Built['prefilled'] | { skip: string }> {
  const start = performance.now()
  const deadline = Date.now() + PREFILL_TIMEOUT * 1000
  const threads = 2
  const share = Math.ceil(PREFILL_SESSIONS / threads)
  const results = await Promise.all(Array.from({ length: threads }, async (_, i) => {
    const job: PrefillJob = {
      prefix: redis.prefix,
      from: i * share,
      to: Math.min(PREFILL_SESSIONS, (i + 1) * share),
      users: PREFILL_USERS,
      ttlMs: SESSION_TTL * 1000,
      deadline
    }
    // A worker thread does not inherit `--import tsx`: it registers tsx itself, then loads the TypeScript.
    const worker = new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(PREFILL_WORKER)}) })`,
      { eval: true, workerData: job })
    return await new Promise<{ loaded?: number, unreachable?: string, error?: string }>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    }).finally(() => worker.terminate())
  }))
  const seconds = (performance.now() - start) / 1000
  const failed = results.find((result) => result.error !== undefined)
  if (failed !== undefined) throw new Error(`prefill worker: ${failed.error}`)
  const unreachable = results.find((result) => result.unreachable !== undefined)
  if (unreachable !== undefined) return { skip: unreachable.unreachable as string }
  const loaded = results.reduce((sum, result) => sum + (result.loaded ?? 0), 0)
  if (loaded < PREFILL_SESSIONS) {
    return { skip: `loading ${PREFILL_SESSIONS} sessions into Redis took more than ${PREFILL_TIMEOUT} s (${loaded} loaded, ${Math.round(loaded / seconds)}/s; the machine's load matters); BENCH_PREFILL_TIMEOUT sets the limit` }
  }
  return { sessions: loaded, seconds }
}

async function redisCpu (redis: OpenedRedis): Promise<number> {
  const info = String(await redis.client.sendCommand(['INFO', 'cpu']))
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6
}

/** CPU of this pool's backend processes (same machine only; null when /proc cannot tell). */
async function postgresCpu (postgres: OpenedPostgres): Promise<number | null> {
  const { rows } = await postgres.pool.query('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [postgres.applicationName])
  let ticks = 0
  try {
    for (const { pid } of rows as Array<{ pid: number }>) {
      // Fields after the command name: utime and stime are the 12th and 13th.
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    }
  } catch {
    return null
  }
  // Linux reports in clock ticks, 100 per second on every common build.
  return ticks * 10_000
}

async function main (): Promise<void> {
  const scenario = process.argv[2] as Scenario
  if (!SCENARIOS.includes(scenario)) {
    console.error(`usage: node --import tsx bench/server.ts <${SCENARIOS.join('|')}>`)
    process.exit(2)
  }
  const built = await build(scenario)
  if ('skip' in built) {
    process.stdout.write(`skip ${built.skip}\n`)
    process.exit(0)
  }
  const { app, token, issue, storeCpu, prefilled, cleanup } = built
  // GC pauses from now on (the prefill's are over): a heap of a million sessions costs here if anywhere.
  const gc = { ms: 0, major: 0 }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gc.ms += entry.duration
      if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++
    }
  }).observe({ entryTypes: ['gc'] })
  process.on('message', (message: Message) => {
    answer(message).then((reply) => process.send?.(reply), (error: unknown) => {
      console.error(error)
      process.exit(1)
    })
  })
  async function answer (message: Message): Promise<object> {
    if (message.type === 'usage') {
      const cpu = process.cpuUsage()
      const elu = performance.eventLoopUtilization()
      return { type: 'usage', id: message.id, cpu, elu, gc: { ...gc }, store: storeCpu === undefined ? null : await storeCpu() }
    }
    if (issue === undefined) throw new Error(`the ${scenario} server issues no tokens`)
    return { type: 'tokens', id: message.id, tokens: await issue(message.count) }
  }
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  // Close cleanly on SIGTERM so `--cpu-prof` gets to write its profile and the store's data is
  // deleted; leave with the parent.
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    app.close()
      .then(async () => await cleanup?.())
      .catch((error: unknown) => { console.error(`${scenario}: clean-up failed`, error) })
      .finally(() => process.exit(0))
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  process.once('disconnect', stop)
  if (token !== undefined) process.stdout.write(`token ${token}\n`)
  if (prefilled !== undefined) process.stdout.write(`prefilled ${prefilled.sessions} ${prefilled.seconds.toFixed(1)}\n`)
  process.stdout.write(`listening ${new URL(address).port}\n`)
}

function integerFromEnv (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be an integer >= 0, got "${raw}"`)
  return value
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
