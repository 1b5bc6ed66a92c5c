import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { CrossSiteRequestError } from './errors.js'

/**
 * The cross-site check for cookie-authenticated routes. A browser marks every cross-site
 * request with `Origin` and (modern browsers) `Sec-Fetch-Site`; we refuse those unless the
 * origin is our own or allow-listed. Requests with neither header come from non-browser
 * clients, which carry no ambient cookies an attacker could ride on, so they pass.
 * The server's own origin uses `request.protocol`, which honours `X-Forwarded-Proto` only
 * when the app configured `trustProxy`. A callback hook: it runs on every refresh, and an async
 * one costs Fastify a promise more per request.
 */
export function createCrossSiteCheck (allowedOrigins: readonly string[]) {
  const allowed = new Set(allowedOrigins)
  return function crossSiteCheck (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    done(isCrossSite(request, allowed) ? new CrossSiteRequestError() : undefined)
  }
}

function isCrossSite (request: FastifyRequest, allowed: ReadonlySet<string>): boolean {
  if (request.headers['sec-fetch-site'] === 'cross-site') return true
  const origin = request.headers.origin
  if (origin === undefined || allowed.has(origin)) return false
  return origin !== `${request.protocol}://${request.host}`
}
