// The real stores the refresh scenarios run against (bench/memory.ts uses the Redis helpers too,
// through bench/stores.ts). The store classes come from the plugin as loaded by ./plugin.ts.
//   REDIS_URL     default redis://127.0.0.1:6379 (database BENCH_REDIS_DB, default 15, unless the URL names one)
//   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/test
// Every run works under a prefix (Redis) or schema (PostgreSQL) of its own and deletes it at the
// end, so a shared server is left as it was; Redis keys carry TTLs as a backstop for a run killed
// before its clean-up.
import { readFile } from 'node:fs/promises'
import type { Pool } from 'pg'
import type { RedisClientType } from 'redis'
import type { PostgresModule, RedisModule } from './plugin.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/**
 * The logical database the benchmark works in, unless REDIS_URL names one (`…/3`): 15, not the
 * 0 that tests and apps use, because SCAN walks a whole database: a million benchmark keys in
 * database 0 would slow every sweep of a test running meanwhile, and load the Redis measured.
 */
const REDIS_DATABASE = /^rediss?:\/\/[^/]*\/\d+/.test(REDIS_URL) ? undefined : Number(process.env.BENCH_REDIS_DB ?? 15)
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A name unique to this run: process id and start time. */
function runId (): string {
  return `${process.pid}_${Date.now().toString(36)}`
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

export interface OpenedRedis {
  store: InstanceType<RedisModule['RedisStore']>
  client: RedisClientType
  prefix: string
  /** Deletes every key under the run's prefix, then closes the client. */
  cleanup: () => Promise<void>
  /** CPU µs the whole redis-server has used so far (INFO cpu: other clients count too). */
  cpu: () => Promise<number>
}

/**
 * A RedisStore on a node-redis client of our own (as `createClient({ url })` makes it, unless
 * BENCH_REDIS_NO_COMMAND_TIMEOUT=1: see `connectRedis`), under `fta-bench:<run>:`.
 */
export async function openRedis ({ RedisStore }: RedisModule): Promise<OpenedRedis | { unreachable: string }> {
  const client = await connectRedis(process.env.BENCH_REDIS_NO_COMMAND_TIMEOUT === '1')
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
    },
    async cpu () {
      const info = String(await client.sendCommand(['INFO', 'cpu']))
      const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)
      return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6
    }
  }
}

export interface OpenedPostgres {
  store: InstanceType<PostgresModule['PostgresStore']>
  pool: Pool
  /** Drops the run's schema (CASCADE), then ends the pool. */
  cleanup: () => Promise<void>
  /** CPU µs this pool's backends have used so far (same machine only; null when /proc cannot tell). */
  cpu: () => Promise<number | null>
}

/**
 * A PostgresStore in a fresh schema `fta_bench_<run>`, migrated, on a pool of at most 10
 * connections, never closed while idle.
 */
export async function openPostgres ({ migrate, PostgresStore }: PostgresModule): Promise<OpenedPostgres | { unreachable: string }> {
  const { default: pg } = await import('pg')
  const applicationName = `fta-bench-${runId()}`
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10, connectionTimeoutMillis: 3000, idleTimeoutMillis: 0, application_name: applicationName })
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
    async cleanup () {
      await store.close()
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`)
      await pool.end()
    },
    async cpu () {
      const { rows } = await pool.query('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [applicationName])
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
  }
}
