/**
 * The token store contract. A store keeps sessions, never tokens: each session record holds
 * hashes of the refresh tokens it currently accepts (docs/design.md, «Hashed at rest»). Stores know nothing of Fastify
 * or JWTs; the session service decides what to ask, the store makes each change atomically.
 *
 * All times are integer milliseconds since the epoch, passed in by the caller (stores never read
 * the clock themselves, so every store agrees on what "now" means and tests can move time).
 * Strings are well-formed Unicode without U+0000 (PostgreSQL refuses it in text and jsonb).
 * Every method may reject when the backing service is unreachable; the plugin turns any
 * rejection into a 503 and issues nothing.
 *
 * The one exception to "stores never read the clock" is a write's `deadline` (docs/design.md,
 * «A 503 is the truth»): a wall-clock time in ms after which the plugin has already answered 503,
 * so the change must not be applied. The store compares it with its own clock at the moment the
 * change would be applied (Redis `TIME` inside the script, PostgreSQL `clock_timestamp()` inside
 * the statement, `Date.now()` in process), and then rejects with `StoreDeadlineError` having
 * changed nothing. A stalled store that wakes up therefore drops the work the plugin gave up on.
 */

/** Records a store's sweep removes per batch unless told otherwise: each batch is short, so none blocks for long. */
export const DEFAULT_SWEEP_BATCH = 1000

/** What a store rejects with when a write reached it after its caller's deadline: nothing was changed. */
export class StoreDeadlineError extends Error {
  constructor (what: string) {
    super(`${what} reached the store after its deadline: nothing was changed`)
    this.name = 'StoreDeadlineError'
  }
}

/** Options of a write that the plugin may have given up on. */
export interface WriteOptions {
  /** Wall-clock ms after which the write must not be applied (see the notes above); the plugin always sets it. */
  deadline?: number
}

/** One login: a refresh-token family. Plain JSON values only, so a store may serialise it. */
export interface SessionRecord {
  /** Random session id (the `sid` claim of every token of this session). */
  id: string
  userId: string
  /** Extra access-token claims captured at login, re-signed on every refresh. */
  claims: Record<string, unknown>
  createdAt: number
  lastUsedAt: number
  /** Idle expiry: `lastUsedAt + refreshTokenTtl`, never later than `absoluteExpiresAt`. */
  expiresAt: number
  /** Absolute end of the session; no refresh moves it. */
  absoluteExpiresAt: number
  /** The hash (base64url, 128 bits: docs/design.md, «Hashed at rest») of the refresh token accepted now. */
  tokenHash: string
  /** Hash of the immediate predecessor, kept for the grace window, recovery and theft detection. */
  previousTokenHash: string | null
  /**
   * When the current token replaced `previousTokenHash` (by rotation or recovery): the grace
   * window starts here and never slides, and the current token is derived from it.
   */
  rotatedAt: number | null
  /** How many times the predecessor was answered within the current grace window. */
  graceUses: number
  /** The client of the latest login or refresh. */
  userAgent: string | null
  ip: string | null
  /** The client that started the session (docs/design.md, «Session policy»); never changes. */
  firstUserAgent: string | null
  firstIp: string | null
  /**
   * When and how the user last proved who they are (RFC 9470): set at login, replaced only by a
   * re-authentication, never moved by a refresh (docs/design.md, «Step-up authentication»).
   */
  authentication: Authentication
  /**
   * 0 at login; `updateUserClaims` adds 1. Access tokens carry it (`cv`, when above 0), and the
   * feed tells every process to refuse those signed with an older one («Claims that change»).
   */
  claimsVersion: number
}

/** How the user last authenticated: RFC 9470's `auth_time`, `acr` and `amr`. */
export interface Authentication {
  /** When, in ms since the epoch. */
  time: number
  /** Authentication context class reference, e.g. `mfa`, when `verifyCredentials` names one. */
  acr?: string
  /** Authentication methods references (RFC 8176), e.g. `['pwd', 'otp']`, when named. */
  amr?: string[]
}

/** What `createSession` may have to enforce: at most `max` live sessions per user («Session caps»). */
export interface SessionLimit {
  max: number
  /**
   * `end-least-recent`: the user's live sessions with the oldest `lastUsedAt` are deleted (and
   * fed as revoked) so the new one is the `max`-th; `refuse`: nothing is stored.
   */
  policy: 'end-least-recent' | 'refuse'
  /** How long (ms) the revocation of an ended session stays in the feed; it is fed at the new session's `createdAt`. */
  keepRevocationFor: number
}

