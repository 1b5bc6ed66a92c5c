import AjvCompiler from '@fastify/ajv-compiler'
import fastifyCookie from '@fastify/cookie'
import fastifyRateLimit from '@fastify/rate-limit'
import Fastify, {
  errorCodes, type FastifyContextConfig, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest,
  type onRequestAsyncHookHandler, type preHandlerAsyncHookHandler
} from 'fastify'
import { LoginThrottledError } from '../errors.js'
import type { TokenAuthEvents, TokenAuthRoute } from '../events.js'
import { FORM_CONTENT_TYPE, parseForm, toOAuth2Error } from '../oauth2.js'
import type { RateLimitOptions, ResolvedOptions } from '../options.js'

/**
 * What every route of the encapsulated child shares, registered once: the cookie parser, the
 * login rate limiter, strict validation, the no-store and content-type hook, the form parser of
 * the OAuth 2.0 format, and the error mapping. The rules they enforce are in docs/design.md,
 * «Rules shared by the plugin routes».
 */

/**
 * Seconds a client should wait after a 503 before retrying. Short: the retry with the token the
 * client still holds succeeds as soon as the store answers, even when a stalled store carried
 * out the rotation after the 503 (docs/design.md, «A 503 is the truth»).
 */
const RETRY_AFTER_SECONDS = 1
/** The route config of a route that takes a form body in every response format (see the hook below). */
export const ACCEPTS_FORMS = { tokenAuthAcceptsForms: true } as FastifyContextConfig

const JSON_CONTENT_TYPE = /^application\/json(; ?charset=utf-8)?$/i

type SharedOptions = Pick<ResolvedOptions,
  'routes' | 'refreshTokenTransport' | 'responseFormat' | 'loginRateLimit' | 'accountRateLimit' | 'introspection'>

export async function registerSharedPieces (app: FastifyInstance, options: SharedOptions, events: TokenAuthEvents): Promise<void> {
  const oauth2 = options.responseFormat === 'oauth2'
  if (options.refreshTokenTransport !== 'body' && !app.hasRequestDecorator('cookies')) await app.register(fastifyCookie)
  // Strict validation for our bodies: extra fields refused, no type coercion, no defaults.
  app.setValidatorCompiler(AjvCompiler()({}, {
    customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false }
  }))
  // A callback hook, as on every plugin route: an async one costs a promise more per request.
  app.addHook('onRequest', (request, reply, done) => {
    // Token responses and errors alike are never cached (RFC 6749 §5.1).
    reply.header('cache-control', 'no-store')
    reply.header('pragma', 'no-cache')
    done(acceptedContentType(request, oauth2) ? undefined : new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE())
  })
  // OAuth 2.0 clients send forms (RFC 6749 §4.3.2, §6; RFC 7009 §2.1; RFC 7662 §2.1); the hook
  // above decides which routes take them.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, parseFormBody)
  app.setErrorHandler(createErrorHandler(app, options, events))
  const loginThrottled = (options.routes.login !== false || options.routes.reauthenticate !== false) && (options.loginRateLimit !== false || options.accountRateLimit !== false)
  const introspectionThrottled = options.routes.introspect !== false && options.introspection !== false && options.introspection.rateLimit !== false
  if ((loginThrottled || introspectionThrottled) && !app.hasDecorator('createRateLimit')) {
    await app.register(fastifyRateLimit, { global: false })
  }
}

/**
 * Only JSON bodies, spelled exactly: a text/plain POST is a "simple" cross-site request
 * (CVE-2022-41919 class), and odd spellings have slipped past body validation before
 * (CVE-2025-32442, CVE-2026-25223). Checked before parsing, so nothing else reads the body.
 * Forms in the OAuth 2.0 format, where the cross-site check still applies, and on the routes
 * whose RFCs send them and that read no cookie (`ACCEPTS_FORMS`). A request without a body (a
 * cookie refresh) is decided by the first test.
 */
function acceptedContentType (request: FastifyRequest, oauth2: boolean): boolean {
  const type = request.headers['content-type']
  if (type === undefined || JSON_CONTENT_TYPE.test(type)) return true
  const formsAllowed = oauth2 || (request.routeOptions.config as { tokenAuthAcceptsForms?: boolean }).tokenAuthAcceptsForms === true
  return formsAllowed && FORM_CONTENT_TYPE.test(type)
}

function parseFormBody (_request: FastifyRequest, body: string | Buffer, done: (error: Error | null, body?: unknown) => void): void {
  try {
    done(null, parseForm(body as string))
  } catch (error) {
    done(error as Error, undefined)
  }
}

/**
 * The error mapping: a 503 (store unavailable) gets `Retry-After` and counts as an
 * `unavailableResponse`; login and refresh answer RFC 6749 §5.2 errors in the OAuth 2.0 format.
 * The app's own error handler formats and logs our errors too; Fastify's default one would log
 * every 503 of an outage at error level with a stack, so those we answer ourselves
 * (docs/design.md, «Store outages»).
 */
