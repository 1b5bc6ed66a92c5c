import type { onRequestAsyncHookHandler } from 'fastify'
import type { createCrossSiteCheck } from '../csrf.js'
import type { DeviceSessions } from '../dbsc/device-sessions.js'
import type { DpopProofs } from '../dpop/requests.js'
import type { TokenAuthEvents } from '../events.js'
import type { ResolvedOptions } from '../options.js'
import type { SessionService } from '../sessions.js'
import type { LoginThrottles } from './shared.js'
import type { TokenTransport } from './transport.js'

/** What the plugin hands its routes. */
export interface RoutesContext {
  options: ResolvedOptions
  sessions: SessionService
  events: TokenAuthEvents
  authenticate: onRequestAsyncHookHandler
  /** The DPoP proofs of requests (docs/design.md, «Sender-constrained sessions (DPoP)»). */
  dpop: DpopProofs
}

/** What a route module gets: the plugin's parts and the pieces the routes share. Each takes the fields it uses. */
export interface RouteContext extends RoutesContext {
  /** For the routes a cookie authenticates: login, refresh, logout. */
  crossSiteCheck: ReturnType<typeof createCrossSiteCheck>
  transport: TokenTransport
  /** The password routes' throttles (login, reauthenticate), one set so both count together. */
  loginThrottles: LoginThrottles
  /** Device Bound Session Credentials (docs/design.md, «Device Bound Session Credentials (DBSC)»). */
  devices: DeviceSessions
}

/** Our bodies are two short strings; anything bigger is refused with 413 before parsing. */
export const BODY_LIMIT = 16 * 1024
