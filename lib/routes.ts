import AjvCompiler from '@fastify/ajv-compiler'
import fastifyCookie from '@fastify/cookie'
import fastifyRateLimit from '@fastify/rate-limit'
import Fastify, {
  errorCodes, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchema, type onRequestAsyncHookHandler,
  type preHandlerAsyncHookHandler
} from 'fastify'
import { createCrossSiteCheck } from './csrf.js'
import {
  AmbiguousRefreshTokenError, GraceExhaustedError, InvalidCredentialsError, LoginThrottledError,
  MissingRefreshTokenError, SessionNotFoundError, UnsupportedGrantTypeError
} from './errors.js'
import type { ClientInfo, TokenAuthEvents, TokenAuthRoute } from './events.js'
import type { ResolvedKey } from './keys.js'
import { FORM_CONTENT_TYPE, oauth2TokenBody, oauth2TokenResponses, parseForm, toOAuth2Error } from './oauth2.js'
import type { RateLimitOptions, ResolvedOptions } from './options.js'
import type { SessionService, TokenSet } from './sessions.js'

export interface RoutesContext {
  options: ResolvedOptions
  sessions: SessionService
  events: TokenAuthEvents
  authenticate: onRequestAsyncHookHandler
}

/**
 * Seconds a client should wait after a 503 before retrying. Short: the retry with the token the
 * client still holds succeeds as soon as the store answers, even when a stalled store carried
 * out the rotation after the 503 (docs/design.md, «A 503 is the truth»).
 */
const RETRY_AFTER_SECONDS = 1
/** Our bodies are two short strings; anything bigger is refused with 413 before parsing. */
const BODY_LIMIT = 16 * 1024
const MAX_USER_AGENT_LENGTH = 256
const JSON_CONTENT_TYPE = /^application\/json(; ?charset=utf-8)?$/i

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
const errorResponses = {
  '4xx': { ...errorSchema, description: 'Refused; `code` (FST_TOKEN_AUTH_* or FST_ERR_*) tells why' },
  '5xx': { ...errorSchema, description: 'Store unavailable (503 with Retry-After) or a server error' }
}
// OpenAPI security requirements, alternatives in an array. The app declares the schemes they
// name (bearerAuth, refreshCookie) in @fastify/swagger's components.securitySchemes.
const bearerSecurity = [{ bearerAuth: [] }]

/**
 * The OpenAPI security schemes the plugin's routes name, for @fastify/swagger's
 * `openapi.components.securitySchemes` (swagger fails to build the document without them).
 * Pass the refresh cookie's full name when you changed it (`__Host-` prefix included).
 */
export function openApiSecuritySchemes (cookieName = 'refresh_token') {
  return {
    bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Access token (typ at+jwt)' },
    refreshCookie: { type: 'apiKey', in: 'cookie', name: cookieName, description: 'HttpOnly refresh-token cookie' }
  } as const
}

/**
 * The ready-made routes, registered as an encapsulated child: their hooks, parsers and
 * validator stay here; the app's routes are untouched.
 */
