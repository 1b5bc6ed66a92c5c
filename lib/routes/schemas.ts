import type { FastifySchema } from 'fastify'
import type { ResolvedOptions } from '../options.js'

/**
 * The routes' JSON schemas, which also make their OpenAPI document (@fastify/swagger reads
 * them). Where a schema depends on an option, a function of that option builds it.
 */

type ResponseFormat = ResolvedOptions['responseFormat']
type Transport = ResolvedOptions['refreshTokenTransport']

const errorSchema = {
  type: 'object',
  // The app's error handler may add fields (a request id, say): they reach the client.
  additionalProperties: true,
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' }
  }
} as const
export const errorResponses = {
  '4xx': { ...errorSchema, description: 'Refused; `code` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why' },
  '5xx': { ...errorSchema, description: 'Store unavailable (503 with Retry-After) or a server error' }
}

/** RFC 6749 §5.2 error responses, the shape login and refresh answer in the OAuth 2.0 format. */
const oauth2ErrorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: { type: 'string', description: 'RFC 6749 §5.2 error code' },
    error_description: { type: 'string' },
    code: { type: 'string', description: 'The plugin\'s FST_TOKEN_AUTH_* (or Fastify FST_ERR_*) code' }
  }
}
const oauth2ErrorResponses = {
  '4xx': { ...oauth2ErrorSchema, description: 'RFC 6749 §5.2 error: 400 for invalid_grant, invalid_request, unsupported_grant_type' },
  '5xx': { ...oauth2ErrorSchema, description: 'temporarily_unavailable (503 with Retry-After) or server_error' }
}

// OpenAPI security requirements, alternatives in an array. The app declares the schemes they
// name (bearerAuth, refreshCookie) in @fastify/swagger's components.securitySchemes.
export const bearerSecurity = [{ bearerAuth: [] }]

/**
 * The OpenAPI security schemes the plugin's routes name, for @fastify/swagger's
 * `openapi.components.securitySchemes` (swagger fails to build the document without them).
 * Pass the refresh cookie's full name when you changed it (`__Host-` prefix included).
 */
export function openApiSecuritySchemes (cookieName = 'refresh_token') {
  return {
    bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Access token (typ at+jwt)' },
    refreshCookie: { type: 'apiKey', in: 'cookie', name: cookieName, description: 'HttpOnly refresh-token cookie' },
    // Named by the introspection endpoint only, which exists when `introspection` is configured.
    introspectionClient: { type: 'http', scheme: 'basic', description: 'A resource server of `introspection.clients` (RFC 7662 §2.1)' }
  } as const
}

/** A route schema with the OpenAPI fields @fastify/swagger reads. */
export function documented (schema: FastifySchema & { summary: string, security?: object[] }): FastifySchema {
  return { tags: ['token-auth'], ...schema } as FastifySchema
}

/** The body field of the refresh token: RFC 6749's name in the OAuth 2.0 format. */
export function refreshTokenField (format: ResponseFormat): string {
  return format === 'oauth2' ? 'refresh_token' : 'refreshToken'
}

/** The token response's field names; the two formats differ in nothing else. */
const TOKEN_FIELDS = {
  default: { access: 'accessToken', type: 'tokenType', expires: 'expiresIn', description: 'A new access token; the refresh token is set in the cookie (or returned in the body)' },
  oauth2: { access: 'access_token', type: 'token_type', expires: 'expires_in', description: 'RFC 6749 §5.1 access token response' }
}

/**
 * Responses of login and refresh; `refreshToken` (or `refresh_token`) only when it may travel in
 * the body, and the token type `DPoP` only when DPoP is on.
 */
export function tokenResponses (format: ResponseFormat, includesRefreshToken: boolean, dpop: boolean): Record<string, object> {
  const fields = TOKEN_FIELDS[format]
  const refreshToken = { type: 'string', description: 'Only when the refresh token travels in the body' }
  return {
    200: {
      type: 'object',
      description: fields.description,
      required: [fields.access, fields.type, fields.expires],
      properties: {
        [fields.access]: { type: 'string' },
        [fields.type]: { type: 'string', enum: dpop ? ['Bearer', 'DPoP'] : ['Bearer'] },
        [fields.expires]: { type: 'integer', description: 'Seconds until the access token expires' },
        ...(includesRefreshToken ? { [refreshTokenField(format)]: refreshToken } : {})
      }
    },
    ...formatErrorResponses(format)
  }
}

