import type { ClientInfo } from './events.js'
import type { Authentication, SessionLimit, SessionRecord } from './stores/types.js'

/**
 * The pure parts of the session policy (docs/design.md, «Session policy»): what a login records
 * of how the user authenticated, the cap it asks the store to enforce, and whether its client
 * is one the user's other sessions know. The session service makes the store calls.
 */

/** How a user authenticated, as `verifyCredentials` (or `issueSession`) names it. */
export interface AuthenticationClaims {
  acr?: string | undefined
  amr?: string[] | undefined
}

/**
 * The `authentication` a login or re-authentication records: now, and the `acr`/`amr` when
 * named. An absent one stays absent, never `undefined`, so stores compare records as given.
 */
export function authenticationAt (time: number, user: AuthenticationClaims): Authentication {
  if (user.acr !== undefined && typeof user.acr !== 'string') {
    throw new TypeError('fastify-token-auth: a user\'s `acr` must be a string')
  }
  if (user.amr !== undefined && (!Array.isArray(user.amr) || !user.amr.every((method) => typeof method === 'string'))) {
    throw new TypeError('fastify-token-auth: a user\'s `amr` must be an array of strings')
  }
  return {
    time,
    ...(user.acr !== undefined ? { acr: user.acr } : {}),
    ...(user.amr !== undefined ? { amr: [...user.amr] } : {})
  }
}

/** The options of the cap (`maxSessionsPerUser`, `sessionLimitPolicy`). */
export interface SessionLimitOptions {
  maxSessionsPerUser?: number | undefined
  sessionLimitPolicy?: SessionLimit['policy'] | undefined
}

/** The cap `createSession` enforces, or `undefined` without `maxSessionsPerUser` («Session caps»). */
export function sessionLimitOf (options: SessionLimitOptions, keepRevocationFor: number): SessionLimit | undefined {
  if (options.maxSessionsPerUser === undefined) return undefined
  return { max: options.maxSessionsPerUser, policy: options.sessionLimitPolicy ?? 'end-least-recent', keepRevocationFor }
}

/**
 * Whether one of the user's live sessions has this client's User-Agent as its latest or first
 * one. A client that sends none is never known: there is nothing to recognise it by.
 */
export function isKnownUserAgent (sessions: SessionRecord[], client: ClientInfo): boolean {
  const { userAgent } = client
  return userAgent !== null && sessions.some((session) => session.userAgent === userAgent || session.firstUserAgent === userAgent)
}
