import createError from '@fastify/error'

// Every error the plugin can raise, defined once. Codes are stable API: clients and apps switch on them.
// Errors without a status are configuration errors: they fail `ready()` and never reach a client.

export const InvalidOptionError = createError<[string, string]>(
  'FST_TOKEN_AUTH_INVALID_OPTION', 'Invalid option "%s": %s')

export const MissingTokenError = createError(
  'FST_TOKEN_AUTH_MISSING_TOKEN', 'Missing access token: send "Authorization: Bearer <token>"', 401)
export const MalformedAuthorizationError = createError(
  'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION', 'Malformed Authorization header', 400)
export const InvalidTokenError = createError(
  'FST_TOKEN_AUTH_INVALID_TOKEN', 'Invalid access token', 401)
export const TokenExpiredError = createError(
  'FST_TOKEN_AUTH_TOKEN_EXPIRED', 'Access token expired', 401)
export const SessionRevokedError = createError(
  'FST_TOKEN_AUTH_SESSION_REVOKED', 'The session of this token has ended', 401)

export const MissingRefreshTokenError = createError(
  'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN', 'Missing refresh token', 401)
export const AmbiguousRefreshTokenError = createError(
  'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN', 'Send exactly one refresh token: one cookie, or the body field, not both', 400)
export const InvalidRefreshTokenError = createError(
  'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN', 'Invalid refresh token', 401)
export const RefreshTokenExpiredError = createError(
  'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED', 'Refresh token expired', 401)
export const RefreshTokenReusedError = createError(
  'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED', 'Refresh token already used: the session has been ended', 401)
export const GraceExhaustedError = createError(
  'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED', 'Refresh token already rotated: use the newest one', 401)

export const UnsupportedGrantTypeError = createError(
  'FST_TOKEN_AUTH_UNSUPPORTED_GRANT_TYPE', 'Unsupported grant_type on this endpoint', 400)
export const InvalidRequestBodyError = createError<'FST_TOKEN_AUTH_INVALID_REQUEST_BODY', 400, [string]>(
  'FST_TOKEN_AUTH_INVALID_REQUEST_BODY', 'Invalid request body: %s', 400)

export const InvalidCredentialsError = createError(
  'FST_TOKEN_AUTH_INVALID_CREDENTIALS', 'Invalid username or password', 401)
export const UserUnavailableError = createError(
  'FST_TOKEN_AUTH_USER_UNAVAILABLE', 'The user of this session can no longer sign in', 401)
export const LoginThrottledError = createError(
  'FST_TOKEN_AUTH_LOGIN_THROTTLED', 'Too many login attempts, retry in %s seconds', 429)
export const CrossSiteRequestError = createError(
  'FST_TOKEN_AUTH_CROSS_SITE_REQUEST', 'Cross-site request refused', 403)
export const SessionNotFoundError = createError(
  'FST_TOKEN_AUTH_SESSION_NOT_FOUND', 'Session not found', 404)
export const InvalidClientError = createError(
  'FST_TOKEN_AUTH_INVALID_CLIENT', 'Client authentication failed', 401)
export const IntrospectionThrottledError = createError(
  'FST_TOKEN_AUTH_INTROSPECTION_THROTTLED', 'Too many introspection requests, retry in %s seconds', 429)
export const InsufficientUserAuthenticationError = createError<'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION', 401, [string]>(
  'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION', 'Authentication required again: %s', 401)
export const ClaimsChangedError = createError(
  'FST_TOKEN_AUTH_CLAIMS_CHANGED', 'The claims of this token have changed: refresh it', 401)
export const ReauthenticationUserMismatchError = createError(
  'FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH', 'These credentials are not those of the session\'s user', 403)
export const SessionLimitReachedError = createError(
  'FST_TOKEN_AUTH_SESSION_LIMIT_REACHED', 'Too many sessions: end one before signing in again', 403)
export const RefreshDeniedError = createError(
  'FST_TOKEN_AUTH_REFRESH_DENIED', 'Refresh refused: the session has been ended', 401)
export const RefreshCheckUnavailableError = createError(
  'FST_TOKEN_AUTH_REFRESH_CHECK_UNAVAILABLE', 'The refresh check is unavailable, retry later', 503)
export const InvalidDpopProofError = createError<'FST_TOKEN_AUTH_INVALID_DPOP_PROOF', 400, [string]>(
  'FST_TOKEN_AUTH_INVALID_DPOP_PROOF', 'Invalid DPoP proof: %s', 400)