/** Errors in the format's shape: RFC 6749 §5.2 for the OAuth 2.0 token, and revocation, endpoints. */
function formatErrorResponses (format: ResponseFormat): Record<string, object> {
  return format === 'oauth2' ? oauth2ErrorResponses : errorResponses
}

/** Fields OAuth 2.0 clients send besides the grant's own; accepted and ignored but for grant_type. */
const oauth2BodyProperties = {
  grant_type: { type: 'string', maxLength: 64 },
  client_id: { type: 'string', maxLength: 256 },
  scope: { type: 'string', maxLength: 1024 }
}

/**
 * RFC 7009 §2.1 and RFC 7662 §2.1: the token, and a hint of its type that the server may
 * ignore (we do).
 */
export const tokenParameterBody = {
  type: 'object',
  required: ['token'],
  additionalProperties: false,
  properties: {
    token: { type: 'string', minLength: 1, maxLength: 8192 },
    token_type_hint: { type: 'string', maxLength: 64, description: '`refresh_token` or `access_token`; either kind is found without it' },
    // Public clients identify themselves this way (RFC 6749 §2.3.1); accepted and ignored.
    client_id: oauth2BodyProperties.client_id
  }
}

/** RFC 7662 §2.2: `active`, and the token's claims when it is. */
export function introspectionResponses (format: ResponseFormat): Record<string, object> {
  return {
    200: {
      type: 'object',
      description: '`{ active: false }` for anything not live; otherwise `active: true`, `token_type` and the token\'s claims',
      required: ['active'],
      additionalProperties: true,
      properties: { active: { type: 'boolean' }, token_type: { type: 'string' }, sub: { type: 'string' }, sid: { type: 'string' }, exp: { type: 'integer' }, iat: { type: 'integer' } }
    },
    ...formatErrorResponses(format)
  }
}

/** RFC 7009 §2.2: 200 with an empty body, whether or not the token was live. */
export function revokeResponses (format: ResponseFormat): Record<string, object> {
  return { 200: { type: 'null', description: 'Revoked, or nothing to revoke' }, ...formatErrorResponses(format) }
}

/** The login body: credentials, the OAuth 2.0 fields in that format, and where the refresh token goes when the client may choose. */
export function loginBodySchema (format: ResponseFormat, transport: Transport): object {
  const properties: Record<string, unknown> = {
    username: { type: 'string', minLength: 1, maxLength: 256 },
    password: { type: 'string', minLength: 1, maxLength: 1024 }
  }
  if (format === 'oauth2') Object.assign(properties, oauth2BodyProperties)
  if (transport === 'both') {
    properties.refreshTokenTransport = { type: 'string', enum: ['cookie', 'body'], description: 'Where the refresh token goes (default cookie)' }
  } else if (transport === 'body') {
    // A client that asks for what the server does anyway (the client helper in Node) is accepted.
    properties.refreshTokenTransport = { type: 'string', enum: ['body'], description: 'Where the refresh token goes (always body here)' }
  }
  return { type: 'object', required: ['username', 'password'], additionalProperties: false, properties }
}

/**
 * The re-authentication body: the login's, plus the refresh token of the session when it may
 * travel in the body (the cookie carries it otherwise).
 */
export function reauthenticateBodySchema (format: ResponseFormat, transport: Transport): object {
  const login = loginBodySchema(format, transport) as { properties: Record<string, unknown> }
  if (transport === 'cookie') return login
  return { ...login, properties: { ...login.properties, [refreshTokenField(format)]: { type: 'string', minLength: 1, maxLength: 8192 } } }
}

/** The re-authentication's responses: the login's, and the refusals it adds. */
export function reauthenticateResponses (format: ResponseFormat, includesRefreshToken: boolean, dpop: boolean): Record<string, object> {
  const schema = format === 'oauth2' ? oauth2ErrorSchema : errorSchema
  return {
    ...tokenResponses(format, includesRefreshToken, dpop),
    401: { ...schema, description: 'Wrong credentials (FST_TOKEN_AUTH_INVALID_CREDENTIALS), or a refresh token refused as by the refresh route' },
    403: { ...schema, description: 'The credentials are another user\'s (FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH), or a cross-site request' }
  }
}