export interface CreateOptions extends WriteOptions {
  /** Enforced in the same atomic step as the insert; none when absent. */
  sessionLimit?: SessionLimit
}

/**
 * What `createSession` did: `created`, with the sessions it ended to make room (records as they
 * were, least recently used first; live means `expiresAt` after the new session's `createdAt`),
 * or `refused` (policy `refuse`, the user already has `max` live sessions; nothing stored).
 */
export type CreateResult =
  | { outcome: 'created', ended: SessionRecord[] }
  | { outcome: 'refused' }

export interface RotateRequest extends WriteOptions {
  sessionId: string
  /** Hash of the refresh token the client presented. */
  presentedHash: string
  /**
   * Hash of the successor the caller will hand out if the rotation (or a recovery) succeeds. It
   * is derived from the presented token and `now`, so a later recovery mints a different one.
   */
  nextHash: string
  now: number
  /** Idle lifetime in ms: the new `expiresAt` is `min(now + idleTtl, absoluteExpiresAt)`. */
  idleTtl: number
  /** Grace window in ms, inclusive; 0 disables the grace (even within the same millisecond). */
  grace: number
  /** How many grace answers one rotation allows. */
  graceLimit: number
  /** Fields refreshed on success (last client seen). */
  userAgent: string | null
  ip: string | null
  /** Replacement claims, when the app reloaded the user; `undefined` keeps the stored ones. */
  claims?: Record<string, unknown>
  /**
   * A re-authentication: replaces the stored `authentication` when the outcome is `rotated` or
   * `recovered` (a `grace` answer changes nothing but `graceUses`); `undefined` keeps it.
   */
  authentication?: Authentication
  /**
   * A shorter absolute end (the `onRefresh` hook's `shorten`): on `rotated` or `recovered` the
   * record's `absoluteExpiresAt` becomes the smaller of the two before the idle expiry is
   * computed; `undefined` keeps it. Checked for `expired` against the stored one, as always.
   */
  absoluteExpiresAt?: number
  /** How long (ms) a revocation caused by this call (`reused`) stays in the revocation feed. */
  keepRevocationFor: number
}

/** When a revoking call happens, and how long its revocations must stay in the feed. */
export interface RevocationContext {
  now: number
  /**
   * Milliseconds the revocation stays readable by `revokedSince`: at least as long as the
   * session's access tokens can live, so every process hears of it before they expire.
   */
  keepFor: number
}

/**
 * One entry of the revocation feed: the session was revoked at `revokedAt`, or, when
 * `claimsVersion` is present, its claims changed then and access tokens carrying a lower
 * `claimsVersion` must be refused (the session lives on).
 */
export interface RevocationRecord {
  sessionId: string
  revokedAt: number
  claimsVersion?: number
}

/**
 * What one atomic rotation decided (docs/design.md, «Refresh-token rotation»), checked in this
 * order:
 * - `missing`: no such session (never existed, revoked, or swept).
 * - `expired`: idle or absolute expiry passed; the session was deleted.
 * - `rotated`: the presented hash was current; it is now the predecessor and `nextHash` current,
 *   `rotatedAt` is `now`, `graceUses` 0, the idle expiry renewed.
 * - the presented hash is the immediate predecessor (so its successor has never been used):
 *   - `grace`: inside the grace window (`grace > 0` and `now - rotatedAt <= grace`) and under
 *     the limit; nothing changed but `graceUses` (the caller re-issues the current successor).
 *   - `superseded`: inside the window but over the limit; or, outside it, `now <= rotatedAt`
 *     (grace 0 in the same millisecond, or a caller whose clock is behind), when no successor
 *     different from the current one can be minted. Nothing changed.
 *   - `recovered`: otherwise: the successor was never used, so the client that holds the
 *     predecessor may never have received it (a response lost, or a rotation the store applied
 *     after the caller gave up). The record changes as for `rotated` (`rotatedAt`, `graceUses`,
 *     `lastUsedAt`, idle expiry, client, claims) except that `previousTokenHash` stays: `nextHash`
 *     replaces the unused successor, which is dead from then on.
 * - `reused`: any other hash (an older generation, or a predecessor whose successor was used):
 *   the session was deleted in the same operation (theft detection) and its revocation recorded
 *   in the feed. `session` is the record as it was.
 * `session` is the record after the change for rotated/recovered/grace and as it was otherwise.
 */
