import type { RevocationContext, RevocationRecord } from '../types.js'
import type { Connection } from './clients.js'
import type { RedisKeys } from './keys.js'
import { runScript, SCRIPTS } from './scripts.js'

/*
 * The revocation feed: every revocation is added to two sorted sets in a slot of their own
 * (`{feed}`, see keys.ts) and pushed on the channel, as `{ revokedAt, sessionIds }`, so other
 * processes stop accepting the revoked sessions' access tokens. A claims change (docs/design.md,
 * «Claims that change») is fed the same way: its member is `<sessionId>:<claimsVersion>`, which no
 * session id is (ids are [A-Za-z0-9_-]), so it never hides a revocation of the same session nor
 * an earlier version; it is pushed as `{ revokedAt, claimsChanged: [[sessionId, claimsVersion], ...] }`,
 * a message the earlier release ignores (its feed poll reads such a member as the revocation of
 * a session id no token carries, which refuses nothing). Written and read only here.
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
  await addToFeed(redis, keys, sessionIds, { revokedAt: context.now, sessionIds }, context)
}

/**
 * Records claims changes in the feed (and pushes them), after the script that made them, as
 * revocations are: if this fails, the sessions hold the new claims and version (the next refresh
 * signs them) but other processes keep accepting the older access tokens until they expire.
 */
export async function recordClaimsChanges (redis: Connection, keys: RedisKeys, changes: RevocationRecord[], context: RevocationContext): Promise<void> {
  const members = changes.map((change) => `${change.sessionId}:${String(change.claimsVersion)}`)
  const claimsChanged = changes.map((change) => [change.sessionId, change.claimsVersion])
  await addToFeed(redis, keys, members, { revokedAt: context.now, claimsChanged }, context)
}

async function addToFeed (redis: Connection, keys: RedisKeys, members: string[], message: object, context: RevocationContext): Promise<void> {
  if (members.length === 0) return
  await runScript(redis, SCRIPTS.feedAdd, [keys.feed('at'), keys.feed('until')],
    [String(context.now), String(context.now + context.keepFor), keys.channel(), JSON.stringify(message), ...members])
}

/** A feed member read back: a revocation (a session id) or a claims change (`id:version`). */
function feedEntry (member: string, revokedAt: number): RevocationRecord {
  const colon = member.indexOf(':')
  if (colon === -1) return { sessionId: member, revokedAt }
  return { sessionId: member.slice(0, colon), revokedAt, claimsVersion: Number(member.slice(colon + 1)) }
}

export async function readRevocations (redis: Connection, keys: RedisKeys, since: number): Promise<RevocationRecord[]> {
  const flat = await runScript(redis, SCRIPTS.feedRead, [keys.feed('at')], [String(since)]) as string[]
  const records: RevocationRecord[] = []
  for (let i = 0; i < flat.length; i += 2) records.push(feedEntry(flat[i] as string, Number(flat[i + 1])))
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

/**
 * A pushed message, `{ revokedAt, sessionIds }` or `{ revokedAt, claimsChanged }`; anything else
 * on the channel, and any malformed part, is ignored.
 */
function parseRevocations (message: string): RevocationRecord[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(message)
  } catch {
    return []
  }
  const { revokedAt, sessionIds, claimsChanged } = (parsed ?? {}) as { revokedAt?: unknown, sessionIds?: unknown, claimsChanged?: unknown }
  if (typeof revokedAt !== 'number') return []
  if (Array.isArray(claimsChanged)) {
    return claimsChanged.filter((change): change is [string, number] => Array.isArray(change) && typeof change[0] === 'string' && typeof change[1] === 'number')
      .map(([sessionId, claimsVersion]) => ({ sessionId, revokedAt, claimsVersion }))
  }
  if (!Array.isArray(sessionIds)) return []
  return sessionIds.filter((id): id is string => typeof id === 'string').map((sessionId) => ({ sessionId, revokedAt }))
}
