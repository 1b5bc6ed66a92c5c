// The real stores the benchmark runs against, and realistic session records to fill them with.
// Shared by bench/server.ts (throughput) and bench/memory.ts (bytes per session).
//   REDIS_URL     default redis://127.0.0.1:6379 (database BENCH_REDIS_DB, default 15, unless the URL names one)
//   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/test
// Every run works under a prefix (Redis) or schema (PostgreSQL) of its own and deletes it at the
// end, so a shared server is left as it was; Redis keys carry TTLs as a backstop for a run killed
// before its clean-up.
import type { Pool } from 'pg'
import type { RedisClientType } from 'redis'
import { migrate, PostgresStore } from '../lib/stores/postgres/index.js'
import { RedisStore } from '../lib/stores/redis/index.js'
import type { SessionRecord } from '../lib/stores/types.js'
import { hashTokenId, randomId } from '../lib/tokens.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/**
 * The logical database the benchmark works in, unless REDIS_URL names one (`…/3`): 15, not the
 * 0 that tests and apps use, because SCAN walks a whole database. A million benchmark keys in
 * database 0 make every RedisStore sweep (and any other SCAN) of a test running meanwhile walk
 * them too, slowing it, and its SCANs would load the Redis under measurement.
 */
const REDIS_DATABASE = /^rediss?:\/\/[^/]*\/\d+/.test(REDIS_URL) ? undefined : Number(process.env.BENCH_REDIS_DB ?? 15)
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A store that reached its server, or why it could not. */
export type Opened<T> = { store: T, cleanup: () => Promise<void> } | { unreachable: string }

/** A name unique to this run: process id and start time. */
function runId (): string {
  return `${process.pid}_${Date.now().toString(36)}`
}

export interface OpenedRedis {
  store: RedisStore
  client: RedisClientType
  prefix: string
  /** Deletes every key under the run's prefix, then closes the client. */
  cleanup: () => Promise<void>
}

/**
 * A node-redis client, connected, or why it could not connect (3 s at most). `fast` turns off
 * node-redis 6's per-command timeout (5 s by default: an `AbortSignal.timeout` per command, about
 * a third of the client's CPU per command): for loaders only, the measured store keeps the default
 * an application gets.
 */
export async function connectRedis (fast = false): Promise<RedisClientType | { unreachable: string }> {
  const { createClient } = await import('redis')
  // No reconnecting: a connection lost mid-run must fail the run (non-2xx), not stall it.
  const client: RedisClientType = createClient({
    url: REDIS_URL,
    socket: { connectTimeout: 3000, reconnectStrategy: false },
    ...(REDIS_DATABASE === undefined ? {} : { database: REDIS_DATABASE }),
    ...(fast ? { commandOptions: { timeout: 0 } } : {})
  })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return client
  } catch (error) {
    client.destroy()
    return { unreachable: `Redis is not reachable at ${REDIS_URL} (${(error as Error).message}); set REDIS_URL` }
  }
}

/**
 * A RedisStore on a node-redis client of our own (as `createClient({ url })` makes it, unless
 * `fast`, by default when BENCH_REDIS_NO_COMMAND_TIMEOUT=1: see `connectRedis`), under
 * `fta-bench:<run>:`. Resolves with `{ unreachable }` when Redis does not answer within 3 s.
 */
export async function openRedis (fast = process.env.BENCH_REDIS_NO_COMMAND_TIMEOUT === '1'): Promise<OpenedRedis | { unreachable: string }> {
  const client = await connectRedis(fast)
  if ('unreachable' in client) return client
  const prefix = `fta-bench:${runId()}:`
  const store = new RedisStore({ client, prefix })
  return {
    store,
    client,
    prefix,
    async cleanup () {
      await store.close()
      await deleteRedisPrefix(client, prefix)
      await client.close()
    }
  }
}

