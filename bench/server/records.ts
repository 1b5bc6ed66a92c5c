// Realistic session records to fill stores with, built without the plugin's internals (the
// prefills of the *-1m scenarios, and bench/memory.ts through bench/stores.ts). Every string is
// built per session and flattened (`fresh`), as the strings of a real request are (parsed out
// of its own buffer): V8 can share none of them.
import { randomBytes } from 'node:crypto'
import type { SessionRecord } from '../../lib/index.js'

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

/** A random base64url id of `bytes` random bytes, as the plugin makes session and token ids. */
export function randomId (bytes: number): string {
  return randomBytes(bytes).toString('base64url')
}

/**
 * A session as the plugin creates it at `now` (no rotation yet): random id (or `id`), the
 * hash of a random token id as the plugin stores it, this client. `ttlMs` is its idle
 * and absolute lifetime.
 */
export function sessionRecord (n: number, user: number, now: number, ttlMs: number, id = randomId(16)): SessionRecord {
  const agent = userAgent(n)
  const ip = ipv4(n)
  return {
    id,
    userId: userIdOf(user),
    claims: claimsOf(user),
    createdAt: now,
    lastUsedAt: now,
    expiresAt: now + ttlMs,
    absoluteExpiresAt: now + ttlMs,
    // As the plugin stores it (refresh-tokens.ts): 128 bits of an HMAC, in base64url; random will do.
    tokenHash: randomId(16),
    previousTokenHash: null,
    rotatedAt: null,
    graceUses: 0,
    userAgent: agent,
    ip,
    // At login the first client is the current one: the same strings, as the plugin passes them.
    firstUserAgent: agent,
    firstIp: ip,
    authentication: { time: now },
    claimsVersion: 0
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
