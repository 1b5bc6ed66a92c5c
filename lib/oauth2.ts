import { InvalidRequestBodyError } from './errors.js'
import type { TokenSet } from './sessions.js'

/**
 * The OAuth 2.0 response format (`responseFormat: 'oauth2'`) of the login and refresh routes,
 * so OAuth client libraries can use them as a token endpoint: RFC 6749 §5.1 token responses,
 * §5.2 error responses, and form-encoded requests (§4.3.2, §6).
 */

/** RFC 6749 §5.2 `error` of each plugin error code; every one of these answers 400. */
const GRANT_ERRORS: Record<string, string> = {
  FST_TOKEN_AUTH_INVALID_CREDENTIALS: 'invalid_grant',
  FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN: 'invalid_grant',
  FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED: 'invalid_grant',
  FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED: 'invalid_grant',
  FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED: 'invalid_grant',
  FST_TOKEN_AUTH_USER_UNAVAILABLE: 'invalid_grant',
  FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN: 'invalid_request',
  FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN: 'invalid_request',
  FST_TOKEN_AUTH_UNSUPPORTED_GRANT_TYPE: 'unsupported_grant_type'
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
  const code = error.code ?? 'FST_TOKEN_AUTH_INTERNAL'
  const grantError = GRANT_ERRORS[code]
  const status = error.statusCode ?? 500
  if (grantError !== undefined) return { statusCode: 400, body: { error: grantError, error_description: error.message, code } }
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

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: { type: 'string', description: 'RFC 6749 §5.2 error code' },
    error_description: { type: 'string' },
    code: { type: 'string', description: 'The plugin\'s FST_TOKEN_AUTH_* (or Fastify FST_ERR_*) code' }
  }
}

/** Response schemas of the login and refresh routes in the OAuth 2.0 format. */
export function oauth2TokenResponses (includesRefreshToken: boolean): Record<string, object> {
  return {
    200: {
      type: 'object',
      description: 'RFC 6749 §5.1 access token response',
      required: ['access_token', 'token_type', 'expires_in'],
      properties: {
        access_token: { type: 'string' },
        token_type: { type: 'string', enum: ['Bearer'] },
        expires_in: { type: 'integer', description: 'Seconds until the access token expires' },
        ...(includesRefreshToken ? { refresh_token: { type: 'string', description: 'Only when the refresh token travels in the body' } } : {})
      }
    },
    '4xx': { ...errorSchema, description: 'RFC 6749 §5.2 error: 400 for invalid_grant, invalid_request, unsupported_grant_type' },
    '5xx': { ...errorSchema, description: 'temporarily_unavailable (503 with Retry-After) or server_error' }
  }
}
