import pg from 'pg'
import { createClient } from 'redis'

/**
 * Reachability of the real services the store suites run against (DESIGN §6). Each check
 * resolves with `undefined` when the server answers, or with the message to skip the file with
 * when it does not, except under `CI=true`, where an unreachable server rejects, so the test
 * file fails instead of skipping.
 */
function unreachable (service: string, url: string, variable: string, error: unknown): string {
  return skipOrFail(`${service} is not reachable at ${url} (${(error as Error).message}); set ${variable} to run these tests`)
}

/** `message`, to skip with; under `CI=true` a missing service is a failure instead: throws. */
export function skipOrFail (message: string): string {
  if (process.env.CI === 'true') throw new Error(`${message}. Under CI=true this is a failure, not a skip.`)
  return message
}

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** `undefined` when PostgreSQL answers at DATABASE_URL, else the skip message (a rejection under CI). */
export async function postgresAvailable (url = DATABASE_URL): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (error) {
    return unreachable('PostgreSQL', url, 'DATABASE_URL', error)
  } finally {
    await client.end().catch(() => {})
  }
}

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** `undefined` when Redis answers PING at REDIS_URL, else the skip message (a rejection under CI). */
export async function redisAvailable (url = REDIS_URL): Promise<string | undefined> {
  const client = createClient({ url, socket: { connectTimeout: 3000, reconnectStrategy: false } })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return undefined
  } catch (error) {
    return unreachable('Redis', url, 'REDIS_URL', error)
  } finally {
    client.destroy()
  }
}
