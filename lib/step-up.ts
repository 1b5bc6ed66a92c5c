import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { InsufficientUserAuthenticationError } from './errors.js'

/**
 * Step-up authentication (docs/design.md, «Step-up authentication»): a route that needs a
 * recent authentication, or a stronger one, refuses older or weaker access tokens with the
 * RFC 9470 §3 challenge; the client re-authenticates (`POST /reauthenticate`) and retries.
 */

export interface RequireAuthOptions {
  /** Seconds since the user last authenticated (`auth_time`) beyond which the route refuses. */
  maxAge?: number
  /** The authentication context classes (`acr`) the route accepts, any one of them. */
  acr?: string[]
}

const TOO_OLD = 'a more recent authentication is required'
const TOO_WEAK = 'a different authentication level is required'

/**
 * `requireAuth(options)`: a hook that authenticates exactly like `authenticate` (use it
 * instead), then checks `auth_time` against `maxAge` and `acr` against the list.
 */
export function createRequireAuth (authenticate: onRequestAsyncHookHandler, now: () => number) {
  return function requireAuth (options: RequireAuthOptions = {}): onRequestAsyncHookHandler {
    const { maxAge, acr } = checkOptions(options)
    // RFC 9470 §3: the parameters the client must meet, stated on every refusal.
    const parameters = `${maxAge !== undefined ? `, max_age=${maxAge}` : ''}${acr !== undefined ? `, acr_values="${acr.join(' ')}"` : ''}`
    return async function requireAuthentication (this: unknown, request: FastifyRequest, reply: FastifyReply): Promise<void> {
      await authenticate.call(this as never, request, reply)
      const { user } = request
      let problem: string | undefined
      if (acr !== undefined && (user.acr === undefined || !acr.includes(user.acr))) problem = TOO_WEAK
      // A token without `auth_time` states no authentication time: it is not recent enough.
      else if (maxAge !== undefined && (user.auth_time === undefined || Math.floor(now() / 1000) - user.auth_time > maxAge)) problem = TOO_OLD
      if (problem === undefined) return
      reply.header('www-authenticate', `Bearer error="insufficient_user_authentication", error_description="${problem}"${parameters}`)
      throw new InsufficientUserAuthenticationError(problem)
    }
  }
}

/** A configuration error at route definition, not a client error. */
function checkOptions (options: RequireAuthOptions): RequireAuthOptions {
  const { maxAge, acr } = options
  if (maxAge !== undefined && (!Number.isSafeInteger(maxAge) || maxAge < 0)) {
    throw new TypeError('fastify-token-auth: requireAuth `maxAge` must be a whole number of seconds')
  }
  // The values go into a quoted header parameter: no quote, backslash or space inside one.
  if (acr !== undefined && (!Array.isArray(acr) || acr.length === 0 || !acr.every((value) => typeof value === 'string' && /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(value)))) {
    throw new TypeError('fastify-token-auth: requireAuth `acr` must be a non-empty array of acr values (printable, no space, quote or backslash)')
  }
  return { ...(maxAge !== undefined ? { maxAge } : {}), ...(acr !== undefined ? { acr: [...acr] } : {}) }
}
