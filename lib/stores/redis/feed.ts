import type { RevocationContext, RevocationRecord } from '../types.js'
import type { Connection } from './clients.js'
import type { RedisKeys } from './keys.js'
import { runScript, SCRIPTS } from './scripts.js'

/*
 * The revocation feed: every revocation is added to two sorted sets in a slot of their own
 * (`{feed}`, see keys.ts) and pushed on the channel, as `{ revokedAt, sessionIds }`, so other
 * processes stop accepting the revoked sessions' access tokens. Written and read only here.
 */

/**
 * Records revocations in the feed (and pushes them). The feed lives in another slot than the
 * user's keys, so this is a second command after the script that deleted the sessions. If the
 * process dies (or Redis fails) between the two, the sessions are gone, so their refresh tokens
 * are dead, but other processes never hear of the revocation and keep accepting the sessions'
 * access tokens until those expire: at most `accessTokenTtl`. The caller gets the error, so a
 * logout answers 503 and the client may retry; the retry finds nothing left to revoke.
 */
export async function recordRevocations (redis: Connection, keys: RedisKeys, sessionIds: string[], context: RevocationContext): Promise<void> {
  if (sessionIds.length === 0) return
  const message = JSON.stringify({ revokedAt: context.now, sessionIds })
  await runScript(redis, SCRIPTS.feedAdd, [keys.feed('at'), keys.feed('until')],
    [String(context.now), String(context.now + context.keepFor), keys.channel(), message, ...sessionIds])
}

export async function readRevocations (redis: Connection, keys: RedisKeys, since: number): Promise<RevocationRecord[]> {
  const flat = await runScript(redis, SCRIPTS.feedRead, [keys.feed('at')], [String(since)]) as string[]
  const records: RevocationRecord[] = []
  for (let i = 0; i < flat.length; i += 2) records.push({ sessionId: flat[i] as string, revokedAt: Number(flat[i + 1]) })
  return records
}

/** Calls `listener` for every revocation pushed from now on; resolves with the unsubscribe function. */
export async function listenForRevocations (redis: Connection, keys: RedisKeys, listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
  return await redis.subscribe(keys.channel(), (message) => {
    for (const record of parseRevocations(message)) listener(record)
  })
}

/** Drops the entries past their keep time, a batch per script so none blocks Redis for long. */
export async function sweepRevocations (redis: Connection, keys: RedisKeys, now: number, batchSize: number): Promise<void> {
  let dropped: unknown
  do {
    dropped = await runScript(redis, SCRIPTS.feedSweep, [keys.feed('at'), keys.feed('until')], [String(now), String(batchSize)])
  } while (dropped === batchSize)
}

/** A pushed message, `{ revokedAt, sessionIds }`; anything else on the channel is ignored. */
function parseRevocations (message: string): RevocationRecord[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(message)
  } catch {
    return []
  }
  const { revokedAt, sessionIds } = (parsed ?? {}) as { revokedAt?: unknown, sessionIds?: unknown }
  if (typeof revokedAt !== 'number' || !Array.isArray(sessionIds)) return []
  return sessionIds.filter((id): id is string => typeof id === 'string').map((sessionId) => ({ sessionId, revokedAt }))
}