export async function tokenAuthRoutes (app: FastifyInstance, context: RoutesContext): Promise<void> {
  const { options, sessions, events, authenticate } = context
  const { routes, cookie } = options
  const transport = options.refreshTokenTransport
  const usesCookie = transport !== 'body'
  const usesBody = transport !== 'cookie'
  const oauth2 = options.responseFormat === 'oauth2'
  /** The body field of the refresh token: RFC 6749's name in the OAuth 2.0 format. */
  const refreshField = oauth2 ? 'refresh_token' : 'refreshToken'
  // `{}` is the alternative of a refresh token in the body, which no security scheme describes.
  const refreshSecurity: Array<Record<string, string[]>> = [...(usesCookie ? [{ refreshCookie: [] }] : []), ...(usesBody ? [{}] : [])]
  /** Which of our routes a URL pattern is, for the 503 metrics and the OAuth 2.0 token endpoints. */
  const routeNames = new Map<string, TokenAuthRoute>()
  for (const name of ['login', 'refresh', 'logout', 'sessions'] as const) {
    const path = routes[name]
    if (path !== false) routeNames.set(`${app.prefix}${path}`, name)
  }
  if (routes.sessions !== false) routeNames.set(`${app.prefix}${routes.sessions}/:id`, 'sessions')
  const logoutSecurity: Array<Record<string, string[]>> = [...(usesCookie ? [{ refreshCookie: [] }] : []), ...bearerSecurity, ...(usesBody ? [{}] : [])]

  if (usesCookie && !app.hasRequestDecorator('cookies')) await app.register(fastifyCookie)
  // Strict validation for our bodies: extra fields refused, no type coercion, no defaults.
  app.setValidatorCompiler(AjvCompiler()({}, {
    customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false }
  }))

  app.addHook('onRequest', async (request, reply) => {
    // Token responses and errors alike are never cached (RFC 6749 §5.1).
    reply.header('cache-control', 'no-store')
    reply.header('pragma', 'no-cache')
    // Only JSON bodies, spelled exactly: a text/plain POST is a "simple" cross-site request
    // (CVE-2022-41919 class), and odd spellings have slipped past body validation before
    // (CVE-2025-32442, CVE-2026-25223). Checked before parsing, so nothing else reads the body.
    const type = request.headers['content-type']
    // OAuth 2.0 clients send forms (RFC 6749 §4.3.2, §6); the cross-site check still applies.
    if (type !== undefined && !JSON_CONTENT_TYPE.test(type) && !(oauth2 && FORM_CONTENT_TYPE.test(type))) {
      throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE()
    }
  })
  if (oauth2) {
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      try {
        done(null, parseForm(body as string))
      } catch (error) {
        done(error as Error, undefined)
      }
    })
  }
  // The app's own error handler formats and logs our errors too; Fastify's default one would log
  // every 503 of an outage at error level with a stack, so those we answer ourselves.
  const appHandlesErrors = app.errorHandler !== fastifyDefaultErrorHandler()
  app.setErrorHandler(async (error: Error & { statusCode?: number, code?: string }, request, reply) => {
    const route = routeNames.get(request.routeOptions.url as string) as TokenAuthRoute
    const unavailable = error.statusCode === 503
    if (unavailable) {
      reply.header('retry-after', RETRY_AFTER_SECONDS)
      events.emit('unavailableResponse', { route })
    }
    // Login and refresh are the routes the OAuth 2.0 format shapes.
    if (oauth2 && (route === 'login' || route === 'refresh')) {
      const { statusCode, body } = toOAuth2Error(error)
      if (statusCode >= 500 && !unavailable) reply.log.error({ err: error }, 'fastify-token-auth: token endpoint failed')
      return reply.code(statusCode).send(body)
    }
    if (unavailable && !appHandlesErrors) {
      // The outage is logged once when it starts and once when it ends (docs/design.md, «Store outages»).
      return reply.code(503).send({ statusCode: 503, code: error.code, error: 'Service Unavailable', message: error.message })
    }
    // Sending the error again hands it to the app's error handler, which formats it.
    reply.send(error)
    return reply
  })

  const crossSiteCheck = createCrossSiteCheck(options.allowedOrigins)
  const tokenResponse = oauth2
    ? oauth2TokenResponses(usesBody)
    : {
        200: {
          type: 'object',
          description: 'A new access token; the refresh token is set in the cookie (or returned in the body)',
          required: ['accessToken', 'tokenType', 'expiresIn'],
          properties: {
            accessToken: { type: 'string' },
            tokenType: { type: 'string', enum: ['Bearer'] },
            expiresIn: { type: 'integer', description: 'Seconds until the access token expires' },
            ...(usesBody ? { refreshToken: { type: 'string', description: 'Only when the refresh token travels in the body' } } : {})
          }
        },
        ...errorResponses
      }

  if (routes.login !== false) {
    const verifyCredentials = options.verifyCredentials as NonNullable<ResolvedOptions['verifyCredentials']>
    const onRequest: onRequestAsyncHookHandler[] = [crossSiteCheck]
    const preHandler: preHandlerAsyncHookHandler[] = []
    if (options.loginRateLimit !== false || options.accountRateLimit !== false) {
      if (!app.hasDecorator('createRateLimit')) await app.register(fastifyRateLimit, { global: false })
    }
    if (options.loginRateLimit !== false) {
      // Per client IP, before the body is read.
      onRequest.push(loginThrottle(app, options.loginRateLimit, (request) => `fastify-token-auth:login-ip:${request.ip}`))
    }
    if (options.accountRateLimit !== false) {
      // Per account name, once the body is validated; unknown names are counted the same way.
      preHandler.push(loginThrottle(app, options.accountRateLimit,
        (request) => `fastify-token-auth:login-account:${(request.body as { username: string }).username.normalize('NFKC').toLowerCase()}`))
    }
    const bodyProperties: Record<string, unknown> = {
      username: { type: 'string', minLength: 1, maxLength: 256 },
      password: { type: 'string', minLength: 1, maxLength: 1024 }
    }
    if (oauth2) Object.assign(bodyProperties, oauth2BodyProperties)
    if (transport === 'both') {
      bodyProperties.refreshTokenTransport = { type: 'string', enum: ['cookie', 'body'], description: 'Where the refresh token goes (default cookie)' }
    } else if (transport === 'body') {
      // A client that asks for what the server does anyway (the client helper in Node) is accepted.
      bodyProperties.refreshTokenTransport = { type: 'string', enum: ['body'], description: 'Where the refresh token goes (always body here)' }
    }
    app.post<{ Body: { username: string, password: string, refreshTokenTransport?: 'cookie' | 'body', grant_type?: string } }>(routes.login, {
      bodyLimit: BODY_LIMIT,
      onRequest,
      preHandler,
      schema: documented({
        summary: 'Log in with a username and password',
        security: [],
        body: { type: 'object', required: ['username', 'password'], additionalProperties: false, properties: bodyProperties },
        response: tokenResponse
      })
    }, async (request, reply) => {
      const { username, password } = request.body
      // RFC 6749 §4.3.2: the resource owner password credentials grant.
      if (request.body.grant_type !== undefined && request.body.grant_type !== 'password') throw new UnsupportedGrantTypeError()
      const user = await verifyCredentials(username, password, request)
      const client = clientInfo(request)
      if (user === null) {
        events.emit('loginFailed', { username, ...client })
        throw new InvalidCredentialsError()
      }
      const tokens = await sessions.issue(user, client)
      const inBody = transport === 'body' || request.body.refreshTokenTransport === 'body'
      return sendTokens(reply, tokens, inBody)
    })
  }

  if (routes.refresh !== false) {
    app.route<{ Body: Record<string, string> | undefined }>({
      method: options.refreshMethod,
      url: routes.refresh,
      bodyLimit: BODY_LIMIT,
      onRequest: crossSiteCheck,
      schema: documented({
        summary: 'Exchange the refresh token for new tokens (rotation)',
        security: refreshSecurity,
        ...(usesBody ? { body: refreshBodySchema(refreshField, oauth2) } : {}),
        response: tokenResponse
      }),
      handler: refreshHandler
    })
  }

  async function refreshHandler (request: FastifyRequest<{ Body: Record<string, string> | undefined }>, reply: FastifyReply): Promise<object> {
    const grantType = request.body?.grant_type
    if (grantType !== undefined && grantType !== 'refresh_token') throw new UnsupportedGrantTypeError()
    const presented = refreshTokenOf(request)
    if (presented === undefined) throw new MissingRefreshTokenError()
    try {
      const tokens = await sessions.refresh(presented.token, clientInfo(request))
      return sendTokens(reply, tokens, presented.inBody)
    } catch (error) {
      // A dead refresh token is dropped from the browser; on 503 it is kept («Fail closed»), and a
      // superseded one is left alone because a parallel response is setting its successor.
      const status = (error as { statusCode?: number }).statusCode
      if (status === 401 && !(error instanceof GraceExhaustedError) && !presented.inBody) clearRefreshCookie(reply)
      throw error
    }
  }

  if (routes.logout !== false) {
    app.post<{ Querystring: { all?: 'true' | 'false' }, Body: { refreshToken?: string } | undefined }>(routes.logout, {
      bodyLimit: BODY_LIMIT,
      onRequest: crossSiteCheck,
      schema: documented({
        summary: 'End this session, or every session of the user with ?all=true',
        security: logoutSecurity,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { all: { type: 'string', enum: ['true', 'false'] } }
        },
        ...(usesBody ? { body: refreshBodySchema(refreshField, false) } : {}),
        response: { 204: { type: 'null', description: 'Logged out' }, ...errorResponses }
      })
    }, async (request, reply) => {
      if (request.query.all === 'true') {
        await authenticate.call(app, request, reply)
        await sessions.revokeUserSessions(request.user!.sub, 'logout-all')
      } else {
        const presented = refreshTokenOf(request)
        if (presented !== undefined) {
          await sessions.logout(presented.token)
        } else if (request.headers.authorization !== undefined) {
          const ended = await authenticate.call(app, request, reply).then(() => request.user, () => null)
          if (ended) await sessions.revokeSession(ended.sid, { userId: ended.sub, reason: 'logout' })
          reply.removeHeader('www-authenticate')
        }
      }
      if (usesCookie) clearRefreshCookie(reply)
      if (options.clearSiteData !== undefined) reply.header('clear-site-data', options.clearSiteData)
      reply.code(204)
    })
  }

  if (routes.sessions !== false) {
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
    app.get(routes.sessions, {
      onRequest: authenticate,
      schema: documented({ summary: "List the user's sessions", security: bearerSecurity, response: { 200: sessionList, ...errorResponses } })
    }, async (request) => {
      const user = request.user!
      const list = await sessions.listSessions(user.sub)
      return { sessions: list.map((session) => ({ ...session, current: session.id === user.sid })) }
    })

    app.delete<{ Params: { id: string } }>(`${routes.sessions}/:id`, {
      onRequest: authenticate,
      schema: documented({
        summary: 'End one of the user\'s sessions',
        security: bearerSecurity,
        params: {
          type: 'object',
          required: ['id'],
          properties: { id: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' } }
        },
        response: { 204: { type: 'null', description: 'Session ended' }, ...errorResponses }
      })
    }, async (request, reply) => {
      const user = request.user!
      const ended = await sessions.revokeSession(request.params.id, { userId: user.sub, reason: 'revoked' })
      if (!ended) throw new SessionNotFoundError()
      reply.code(204)
    })
  }

  /**
   * The refresh token of a request, from wherever the transport allows. Both at once is
   * refused, and so is the cookie sent twice: a sibling subdomain can plant a second cookie of
   * the same name (cookie tossing), and the parser would silently keep the first.
   */
  function refreshTokenOf (request: FastifyRequest): { token: string, inBody: boolean } | undefined {
    if (usesCookie && hasDuplicateCookie(request.headers.cookie, cookie.name)) throw new AmbiguousRefreshTokenError()
    const fromCookie = usesCookie ? request.cookies[cookie.name] : undefined
    const fromBody = usesBody ? (request.body as Record<string, string> | undefined)?.[refreshField] : undefined
    if (fromCookie !== undefined && fromCookie !== '' && fromBody !== undefined) throw new AmbiguousRefreshTokenError()
    if (fromBody !== undefined) return { token: fromBody, inBody: true }
    if (fromCookie !== undefined && fromCookie !== '') return { token: fromCookie, inBody: false }
    return undefined
  }

  function sendTokens (reply: FastifyReply, tokens: TokenSet, inBody: boolean): object {
    if (!inBody) {
      reply.setCookie(cookie.name, tokens.refreshToken, {
        ...cookieAttributes(),
        maxAge: Math.max(0, Math.floor((tokens.refreshTokenExpiresAt - sessions.now()) / 1000))
      })
    }
    if (oauth2) return oauth2TokenBody(tokens, inBody)
    return {
      accessToken: tokens.accessToken,
      tokenType: tokens.tokenType,
      expiresIn: tokens.expiresIn,
      ...(inBody ? { refreshToken: tokens.refreshToken } : {})
    }
  }

  function clearRefreshCookie (reply: FastifyReply): void {
    reply.clearCookie(cookie.name, cookieAttributes())
  }

  function cookieAttributes (): { httpOnly: true, secure: boolean, sameSite: 'strict' | 'lax', path: string, domain?: string } {
    return {
      httpOnly: true,
      secure: cookie.secure,
      sameSite: cookie.sameSite,
      path: cookie.path,
      ...(cookie.domain !== undefined ? { domain: cookie.domain } : {})
    }
  }
}