export const UseDpopNonceError = createError(
  'FST_TOKEN_AUTH_USE_DPOP_NONCE', 'A DPoP nonce is required: sign the proof again with the one in DPoP-Nonce', 400)
export const DpopRequiredError = createError(
  'FST_TOKEN_AUTH_DPOP_REQUIRED', 'A DPoP proof is required: sign in again with a DPoP proof', 400)
export const InvalidDbscProofError = createError<'FST_TOKEN_AUTH_INVALID_DBSC_PROOF', 400, [string]>(
  'FST_TOKEN_AUTH_INVALID_DBSC_PROOF', 'Invalid DBSC proof: %s', 400)
export const DbscChallengeError = createError(
  'FST_TOKEN_AUTH_DBSC_CHALLENGE', 'Sign the challenge in Secure-Session-Challenge', 403)
export const DeviceCookieRequiredError = createError(
  'FST_TOKEN_AUTH_DEVICE_COOKIE_REQUIRED', 'This session is bound to a device: its device cookie is missing or expired', 401)
export const DeviceRefreshSkippedError = createError(
  'FST_TOKEN_AUTH_DEVICE_REFRESH_SKIPPED', 'The browser could not renew this session\'s device cookie: retry later', 503)
export const AlreadyBoundError = createError(
  'FST_TOKEN_AUTH_SESSION_ALREADY_BOUND', 'This session is bound to a key already', 400)
export const StoreUnavailableError = createError(
  'FST_TOKEN_AUTH_STORE_UNAVAILABLE', 'Token store unavailable, retry later', 503)

/** Every code a client can receive from this plugin, for exhaustive `switch`es. */
export type TokenAuthErrorCode =
  | 'FST_TOKEN_AUTH_MISSING_TOKEN'
  | 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION'
  | 'FST_TOKEN_AUTH_INVALID_TOKEN'
  | 'FST_TOKEN_AUTH_TOKEN_EXPIRED'
  | 'FST_TOKEN_AUTH_SESSION_REVOKED'
  | 'FST_TOKEN_AUTH_MISSING_REFRESH_TOKEN'
  | 'FST_TOKEN_AUTH_AMBIGUOUS_REFRESH_TOKEN'
  | 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'
  | 'FST_TOKEN_AUTH_REFRESH_TOKEN_EXPIRED'
  | 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED'
  | 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED'
  | 'FST_TOKEN_AUTH_UNSUPPORTED_GRANT_TYPE'
  | 'FST_TOKEN_AUTH_INVALID_REQUEST_BODY'
  | 'FST_TOKEN_AUTH_INVALID_CREDENTIALS'
  | 'FST_TOKEN_AUTH_USER_UNAVAILABLE'
  | 'FST_TOKEN_AUTH_LOGIN_THROTTLED'
  | 'FST_TOKEN_AUTH_CROSS_SITE_REQUEST'
  | 'FST_TOKEN_AUTH_SESSION_NOT_FOUND'
  | 'FST_TOKEN_AUTH_INVALID_CLIENT'
  | 'FST_TOKEN_AUTH_INTROSPECTION_THROTTLED'
  | 'FST_TOKEN_AUTH_INSUFFICIENT_USER_AUTHENTICATION'
  | 'FST_TOKEN_AUTH_CLAIMS_CHANGED'
  | 'FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH'
  | 'FST_TOKEN_AUTH_SESSION_LIMIT_REACHED'
  | 'FST_TOKEN_AUTH_REFRESH_DENIED'
  | 'FST_TOKEN_AUTH_REFRESH_CHECK_UNAVAILABLE'
  | 'FST_TOKEN_AUTH_INVALID_DPOP_PROOF'
  | 'FST_TOKEN_AUTH_USE_DPOP_NONCE'
  | 'FST_TOKEN_AUTH_DPOP_REQUIRED'
  | 'FST_TOKEN_AUTH_INVALID_DBSC_PROOF'
  | 'FST_TOKEN_AUTH_DBSC_CHALLENGE'
  | 'FST_TOKEN_AUTH_DEVICE_COOKIE_REQUIRED'
  | 'FST_TOKEN_AUTH_DEVICE_REFRESH_SKIPPED'
  | 'FST_TOKEN_AUTH_SESSION_ALREADY_BOUND'
  | 'FST_TOKEN_AUTH_STORE_UNAVAILABLE'
  /** The OAuth 2.0 format's `code` for a 500 that carried none (an app callback threw, say). */
  | 'FST_TOKEN_AUTH_INTERNAL'