/** Login's refusal over the session cap, documented when `maxSessionsPerUser` can refuse. */
export function sessionLimitResponse (options: Pick<ResolvedOptions, 'responseFormat' | 'maxSessionsPerUser' | 'sessionLimitPolicy'>): Record<string, object> {
  if (options.maxSessionsPerUser === undefined || options.sessionLimitPolicy !== 'refuse') return {}
  const schema = options.responseFormat === 'oauth2' ? oauth2ErrorSchema : errorSchema
  return { 403: { ...schema, description: 'The user already has maxSessionsPerUser live sessions (FST_TOKEN_AUTH_SESSION_LIMIT_REACHED), or a cross-site request' } }
}

/** A body carrying the refresh token (refresh, logout); `withGrantFields` admits the OAuth 2.0 fields too. */
export function refreshBodySchema (format: ResponseFormat, withGrantFields: boolean): object {
  return {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: {
      [refreshTokenField(format)]: { type: 'string', minLength: 1, maxLength: 8192 },
      ...(withGrantFields ? oauth2BodyProperties : {})
    }
  }
}

type Security = Array<Record<string, string[]>>

// `{}` is the alternative of a refresh token in the body, which no security scheme describes.
export function refreshSecurity (transport: Transport): Security {
  return [...(transport !== 'body' ? [{ refreshCookie: [] }] : []), ...(transport !== 'cookie' ? [{}] : [])]
}

export function logoutSecurity (transport: Transport): Security {
  return [...(transport !== 'body' ? [{ refreshCookie: [] }] : []), ...bearerSecurity, ...(transport !== 'cookie' ? [{}] : [])]
}

export const logoutQuerystring = {
  type: 'object',
  additionalProperties: false,
  properties: { all: { type: 'string', enum: ['true', 'false'] } }
}

/** W3C DBSC, «JSON Session Instruction Format», as the plugin fills it. */
const dbscInstructions = {
  type: 'object',
  required: ['session_identifier', 'refresh_url', 'scope', 'credentials'],
  properties: {
    session_identifier: { type: 'string' },
    refresh_url: { type: 'string' },
    scope: { type: 'object', properties: { include_site: { type: 'boolean' } } },
    credentials: {
      type: 'array',
      items: { type: 'object', properties: { type: { type: 'string' }, name: { type: 'string' }, attributes: { type: 'string' } } }
    }
  }
}
export const dbscRegistrationResponses = { 200: { ...dbscInstructions, description: 'Bound: the device cookie and the refresh cookie are set' }, ...errorResponses }
export const dbscRefreshResponses = { 200: { ...dbscInstructions, description: 'The device cookie is renewed' }, ...errorResponses }

/** A 204 and the usual errors. */
export function noContentResponses (description: string): Record<string, object> {
  return { 204: { type: 'null', description }, ...errorResponses }
}

const sessionList = {
  type: 'object',
  description: "The user's live sessions, oldest first",
  required: ['sessions'],
  properties: {
    sessions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'createdAt', 'lastUsedAt', 'expiresAt', 'userAgent', 'ip', 'current'],
        properties: {
          id: { type: 'string' },
          createdAt: { type: 'string', format: 'date-time' },
          lastUsedAt: { type: 'string', format: 'date-time' },
          expiresAt: { type: 'string', format: 'date-time' },
          userAgent: { type: ['string', 'null'] },
          ip: { type: ['string', 'null'] },
          current: { type: 'boolean', description: 'The session of the access token used for this request' }
        }
      }
    }
  }
}
export const sessionListResponses = { 200: sessionList, ...errorResponses }

export const sessionParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' } }
}

const jwk = { type: 'object', required: ['kty', 'kid', 'alg', 'use'], additionalProperties: { type: 'string' } }
export const jwksResponses = { 200: { type: 'object', required: ['keys'], properties: { keys: { type: 'array', items: jwk } } } }