let defaultErrorHandler: FastifyInstance['errorHandler'] | undefined

/** The error handler a Fastify instance has when the app set none. */
function fastifyDefaultErrorHandler (): FastifyInstance['errorHandler'] {
  defaultErrorHandler ??= Fastify({ logger: false }).errorHandler
  return defaultErrorHandler
}

/** A route schema with the OpenAPI fields @fastify/swagger reads. */
function documented (schema: FastifySchema & { summary: string, security?: object[] }): FastifySchema {
  return { tags: ['token-auth'], ...schema } as FastifySchema
}

/** Fields OAuth 2.0 clients send besides the grant's own; accepted and ignored but for grant_type. */
const oauth2BodyProperties = {
  grant_type: { type: 'string', maxLength: 64 },
  client_id: { type: 'string', maxLength: 256 },
  scope: { type: 'string', maxLength: 1024 }
}

function refreshBodySchema (field: string, oauth2: boolean): object {
  return {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: { [field]: { type: 'string', minLength: 1, maxLength: 8192 }, ...(oauth2 ? oauth2BodyProperties : {}) }
  }
}

/**
 * One login limit, through @fastify/rate-limit's `createRateLimit`: unlike its route hook, it
 * runs even when another limiter (the app's global one, or our other limit) already ran on the
 * request. Both limits answer the same 429 before the password is looked at, so a throttled
 * client cannot tell a right password from a wrong one, nor which limit it hit.
 */
