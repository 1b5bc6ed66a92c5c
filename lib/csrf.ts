import type { FastifyRequest } from 'fastify'
import { CrossSiteRequestError } from './errors.js'

/**
 * The cross-site check for cookie-authenticated routes. A browser marks every cross-site
 * request with `Origin` and (modern browsers) `Sec-Fetch-Site`; we refuse those unless the
 * origin is our own or allow-listed. Requests with neither header come from non-browser
 * clients, which carry no ambient cookies an attacker could ride on, so they pass.
 * The server's own origin uses `request.protocol`, which honours `X-Forwarded-Proto` only
 * when the app configured `trustProxy`.
 */
export function createCrossSiteCheck (allowedOrigins: readonly string[]): (request: FastifyRequest) => Promise<void> {
  const allowed = new Set(allowedOrigins)
  return async function crossSiteCheck (request) {
    if (request.headers['sec-fetch-site'] === 'cross-site') throw new CrossSiteRequestError()
    const origin = request.headers.origin
    if (origin === undefined || allowed.has(origin)) return
    if (origin !== `${request.protocol}://${request.host}`) throw new CrossSiteRequestError()
  }
}