export type RotateResult =
  | { outcome: 'rotated' | 'recovered' | 'grace', session: SessionRecord }
  | { outcome: 'reused' | 'expired' | 'superseded', session: SessionRecord }
  | { outcome: 'missing' }

export interface TokenStore {
  /**
   * Optional: a new random session id for a user (at least 128 random bits, characters
   * `[A-Za-z0-9_-]`, at most 64 of them). A store that shards by user can encode the shard in it
   * and find a session from its id alone (the Redis store puts the user's hash slot tag first).
   * Without it the plugin uses 128 random bits.
   */
  sessionIdFor? (userId: string): string

  /**
   * Stores a new session. Ids are random; a collision may overwrite. Rejects with
   * `StoreDeadlineError`, storing nothing, once `options.deadline` has passed.
   */
  createSession (session: SessionRecord, options?: CreateOptions): Promise<CreateResult>

  /** The session if it is live at `now` (not expired, not revoked), else `null`. A snapshot. */
  getSession (sessionId: string, now: number): Promise<SessionRecord | null>

  /**
   * The refresh state machine, in one atomic step across all processes sharing the store
   * (check-and-set; never two `rotated` answers for one presented hash). See `RotateResult`.
   * Rejects with `StoreDeadlineError`, changing nothing, once `request.deadline` has passed.
   */
  rotate (request: RotateRequest): Promise<RotateResult>

  /**
   * Deletes one session, only if it belongs to `userId` when that is given, and records the
   * revocation in the feed. Resolves with the deleted record, or `null` when nothing was deleted
   * (and then nothing is recorded).
   */
  revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null>

  /** Deletes every session of a user and records each revocation; resolves with the ids deleted. */
  revokeUserSessions (userId: string, context: RevocationContext): Promise<string[]>

  /**
   * Replaces the claims of every live session of the user, adds 1 to each one's
   * `claimsVersion`, and feeds one entry per session (`revokedAt` = `context.now`, its new
   * `claimsVersion`), atomically per session. Resolves with those entries.
   */
  updateUserClaims (userId: string, claims: Record<string, unknown>, context: RevocationContext): Promise<RevocationRecord[]>

  /** The user's sessions alive at `now`, oldest first. A snapshot, not a lock. */
  listUserSessions (userId: string, now: number): Promise<SessionRecord[]>

  /**
   * The revocation feed (docs/design.md, «Revocation reaches access tokens»): sessions revoked at or after `since` by any process sharing the
   * store, oldest first, for as long as each was asked to be kept. Every process polls it, so a
   * revocation reaches all of them within the poll interval, and after a reconnect too.
   */
  revokedSince (since: number): Promise<RevocationRecord[]>

  /**
   * Optional push for the same feed: the listener hears each revocation by any process as soon
   * as the store learns of it (Redis pub/sub, PostgreSQL LISTEN/NOTIFY). Resolves with an
   * unsubscribe function. Polling `revokedSince` remains the guarantee; this makes it instant.
   */
  subscribeRevocations? (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>>

  /**
   * Optional; required when the plugin's `dpop` option is on (the plugin refuses to boot without
   * it). The replay cache of DPoP proofs (RFC 9449 §11.1; docs/design.md, «Sender-constrained
   * sessions (DPoP)», check 7). Records `key` as used until `expiresAt` (ms) and resolves `true`
   * when this is its first use, or `false` when it was already recorded and has not expired at
   * `now`. A key is expired at `now >= expiresAt`, as a session is; an expired key is used anew
   * (`true`, recorded again until the new `expiresAt`). Atomic across all processes sharing the
   * store: of concurrent calls with one key, exactly one resolves `true`. `key` is at most 64
   * characters of [A-Za-z0-9_-] (the plugin passes 22: a hash of the proof's key and jti).
   * `expiresAt > now`. Rejects like any store call when the backend is unreachable.
   *
   * A store whose backend expires keys itself may count the time from `now` to `expiresAt` on
   * its own clock from the call on (Redis `PX`): a later `now` alone then does not end a key
   * before that time has passed.
   */
  useOnce? (key: string, expiresAt: number, now: number): Promise<boolean>

  /**
   * Deletes sessions expired at `now`, feed entries past their keep time and (with `useOnce`)
   * proof ids expired at `now`, in bounded batches; resolves with how many sessions went.
   */
  sweep (now: number): Promise<number>

  /** Releases timers and connections the store opened itself. */
  close (): Promise<void>
}
