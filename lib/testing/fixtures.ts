import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import type { RotateRequest, SessionRecord, TokenStore } from '../stores/types.js'

/*
 * The conformance kit's fixtures: plausible records and rotations with the kit's lifetimes, and
 * the small helpers its checks share. `sessionRecord` and `rotationRequest` are exported by
 * `fastify-token-auth/testing` for a store's own tests beside the kit.
 */

export const MINUTE = 60_000
export const IDLE = 10 * MINUTE
export const MAX_AGE = 60 * MINUTE
export const GRACE = 5000
export const KEEP = 15 * MINUTE

let sequence = 0

/**
 * A session record with plausible values (2030 dates, a random id, hashes of no real token),
 * overridable: for a store's own tests beside the kit.
 */
export function sessionRecord (overrides: Partial<SessionRecord> = {}): SessionRecord {
  const createdAt = overrides.createdAt ?? Date.UTC(2030, 0, 1)
  const absoluteExpiresAt = overrides.absoluteExpiresAt ?? createdAt + MAX_AGE
  return {
    id: randomBytes(16).toString('base64url'),
    userId: 'user-a',
    claims: { username: 'alice' },
    createdAt,
    lastUsedAt: createdAt,
    expiresAt: Math.min(createdAt + IDLE, absoluteExpiresAt),
    absoluteExpiresAt,
    tokenHash: hash(`initial-${++sequence}`),
    previousTokenHash: null,
    rotatedAt: null,
    graceUses: 0,
    userAgent: 'agent/1',
    ip: '198.51.100.1',
    firstUserAgent: 'agent/1',
    firstIp: '198.51.100.1',
    authentication: { time: createdAt },
    claimsVersion: 0,
    ...overrides
  }
}

/** A rotation of `session` with the kit's lifetimes (10 min idle, 5 s grace, limit 5), overridable. */
export function rotationRequest (session: SessionRecord, presentedHash: string, nextHash: string, now: number, overrides: Partial<RotateRequest> = {}): RotateRequest {
  return {
    sessionId: session.id,
    presentedHash,
    nextHash,
    now,
    idleTtl: IDLE,
    grace: GRACE,
    graceLimit: 5,
    userAgent: session.userAgent,
    ip: session.ip,
    keepRevocationFor: KEEP,
    deadline: Date.now() + MINUTE,
    ...overrides
  }
}

/**
 * `session` (never rotated) once `tokenHash` became current at `now` by a rotation or a
 * recovery of its first token: the record every store must then hold.
 */
export function renewed (session: SessionRecord, tokenHash: string, now: number, client: { userAgent: string, ip: string }): SessionRecord {
  return { ...session, ...client, tokenHash, previousTokenHash: session.tokenHash, rotatedAt: now, graceUses: 0, lastUsedAt: now, expiresAt: now + IDLE }
}

export type RecordFactory = (overrides?: Partial<SessionRecord>) => SessionRecord

/**
 * Makes records whose ids `store` made, as the plugin has it make them: from the store when it
 * shards by user, random otherwise.
 */
export function recordFactory (store: TokenStore): RecordFactory {
  const newSessionId = (userId: string): string => store.sessionIdFor?.(userId) ?? randomBytes(16).toString('base64url')
  return (overrides = {}) => sessionRecord({ id: newSessionId(overrides.userId ?? 'user-a'), ...overrides })
}

/**
 * A new session of `record`'s, stored and rotated once (to `hash('2')`) a minute after it
 * began: the start of every check on what its predecessor may still do.
 */
export async function rotatedSession (store: TokenStore, record: RecordFactory): Promise<{ session: SessionRecord, rotatedAt: number }> {
  const session = record()
  await store.createSession(session)
  const rotatedAt = session.createdAt + MINUTE
  await store.rotate(rotationRequest(session, session.tokenHash, hash('2'), rotatedAt))
  return { session, rotatedAt }
}

/** A hash of the plugin's shape: 128 bits, base64url (docs/design.md, «Hashed at rest»); any 128-bit digest of `text` will do. */
export function hash (text: string): string {
  return createHash('sha256').update(text).digest().toString('base64url', 0, 16)
}

export function count (values: string[]): Record<string, number> {
  const tally: Record<string, number> = {}
  for (const value of values) tally[value] = (tally[value] ?? 0) + 1
  return tally
}

export async function waitFor (condition: () => boolean, timeout = 2000): Promise<void> {
  const deadline = Date.now() + timeout
  while (!condition()) {
    if (Date.now() > deadline) throw new assert.AssertionError({ message: 'a pushed revocation did not arrive within 2 s' })
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
