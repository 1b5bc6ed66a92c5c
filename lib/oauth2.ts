import { InvalidRequestBodyError, type TokenAuthErrorCode } from './errors.js'
import type { TokenSet } from './sessions.js'

/**
 * The OAuth 2.0 response format (`responseFormat: 'oauth2'`) of the login and refresh routes,
 * so OAuth client libraries can use them as a token endpoint: RFC 6749 §5.1 token responses,
 * §5.2 error responses, and form-encoded requests (§4.3.2, §6). Their schemas are with the
 * others, in lib/routes/schemas.ts.
 */

/** RFC 6749 §5.2 `error` of each plugin error code; every one of these answers 400. */
const GRANT_ERRORS: Record<string, string> = {
  FST_TOKEN_AUTH_INVALID_CREDENTIALS: 'invalid_grant',
  FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN: 'invalid_grant',
  FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED: 'invalid_grant',
  FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED: 'invalid_grant',
  FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED: 'invalid_grant',
  FST_TOKEN_AUTH_USER_UNAVAILABLE: 'invalid_grant',
  // The refresh token no longer grants anything: its session was ended by the onRefresh hook.
  FST_TOKEN_AUTH_REFRESH_DENIED: 'invalid_grant',
  // The resource owner's credentials do not match the grant (the session's user).
  FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH: 'invalid_grant',
  // A DBSC-bound session's refresh token without its device cookie grants nothing now.
  FST_TOKEN_AUTH_DEVICE_COOKIE_REQUIRED: 'invalid_grant',
  FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN: 'invalid_request',
  FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN: 'invalid_request',
  FST_TOKEN_AUTH_UNSUPPORTED_GRANT_TYPE: 'unsupported_grant_type',
  // RFC 9449 §5 and §8: the token endpoint's DPoP errors, 400 like the others.
  FST_TOKEN_AUTH_INVALID_DPOP_PROOF: 'invalid_dpop_proof',
  FST_TOKEN_AUTH_DPOP_REQUIRED: 'invalid_dpop_proof',
  FST_TOKEN_AUTH_USE_DPOP_NONCE: 'use_dpop_nonce'
}

/**
 * Errors that keep their status, with the RFC error that names them: RFC 9470 §3 and RFC 6750
 * §3.1 for access tokens (an app may format its own routes' errors with this function), and
 * `access_denied` (RFC 6749 §4.1.2.1) for a login the session cap refuses, which no credential
 * or grant fixes.
 */
const STATUS_ERRORS: Record<string, string> = {
  FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION: 'insufficient_user_authentication',
  FST_TOKEN_AUTH_CLAIMS_CHANGED: 'invalid_token',
  FST_TOKEN_AUTH_SESSION_LIMIT_REACHED: 'access_denied'
}

export const FORM_CONTENT_TYPE = /^application\/x-www-form-urlencoded(; ?charset=utf-8)?$/i

export interface OAuth2ErrorResponse {
  statusCode: number
  body: { error: string, error_description: string, code: string }
}

/**
 * An error as RFC 6749 §5.2 shapes it. Grant errors become 400 as the RFC requires; other
 * statuses (403 cross-site, 413, 415, 429, 503) keep theirs, since clients act on them (a 503
 * is retried). The plugin's `code` stays alongside for apps that switch on it.
 */
export function toOAuth2Error (error: { statusCode?: number, code?: string, message: string }): OAuth2ErrorResponse {
  const code = error.code ?? ('FST_TOKEN_AUTH_INTERNAL' satisfies TokenAuthErrorCode)
  const grantError = GRANT_ERRORS[code]
  const status = error.statusCode ?? 500
  if (grantError !== undefined) return { statusCode: 400, body: { error: grantError, error_description: error.message, code } }
  // §5.2: a client that failed HTTP Basic authentication gets 401 `invalid_client`.
  if (code === 'FST_TOKEN_AUTH_INVALID_CLIENT') return { statusCode: 401, body: { error: 'invalid_client', error_description: error.message, code } }
  const statusError = STATUS_ERRORS[code]
  if (statusError !== undefined) return { statusCode: status, body: { error: statusError, error_description: error.message, code } }
  const description = status >= 500 && status !== 503 ? 'Internal server error' : error.message
  const kind = status === 503 ? 'temporarily_unavailable' : status >= 500 ? 'server_error' : 'invalid_request'
  return { statusCode: status, body: { error: kind, error_description: description, code } }
}

/** RFC 6749 §5.1: `refresh_token` only when it travels in the body. */
export function oauth2TokenBody (tokens: TokenSet, includeRefreshToken: boolean): Record<string, unknown> {
  return {
    access_token: tokens.accessToken,
    token_type: tokens.tokenType,
    expires_in: tokens.expiresIn,
    ...(includeRefreshToken ? { refresh_token: tokens.refreshToken } : {})
  }
}

/** A form-encoded body; a parameter sent twice is refused (RFC 6749 §3.2). */
export function parseForm (body: string): Record<string, string> {
  const result: Record<string, string> = Object.create(null)
  for (const [name, value] of new URLSearchParams(body)) {
    if (name in result) throw new InvalidRequestBodyError(`parameter "${name.slice(0, 32)}" sent more than once`)
    result[name] = value
  }
  return result
}
