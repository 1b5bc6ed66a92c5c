import type {
  FastifyInstance, onRequestAsyncHookHandler, onRequestHookHandler, preHandlerAsyncHookHandler
} from 'fastify'
import { InvalidCredentialsError, LoginThrottledError, UnsupportedGrantTypeError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import { documented, loginBodySchema, tokenResponses } from './schemas.js'
import { throttle } from './shared.js'
import { clientInfo } from './transport.js'

interface LoginBody { username: string, password: string, refreshTokenTransport?: 'cookie' | 'body', grant_type?: string }

/** `POST /login`: username and password for a new session's tokens. */
export function loginRoute (
  app: FastifyInstance, path: string, context: Pick<RouteContext, 'options' | 'sessions' | 'events' | 'transport' | 'crossSiteCheck'>
): void {
  const { options, sessions, events, transport } = context
  const verifyCredentials = options.verifyCredentials as NonNullable<ResolvedOptions['verifyCredentials']>
  // Both limits answer the same 429 before the password is looked at, so a throttled client
  // cannot tell a right password from a wrong one, nor which limit it hit.
  const onRequest: Array<onRequestHookHandler | onRequestAsyncHookHandler> = [context.crossSiteCheck]
  const preHandler: preHandlerAsyncHookHandler[] = []
  if (options.loginRateLimit !== false) {
    // Per client IP, before the body is read.
    onRequest.push(throttle(app, options.loginRateLimit, (request) => `fastify-token-auth:login-ip:${request.ip}`, LoginThrottledError))
  }
  if (options.accountRateLimit !== false) {
    // Per account name, once the body is validated; unknown names are counted the same way.
    preHandler.push(throttle(app, options.accountRateLimit,
      (request) => `fastify-token-auth:login-account:${(request.body as LoginBody).username.normalize('NFKC').toLowerCase()}`, LoginThrottledError))
  }
  app.post<{ Body: LoginBody }>(path, {
    bodyLimit: BODY_LIMIT,
    onRequest,
    preHandler,
    schema: documented({
      summary: 'Log in with a username and password',
      security: [],
      body: loginBodySchema(options.responseFormat, options.refreshTokenTransport),
      response: tokenResponses(options.responseFormat, transport.usesBody)
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
    const inBody = options.refreshTokenTransport === 'body' || request.body.refreshTokenTransport === 'body'
    return transport.send(reply, tokens, inBody)
  })
}
