import type { FastifyReply, FastifyRequest } from 'fastify'
import { AmbiguousRefreshTokenError } from '../errors.js'
import type { ClientInfo } from '../events.js'
import { oauth2TokenBody } from '../oauth2.js'
import type { ResolvedOptions } from '../options.js'
import type { TokenSet } from '../sessions.js'
import { refreshTokenField } from './schemas.js'

const MAX_USER_AGENT_LENGTH = 256

/** A refresh token as a request presented it. */
export interface PresentedRefreshToken {
  token: string
  /** Whether it came in the body; otherwise in the cookie, where its successor goes too. */
  inBody: boolean
}

/** How refresh tokens travel (`refreshTokenTransport`, `cookie`): read from requests, set on replies. */
export interface TokenTransport {
  readonly usesCookie: boolean
  readonly usesBody: boolean
  /** The request's refresh token, if any; throws when it is ambiguous. */
  presented (request: FastifyRequest): PresentedRefreshToken | undefined
  /** Sets the refresh cookie unless `inBody`, and returns the response body in the configured format. */
  send (reply: FastifyReply, tokens: TokenSet, inBody: boolean): object
  clearCookie (reply: FastifyReply): void
}

type TransportOptions = Pick<ResolvedOptions, 'refreshTokenTransport' | 'cookie' | 'responseFormat'>

export function createTokenTransport (options: TransportOptions, now: () => number): TokenTransport {
  const { cookie } = options
  const usesCookie = options.refreshTokenTransport !== 'body'
  const usesBody = options.refreshTokenTransport !== 'cookie'
  const field = refreshTokenField(options.responseFormat)
  const attributes = {
    httpOnly: true,
    secure: cookie.secure,
    sameSite: cookie.sameSite,
    path: cookie.path,
    ...(cookie.domain !== undefined ? { domain: cookie.domain } : {})
  } as const

  return {
    usesCookie,
    usesBody,
    /**
     * Both a cookie and a body token at once are refused, and so is the cookie sent twice: a
     * sibling subdomain can plant a second cookie of the same name (cookie tossing), and the
     * parser would silently keep the first.
     */
    presented (request) {
      if (usesCookie && hasDuplicateCookie(request.headers.cookie, cookie.name)) throw new AmbiguousRefreshTokenError()
      const fromCookie = usesCookie ? request.cookies[cookie.name] : undefined
      const fromBody = usesBody ? (request.body as Record<string, string> | undefined)?.[field] : undefined
      if (fromCookie !== undefined && fromCookie !== '' && fromBody !== undefined) throw new AmbiguousRefreshTokenError()
      if (fromBody !== undefined) return { token: fromBody, inBody: true }
      if (fromCookie !== undefined && fromCookie !== '') return { token: fromCookie, inBody: false }
      return undefined
    },
    send (reply, tokens, inBody) {
      if (!inBody) {
        const maxAge = Math.max(0, Math.floor((tokens.refreshTokenExpiresAt - now()) / 1000))
        reply.setCookie(cookie.name, tokens.refreshToken, { ...attributes, maxAge })
      }
      if (options.responseFormat === 'oauth2') return oauth2TokenBody(tokens, inBody)
      return {
        accessToken: tokens.accessToken,
        tokenType: tokens.tokenType,
        expiresIn: tokens.expiresIn,
        ...(inBody ? { refreshToken: tokens.refreshToken } : {})
      }
    },
    clearCookie (reply) {
      reply.clearCookie(cookie.name, { ...attributes })
    }
  }
}

/** Whether a Cookie header carries the cookie `name` more than once. */
function hasDuplicateCookie (header: string | undefined, name: string): boolean {
  // Most headers hold the name once at most: no split, no allocation.
  if (header === undefined || header.indexOf(name) === header.lastIndexOf(name)) return false
  let count = 0
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=')
    if (eq !== -1 && pair.slice(0, eq).trim() === name) count++
  }
  return count > 1
}

/** Where a request came from, as sessions record it; the User-Agent is cut to a sane length. */
export function clientInfo (request: FastifyRequest): ClientInfo {
  const userAgent = request.headers['user-agent']
  return {
    ip: request.ip,
    userAgent: typeof userAgent === 'string' ? userAgent.slice(0, MAX_USER_AGENT_LENGTH) : null
  }
}