/** SCAN + UNLINK of every key under `prefix`; resolves with how many went. */
export async function deleteRedisPrefix (client: RedisClientType, prefix: string): Promise<number> {
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`
  let cursor = '0'
  let deleted = 0
  do {
    const reply = await client.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '10000']) as [string, string[]]
    cursor = reply[0]
    if (reply[1].length > 0) deleted += await client.sendCommand(['UNLINK', ...reply[1]]) as number
  } while (cursor !== '0')
  return deleted
}

export interface OpenedPostgres {
  store: PostgresStore
  pool: Pool
  schema: string
  /** The pool's `application_name`, to find its backends in pg_stat_activity. */
  applicationName: string
  /** Drops the run's schema (CASCADE), then ends the pool. */
  cleanup: () => Promise<void>
}

/**
 * A PostgresStore in a fresh schema `fta_bench_<run>`, migrated, on a pool of at most 10
 * connections (one of them held by the LISTEN of the revocation push once the plugin subscribes),
 * never closed while idle. Resolves with `{ unreachable }` when PostgreSQL does not answer within 3 s.
 */
export async function openPostgres (): Promise<OpenedPostgres | { unreachable: string }> {
  const { default: pg } = await import('pg')
  const applicationName = `fta-bench-${runId()}`
  const pool = new pg.Pool({
    connectionString: DATABASE_URL,
    max: 10,
    connectionTimeoutMillis: 3000,
    idleTimeoutMillis: 0,
    application_name: applicationName
  })
  pool.on('error', () => {})
  try {
    await pool.query('SELECT 1')
  } catch (error) {
    await pool.end().catch(() => {})
    return { unreachable: `PostgreSQL is not reachable at ${DATABASE_URL} (${(error as Error).message}); set DATABASE_URL` }
  }
  const schema = `fta_bench_${runId()}`
  await pool.query(`CREATE SCHEMA "${schema}"`)
  await migrate(pool, { schema })
  const store = new PostgresStore({ pool, schema })
  return {
    store,
    pool,
    schema,
    applicationName,
    async cleanup () {
      await store.close()
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`)
      await pool.end()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Realistic records. Every string is built per session and flattened (`fresh`), as the strings
// of a real request are (parsed out of its own buffer): V8 can share none of them.
// ---------------------------------------------------------------------------------------------

/** A new flat (sequential, one-byte) string with the content of `text`, never a shared or cons string. */
export function fresh (text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1')
}

/** A 111-character desktop Chrome User-Agent, its build numbers varied by `n`. */
export function userAgent (n: number): string {
  return fresh(`Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.${1000 + n % 9000}.${100 + n % 900} Safari/537.36`)
}

/** An IPv4 address from the documentation ranges, varied by `n` (9 to 15 characters). */
export function ipv4 (n: number): string {
  return fresh(`${[192, 198, 203][n % 3]}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`)
}

export function userIdOf (user: number): string {
  return fresh(`user-${user}`)
}

/** The `claims` captured at login: `{ username }`, distinct per user. */
export function claimsOf (user: number): Record<string, unknown> {
  return { username: fresh(`name-${user}`) }
}

/**
 * A session as `SessionService.issue` creates it at `now` (no rotation yet): random id (or
 * `id`), hash of a random token id, this client. `ttlMs` is its idle and absolute lifetime.
 */
export function sessionRecord (n: number, user: number, now: number, ttlMs: number, id = randomId(16)): SessionRecord {
  return {
    id,
    userId: userIdOf(user),
    claims: claimsOf(user),
    createdAt: now,
    lastUsedAt: now,
    expiresAt: now + ttlMs,
    absoluteExpiresAt: now + ttlMs,
    tokenHash: hashTokenId(randomId(32)),
    previousTokenHash: null,
    rotatedAt: null,
    graceUses: 0,
    userAgent: userAgent(n),
    ip: ipv4(n)
  }
}

/**
 * Runs `task(0 … count-1)` with at most `window` calls in flight: enough to pipeline a client's
 * commands (node-redis sends what is issued in one tick together) without holding millions of
 * promises. Stops early (resolving with how many completed) once `deadline` (ms, performance.now)
 * passes.
 */
export async function inWindows (count: number, window: number, task: (i: number) => Promise<unknown>,
  deadline = Number.POSITIVE_INFINITY, now: () => number = () => performance.now()): Promise<number> {
  let next = 0
  let done = 0
  const worker = async (): Promise<void> => {
    while (next < count && now() < deadline) {
      await task(next++)
      done++
    }
  }
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker))
  return done
}
