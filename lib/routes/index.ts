import type { FastifyInstance } from 'fastify'
import { createCrossSiteCheck } from '../csrf.js'
import { DeviceSessions } from '../dbsc/device-sessions.js'
import type { RouteContext, RoutesContext } from './context.js'
import { loginRoute } from './login.js'
import { logoutRoute } from './logout.js'
import { reauthenticateRoute } from './reauthenticate.js'
import { refreshRoute } from './refresh.js'
import { introspectRoute } from './introspect.js'
import { dbscRefreshRoute, dbscRegistrationRoute } from './dbsc.js'
import { revokeRoute } from './revoke.js'
import { sessionRoutes } from './sessions.js'
import { loginThrottles, registerSharedPieces } from './shared.js'
import { createTokenTransport } from './transport.js'

export type { RoutesContext } from './context.js'
export { jwksRoute } from './jwks.js'
export { openApiSecuritySchemes } from './schemas.js'

/**
 * The ready-made routes, registered as an encapsulated child: their hooks, parsers and
 * validator stay here; the app's routes are untouched. The pieces they share are registered
 * once, then each route.
 */
export async function tokenAuthRoutes (app: FastifyInstance, context: RoutesContext): Promise<void> {
  const { options, sessions, events } = context
  const { routes } = options
  await registerSharedPieces(app, options, events)
  const routeContext: RouteContext = {
    ...context,
    crossSiteCheck: createCrossSiteCheck(options.allowedOrigins),
    transport: createTokenTransport(options, () => sessions.now()),
    loginThrottles: routes.login !== false || routes.reauthenticate !== false ? loginThrottles(app, options) : { onRequest: [], preHandler: [] },
    devices: new DeviceSessions(options, {
      registration: routes.dbscRegistration === false ? false : `${app.prefix}${routes.dbscRegistration}`,
      // Present whenever registration is (../options.ts).
      refresh: `${app.prefix}${routes.dbscRefresh as string}`
    }, async (key, expiresAt) => await sessions.spendProof(key, expiresAt), () => sessions.now())
  }
  if (routes.login !== false) loginRoute(app, routes.login, routeContext)
  if (routes.refresh !== false) refreshRoute(app, routes.refresh, routeContext)
  if (routes.reauthenticate !== false) reauthenticateRoute(app, routes.reauthenticate, routeContext)
  if (routes.logout !== false) logoutRoute(app, routes.logout, routeContext)
  if (routes.sessions !== false) sessionRoutes(app, routes.sessions, routeContext)
  if (routes.revoke !== false) revokeRoute(app, routes.revoke, routeContext)
  if (routes.introspect !== false && options.introspection !== false) introspectRoute(app, routes.introspect, routeContext, options.introspection)
  if (routes.dbscRegistration !== false && options.dbsc !== false) dbscRegistrationRoute(app, routes.dbscRegistration, routeContext)
  if (routes.dbscRefresh !== false && options.dbsc !== false) dbscRefreshRoute(app, routes.dbscRefresh, routeContext)
}
