import type { Connection } from './clients.js'

/*
 * Redis settings the store needs, and why:
 * - `maxmemory-policy noeviction` (or no `maxmemory` limit). Every key here has a TTL, so
 *   `volatile-*` policies may evict any of them, and `allkeys-*` too: an evicted record only logs
 *   its user out, but an evicted user index makes logout-everywhere miss sessions, and an evicted
 *   feed entry lets other processes keep accepting a revoked session's access tokens. With
 *   noeviction a full Redis refuses writes instead: the plugin answers 503 and issues nothing
 *   (docs/design.md, «Fail closed»). The store warns (`warnIfEvicting`) at first use when it sees another policy.
 * - Persistence (`appendonly yes`, with `appendfsync everysec` or stricter) or a replica that is
 *   promoted on failure: a Redis restarted from an old snapshot (or empty) forgets rotations, so
 *   a refresh token already spent could be accepted again, and forgets revocations.
 * - Redis 6.0 or later (SET KEEPTTL; tested on 7.0); EVAL/EVALSHA and, for the push feed,
 *   PUBLISH/SUBSCRIBE allowed (ACLs); `INFO` too for the eviction check, which is skipped without it.
 */

/**
 * Warns once when a master may evict keys (a `maxmemory` limit with a policy other than
 * `noeviction`; see above). Reads `INFO memory`, which managed services allow more often than
 * CONFIG; any error (a refused command) skips the check.
 */
export async function warnIfEvicting (redis: Connection): Promise<void> {
  try {
    for (const send of await redis.masters()) {
      const info = String(await send(['INFO', 'memory']))
      const limit = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0)
      const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1] ?? 'noeviction'
      if (limit > 0 && policy !== 'noeviction') {
        process.emitWarning(
          `Redis evicts keys under memory pressure (maxmemory-policy ${policy}): it could drop user indexes and ` +
          'revocations, so logout-everywhere could miss sessions and revoked access tokens could keep working. ' +
          'Set maxmemory-policy noeviction.',
          { code: 'FST_TOKEN_AUTH_REDIS_EVICTION' })
        return
      }
    }
  } catch {}
}
