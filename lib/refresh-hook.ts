import type { FastifyRequest } from 'fastify'
import { RefreshCheckUnavailableError } from './errors.js'
import type { ClientInfo } from './events.js'
import type { Authentication, SessionRecord } from './stores/types.js'

/**
 * The `onRefresh` risk hook (docs/design.md, «The refresh risk hook»): the app sees the session
 * and the client before a rotation and allows, denies or shortens it. It fails closed: a hook
 * that throws, is late, or answers anything else stops the refresh with a 503 and rotates nothing.
 */

/** The session as the hook sees it: no token material, no claims. */
export interface RefreshHookSession {
  id: string
  userId: string
  createdAt: number
  lastUsedAt: number
  expiresAt: number
  absoluteExpiresAt: number
  /** The client of the latest login or refresh. */
  ip: string | null
  userAgent: string | null
  /** The client that started the session. */
  firstIp: string | null
  firstUserAgent: string | null
  authentication: Authentication
}

export interface RefreshHookContext {
  session: RefreshHookSession
  /** The client asking for the refresh now. */
  client: ClientInfo
  /** The refresh request, or `undefined` when `rotateRefreshToken` was called outside a route. */
  request: FastifyRequest | undefined
}

/**
 * What the hook decides: `undefined` or `allow` lets the refresh go on; `deny` ends the session
 * (401); `shorten` ends the session at most `expiresIn` seconds from now.
 */
export type RefreshDecision =
  | undefined
  | { action: 'allow' }
  | { action: 'deny', reason: string }
  | { action: 'shorten', expiresIn: number }

export type RefreshHook = (context: RefreshHookContext) => RefreshDecision | Promise<RefreshDecision>

/** A decision the hook answered, checked: `allow` stands for `undefined` too. */
export type CheckedDecision = Exclude<RefreshDecision, undefined>

const ALLOW: CheckedDecision = { action: 'allow' }

/** The hook's view of a record. */
export function hookSession (session: SessionRecord): RefreshHookSession {
  const { id, userId, createdAt, lastUsedAt, expiresAt, absoluteExpiresAt, ip, userAgent, firstIp, firstUserAgent, authentication } = session
  return { id, userId, createdAt, lastUsedAt, expiresAt, absoluteExpiresAt, ip, userAgent, firstIp, firstUserAgent, authentication }
}

/** Runs the hook within `timeout` ms; anything but a valid decision in time is a `RefreshCheckUnavailableError`. */
export async function runRefreshHook (hook: RefreshHook, timeout: number, context: RefreshHookContext): Promise<CheckedDecision> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`onRefresh did not answer within ${timeout} ms`)) }, timeout)
  })
  let decision: unknown
  try {
    decision = await Promise.race([Promise.resolve().then(() => hook(context)), late])
  } catch (cause) {
    throw new RefreshCheckUnavailableError({ cause })
  } finally {
    clearTimeout(timer)
  }
  const checked = checkDecision(decision)
  if (checked === null) throw new RefreshCheckUnavailableError({ cause: new TypeError('onRefresh answered something other than a decision') })
  return checked
}

function checkDecision (decision: unknown): CheckedDecision | null {
  if (decision === undefined) return ALLOW
  if (decision === null || typeof decision !== 'object') return null
  const { action, reason, expiresIn } = decision as Record<string, unknown>
  if (action === 'allow') return ALLOW
  if (action === 'deny' && typeof reason === 'string') return { action, reason }
  if (action === 'shorten' && typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0) return { action, expiresIn }
  return null
}