function createErrorHandler (app: FastifyInstance, options: SharedOptions, events: TokenAuthEvents) {
  const routeNames = routeNamesOf(app.prefix, options.routes)
  const oauth2 = options.responseFormat === 'oauth2'
  const appHandlesErrors = app.errorHandler !== fastifyDefaultErrorHandler()
  return async function tokenAuthErrors (error: FastifyError, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const route = routeNames.get(request.routeOptions.url as string) as TokenAuthRoute
    const unavailable = error.statusCode === 503
    if (unavailable) {
      reply.header('retry-after', RETRY_AFTER_SECONDS)
      events.emit('unavailableResponse', { route })
    }
    // The OAuth 2.0 format shapes its token and revocation endpoints' errors (RFC 6749 §5.2, RFC 7009 §2.2.1).
    if (oauth2 && (route === 'login' || route === 'refresh' || route === 'reauthenticate' || route === 'revoke' || route === 'introspect')) {
      const { statusCode, body } = toOAuth2Error(error)
      if (statusCode >= 500 && !unavailable) reply.log.error({ err: error }, 'fastify-token-auth: token endpoint failed')
      return reply.code(statusCode).send(body)
    }
    if (unavailable && !appHandlesErrors) {
      // The outage is logged once when it starts and once when it ends.
      return reply.code(503).send({ statusCode: 503, code: error.code, error: 'Service Unavailable', message: error.message })
    }
    // Sending the error again hands it to the app's error handler, which formats it.
    return reply.send(error)
  }
}

/** Which of our routes a URL pattern is, for the 503 metrics and the OAuth 2.0 token endpoints. */
function routeNamesOf (prefix: string, routes: ResolvedOptions['routes']): Map<string, TokenAuthRoute> {
  const names = new Map<string, TokenAuthRoute>()
  for (const name of ['login', 'refresh', 'reauthenticate', 'logout', 'sessions', 'revoke', 'introspect', 'dbscRegistration', 'dbscRefresh'] as const) {
    const path = routes[name]
    if (path !== false) names.set(`${prefix}${path}`, name)
  }
  if (routes.sessions !== false) names.set(`${prefix}${routes.sessions}/:id`, 'sessions')
  return names
}

let defaultErrorHandler: FastifyInstance['errorHandler'] | undefined

/** The error handler a Fastify instance has when the app set none. */
function fastifyDefaultErrorHandler (): FastifyInstance['errorHandler'] {
  defaultErrorHandler ??= Fastify({ logger: false }).errorHandler
  return defaultErrorHandler
}

/**
 * A rate limit as a hook, through @fastify/rate-limit's `createRateLimit`: unlike its route hook,
 * it runs even when another limiter (the app's global one, or another of ours) already ran on the
 * request. Over the limit it answers `Refused` (a 429) with `Retry-After`, before anything else is
 * looked at. Keys are our own (`keyGenerator`), so an app's limiter sharing the store (Redis)
 * never shares our counters.
 */
export function throttle (
  app: FastifyInstance, limit: RateLimitOptions, keyGenerator: (request: FastifyRequest) => string,
  Refused: new (retryAfterSeconds: number) => Error
): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const check = app.createRateLimit({ ...limit, keyGenerator })
  return async function throttled (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const result = await check(request)
    if (!result.isAllowed && result.isExceeded) {
      reply.header('retry-after', result.ttlInSeconds)
      throw new Refused(result.ttlInSeconds)
    }
  }
}

/** The password routes' throttles: hooks before the body is read, and once it is validated. */
export interface LoginThrottles {
  onRequest: onRequestAsyncHookHandler[]
  preHandler: preHandlerAsyncHookHandler[]
}

/**
 * The login throttles, built once and shared by every route that checks a password (login and
 * re-authentication), so both count against the same limits. Both limits answer the same 429
 * before the password is looked at, so a throttled client cannot tell a right password from a
 * wrong one, nor which limit it hit.
 */
export function loginThrottles (app: FastifyInstance, options: Pick<ResolvedOptions, 'loginRateLimit' | 'accountRateLimit'>): LoginThrottles {
  const throttles: LoginThrottles = { onRequest: [], preHandler: [] }
  if (options.loginRateLimit !== false) {
    // Per client IP, before the body is read.
    throttles.onRequest.push(throttle(app, options.loginRateLimit, (request) => `fastify-token-auth:login-ip:${request.ip}`, LoginThrottledError))
  }
  if (options.accountRateLimit !== false) {
    // Per account name, once the body is validated; unknown names are counted the same way.
    throttles.preHandler.push(throttle(app, options.accountRateLimit,
      (request) => `fastify-token-auth:login-account:${(request.body as { username: string }).username.normalize('NFKC').toLowerCase()}`, LoginThrottledError))
  }
  return throttles
}
