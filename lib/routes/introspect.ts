import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { IntrospectionThrottledError, InvalidClientError } from '../errors.js'
import { singleAuthorization } from '../single-header.js'
import { introspect } from '../introspection.js'
import type { IntrospectionOptions } from '../options.js'
import { BODY_LIMIT, type RouteContext } from './context.js'
import { ACCEPTS_FORMS, throttle } from './shared.js'
import { documented, introspectionResponses, tokenParameterBody } from './schemas.js'

/** The challenge of a refused caller (RFC 7617), so it knows to send Basic credentials. */
const BASIC_CHALLENGE = 'Basic realm="fastify-token-auth", charset="UTF-8"'

/**
 * `POST /introspect`, the RFC 7662 introspection endpoint (docs/design.md, «Token introspection
 * endpoint»): for resource servers that must see a revocation at once. Rate limited per client
 * IP first, then the caller authenticated with HTTP Basic, before the body is read.
 */
export function introspectRoute (
  app: FastifyInstance, path: string, context: Pick<RouteContext, 'options' | 'sessions'>, introspection: Required<IntrospectionOptions>
): void {
  const { options, sessions } = context
  const authenticate = clientAuthentication(introspection.clients)
  // Per client IP, counted before authentication, so failed attempts count too.
  const throttled = introspection.rateLimit === false
    ? undefined
    : throttle(app, introspection.rateLimit, (request) => `fastify-token-auth:introspect-ip:${request.ip}`, IntrospectionThrottledError)
  app.post<{ Body: { token: string } }>(path, {
    bodyLimit: BODY_LIMIT,
    config: ACCEPTS_FORMS,
    onRequest: async (request, reply) => {
      await throttled?.(request, reply)
      authenticate(request, reply)
    },
    schema: documented({
      summary: 'Introspect a refresh or access token (RFC 7662)',
      security: [{ introspectionClient: [] }],
      body: tokenParameterBody,
      response: introspectionResponses(options.responseFormat)
    })
  }, async (request) => await introspect(sessions, request.body.token))
}

/**
 * Checks `Authorization: Basic` against the configured clients: id and secret each compared
 * through their SHA-256 (equal lengths for timingSafeEqual), for every client, with no early
 * exit, so the time taken says nothing about which part was wrong or how much of it matched.
 */
function clientAuthentication (clients: IntrospectionOptions['clients']) {
  const digest = (text: string): Buffer => createHash('sha256').update(text).digest()
  const known = clients.map((client) => ({ id: digest(client.id), secret: digest(client.secret) }))
  return function authenticateClient (request: FastifyRequest, reply: FastifyReply): void {
    const authorization = singleAuthorization(request)
    // Two Authorization headers are not one client's credentials.
    const credentials = authorization === null ? null : basicCredentials(authorization)
    let matched = false
    if (credentials !== null) {
      const id = digest(credentials.id)
      const secret = digest(credentials.secret)
      for (const client of known) {
        // Both comparisons always run: `&&` would skip the secret when the id differs.
        const sameId = timingSafeEqual(id, client.id)
        const sameSecret = timingSafeEqual(secret, client.secret)
        matched = (sameId && sameSecret) || matched
      }
    }
    if (!matched) {
      reply.header('www-authenticate', BASIC_CHALLENGE)
      throw new InvalidClientError()
    }
  }
}

/** RFC 6749 §2.3.1: `Basic base64(urlencoded id ":" urlencoded secret)`; null when it is not that. */
function basicCredentials (header: string | undefined): { id: string, secret: string } | null {
  const match = header === undefined ? null : /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header)
  if (match === null) return null
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) return null
  try {
    return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) }
  } catch {
    return null
  }
}

function formDecode (text: string): string {
  return decodeURIComponent(text.replaceAll('+', ' '))
}
