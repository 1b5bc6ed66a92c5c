import type { FastifyInstance, onRequestAsyncHookHandler } from 'fastify'
import { collectMetrics, type MetricsCollector, type MetricsOptions, PROMETHEUS_CONTENT_TYPE } from '../lib/index.js'

export interface MetricsRouteOptions extends MetricsOptions {
  /** @default '/metrics' */
  path?: string
  /**
   * Guards the route (a token, an IP allow-list...): the counts tell an attacker how well an
   * attack is going. Without it, expose the route only on an internal network.
   */
  onRequest?: onRequestAsyncHookHandler
}

/**
 * Registers `GET /metrics` with the plugin's counters in Prometheus text format. Call it after
 * `await app.register(tokenAuth, ...)`; the collector stops when the app closes.
 */
export function registerMetricsRoute (app: FastifyInstance, options: MetricsRouteOptions = {}): MetricsCollector {
  const { path = '/metrics', onRequest, ...metricsOptions } = options
  const metrics = collectMetrics(app.tokenAuth.events, metricsOptions)
  app.get(path, { ...(onRequest === undefined ? {} : { onRequest }), schema: { hide: true } }, async (_request, reply) => {
    reply.type(PROMETHEUS_CONTENT_TYPE).header('cache-control', 'no-store')
    return metrics.prometheus()
  })
  app.addHook('onClose', async () => { metrics.close() })
  return metrics
}