function loginThrottle (
  app: FastifyInstance, limit: RateLimitOptions, keyGenerator: (request: FastifyRequest) => string
): onRequestAsyncHookHandler & preHandlerAsyncHookHandler {
  // Our own keys, so an app's limiter sharing the store (Redis) never shares our counters.
  const check = app.createRateLimit({ ...limit, keyGenerator })
  return async function loginThrottled (request: FastifyRequest, reply: FastifyReply) {
    const result = await check(request)
    if (!result.isAllowed && result.isExceeded) {
      reply.header('retry-after', result.ttlInSeconds)
      throw new LoginThrottledError(result.ttlInSeconds)
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

function clientInfo (request: FastifyRequest): ClientInfo {
  const userAgent = request.headers['user-agent']
  return {
    ip: request.ip,
    userAgent: typeof userAgent === 'string' ? userAgent.slice(0, MAX_USER_AGENT_LENGTH) : null
  }
}

/**
 * `GET /.well-known/jwks.json`: the public access-token keys (RFC 7517), so other services
 * verify our tokens without a shared secret. Retired keys stay listed while they still verify;
 * HMAC secrets are never listed. Cacheable, unlike every other route here.
 */
export async function jwksRoute (app: FastifyInstance, context: { path: string, maxAge: number, keys: ResolvedKey[] }): Promise<void> {
  const body = {
    keys: context.keys.filter((key) => key.publicJwk !== undefined).map((key) => ({ ...key.publicJwk, kid: key.kid, alg: key.algorithm, use: 'sig' }))
  }
  const jwk = { type: 'object', required: ['kty', 'kid', 'alg', 'use'], additionalProperties: { type: 'string' } }
  app.get(context.path, {
    schema: documented({
      summary: 'Public keys that verify access tokens (JWKS)',
      response: { 200: { type: 'object', required: ['keys'], properties: { keys: { type: 'array', items: jwk } } } }
    })
  }, async (_request, reply) => {
    reply.header('cache-control', `public, max-age=${context.maxAge}`)
    return body
  })
}
