import { createHash } from 'node:crypto'

/*
 * Key layout (P = prefix, T = the user's tag: 8 base64url characters of SHA-256(userId)):
 *   P{T}:b               string, the bucket: the first sessions of the user(s) with tag T, packed
 *                        records with their ids (bucket.ts); TTL: its longest-lived session
 *   P{T}:s:<sessionId>   string, a session record (packed or JSON, see record.ts) of a session
 *                        not in the bucket (it was full, or the record is JSON); TTL: its expiresAt
 *   P{T}:i               sorted set, the sessions of the user(s) with tag T that have a record
 *                        key, scored by expiresAt; TTL: its longest-lived session
 *   Pp:<sessionId>       string, T: the pointer from a session id to its user's slot (see below);
 *                        TTL: the session's absoluteExpiresAt
 *   Ponce:<key>          string, 1: a DPoP proof id already used (`useOnce`, SET NX); TTL: until the
 *                        proof's expiresAt, at least 1 ms (never MIN_TTL: nothing reads it back)
 *   P{feed}:at           sorted set, the revocation feed: session id (or `<id>:<claimsVersion>` for
 *                        a claims change, feed.ts) scored by revokedAt
 *   P{feed}:until        sorted set, the same members scored by when they may leave the feed
 *   channel P revocations   pub/sub: every revocation and claims change, pushed as it is recorded
 *
 * `{T}` is a Redis Cluster hash tag: a user's bucket, records and index share one hash slot, so every
 * change to them is one Lua script, atomic, and never a CROSSSLOT error. The tag is a digest
 * rather than the user id itself, so any user id gives a short key with no `{` or `}` in it.
 *
 * Finding the slot from a session id alone: `rotate` and `revokeSession` get a session id and no
 * user id. Ids from `sessionIdFor(userId)` (the plugin asks for them) start with their user's tag,
 * so those calls go straight to the slot, one round trip. Any other id (one a caller made itself)
 * gets a pointer key written at login: one GET more per call and ~70 bytes per session. The
 * pointer is written once and never changes, so reading it outside the script races with
 * nothing: the script re-reads the record itself and answers `missing` if it has gone. (A pointer
 * key read in the script instead would be a second slot: CROSSSLOT on a cluster.)
 *
 * Times: TTLs are computed from the caller's `now` (relative PX, never PXAT; at creation the
 * record's lastUsedAt), so they agree with the times the contract passes in even when the app's
 * clock and Redis's differ. Once Redis has expired a record, calls answer `missing` rather than
 * `expired`, as after a sweep (the plugin has refused the refresh token by its own `exp` by then).
 */

/** Characters of the user tag: 48 bits, so two users sharing a slot tag is rare (and harmless). */
const TAG_LENGTH = 8
/** Length of an id from `sessionIdFor`: the tag, then 16 random bytes in base64url. */
const TAGGED_ID_LENGTH = TAG_LENGTH + 22

/**
 * Shortest TTL given to a key (ms): a record created or rotated right at its expiry stays
 * readable for a moment, so the caller gets `expired` (as from any store) rather than `missing`.
 * The scripts' `ttl` takes it from here.
 */
export const MIN_TTL = 1000

/** Milliseconds from `now` until `at`, as PX wants them, never below `MIN_TTL`. */
export function ttl (at: number, now: number): string {
  return String(Math.max(Math.ceil(at - now), MIN_TTL))
}

/** The slot tag of a user: a short digest, the same in every process. */
export function userTag (userId: string): string {
  return createHash('sha256').update(userId).digest('base64url').slice(0, TAG_LENGTH)
}

/**
 * The tag an id from `sessionIdFor` starts with. Another id of that length yields a wrong guess,
 * which only costs a lookup: a record lives at exactly one key, in its owner's slot.
 */
export function embeddedTag (sessionId: string): string | undefined {
  return sessionId.length === TAGGED_ID_LENGTH ? sessionId.slice(0, TAG_LENGTH) : undefined
}

/** The names of the layout above under one prefix. */
export class RedisKeys {
  constructor (readonly prefix: string) {}

  record (tag: string, sessionId: string): string {
    return `${this.prefix}{${tag}}:s:${sessionId}`
  }

  index (tag: string): string {
    return `${this.prefix}{${tag}}:i`
  }

  bucket (tag: string): string {
    return `${this.prefix}{${tag}}:b`
  }

  pointer (sessionId: string): string {
    return `${this.prefix}p:${sessionId}`
  }

  proofId (key: string): string {
    return `${this.prefix}once:${key}`
  }

  feed (part: 'at' | 'until'): string {
    return `${this.prefix}{feed}:${part}`
  }

  channel (): string {
    return `${this.prefix}revocations`
  }

  /** A SCAN pattern matching every user index and bucket, the prefix taken literally (Redis glob). */
  sweepPattern (): string {
    return `${this.prefix.replace(/[*?[\]\\]/g, '\\$&')}{${'?'.repeat(TAG_LENGTH)}}:[bi]`
  }

  /** Whether a key found by `sweepPattern` is a bucket (else it is an index). */
  isBucket (key: string): boolean {
    return key.endsWith(':b')
  }

  /** The tag of an index or bucket key found by `sweepPattern`. */
  tagOfIndex (index: string): string {
    return index.slice(this.prefix.length + 1, this.prefix.length + 1 + TAG_LENGTH)
  }
}
