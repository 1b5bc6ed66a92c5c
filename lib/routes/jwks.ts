import type { FastifyInstance } from 'fastify'
import type { ResolvedKey } from '../keys.js'
import { documented, jwksResponses } from './schemas.js'

/**
 * `GET /.well-known/jwks.json`: the public access-token keys (RFC 7517), so other services
 * verify our tokens without a shared secret. Retired keys stay listed while they still verify;
 * HMAC secrets are never listed. Cacheable, unlike every other route here, and registered
 * outside the routes' encapsulated child, whose hook forbids caching.
 */
export async function jwksRoute (app: FastifyInstance, context: { path: string, maxAge: number, keys: ResolvedKey[] }): Promise<void> {
  const body = {
    keys: context.keys.filter((key) => key.publicJwk !== undefined).map((key) => ({ ...key.publicJwk, kid: key.kid, alg: key.algorithm, use: 'sig' }))
  }
  app.get(context.path, {
    schema: documented({ summary: 'Public keys that verify access tokens (JWKS)', response: jwksResponses })
  }, async (_request, reply) => {
    reply.header('cache-control', `public, max-age=${context.maxAge}`)
    return body
  })
}
