import type {
  LoginEvent, LoginFailedEvent, RefreshEvent, ReuseDetectedEvent, RevocationReason, SessionRevokedEvent, TokenAuthEventMap,
  TokenAuthEvents, TokenAuthRoute, UnavailableResponseEvent
} from './events.js'

/** The `Content-Type` of `MetricsCollector.prometheus()`: Prometheus text exposition format 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export interface MetricsOptions {
  /**
   * Start of every metric name (a Prometheus name: letters, digits, `_` and `:`).
   * @default 'fastify_token_auth_'
   */
  prefix?: string
  /**
   * Called on every increment, with the full metric name, its labels and the amount added, so
   * an app can feed its own counters (prom-client, OpenTelemetry) instead of, or besides, the
   * text from `prometheus()`, e.g. `(name, labels, value) => promCounters[name].inc(labels, value)`.
   * Called synchronously while the plugin emits the event. An error thrown here is logged by
   * the plugin and never changes a response, but the listeners registered after this collector
   * miss that event: catch your own errors.
   */
  onIncrement?: (name: string, labels: Record<string, string>, value: number) => void
}

export interface MetricsCollector {
  /** Every counter, keyed by its name and labels as in the exposition: `name{reason="logout"}`. */
  snapshot (): Record<string, number>
  /** The counters in Prometheus text exposition format 0.0.4, `# HELP` and `# TYPE` included. */
  prometheus (): string
  /** Stops counting: removes the collector's listeners from the events. Idempotent. */
  close (): void
}

const DEFAULT_PREFIX = 'fastify_token_auth_'
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

// A Record, so a reason added to RevocationReason without being listed here fails to compile.
const REVOCATION_REASONS = Object.keys({
  logout: true, 'logout-all': true, reuse: true, revoked: true, 'user-unavailable': true, 'session-limit': true, 'refresh-denied': true
} satisfies Record<RevocationReason, true>) as RevocationReason[]

const ROUTES = Object.keys({
  login: true, refresh: true, reauthenticate: true, logout: true, sessions: true, revoke: true, introspect: true, dbscRegistration: true, dbscRefresh: true
} satisfies Record<TokenAuthRoute, true>) as TokenAuthRoute[]

interface Counter {
  name: string
  help: string
  /** Every label set this counter can have, exported from the start at 0 (absent series break `rate()`). */
  series: Array<Record<string, string>>
}

/**
 * The counters. Labels only ever take values from the fixed sets below, never from a request:
 * no user id, username, session id, IP, user agent or token reaches a label (cardinality, privacy).
 */
const COUNTERS = {
  logins: { name: 'logins_total', help: 'Sessions started: successful logins and issueSession calls.', series: [{}] },
  loginFailures: { name: 'login_failures_total', help: 'Logins refused for an unknown username or a wrong password.', series: [{}] },
  refreshes: {
    name: 'refreshes_total',
    help: 'Refresh tokens exchanged for new tokens; grace="true" when the predecessor was answered inside the grace window.',
    series: [{ grace: 'false' }, { grace: 'true' }]
  },
  recoveries: {
    name: 'refresh_recoveries_total',
    help: 'Refreshes that presented a predecessor whose successor was never used (a lost response, or a rotation applied after a 503), answered with a new successor.',
    series: [{}]
  },
  reuseDetections: {
    name: 'reuse_detections_total',
    help: 'Refresh tokens presented again after rotation (suspected theft); each ended its session.',
    series: [{}]
  },
  revocations: {
    name: 'revocations_total',
    help: 'Sessions ended, by reason: logout, logout-all, reuse (theft detection), revoked (by id or by the app), user-unavailable, session-limit (a login over maxSessionsPerUser), refresh-denied (the onRefresh hook).',
    series: [...REVOCATION_REASONS.map((reason) => ({ reason })), { reason: 'other' }]
  },
  unavailableResponses: {
    name: 'unavailable_responses_total',
    help: 'Requests answered 503 with Retry-After because the token store was unavailable, by route.',
    series: ROUTES.map((route) => ({ route }))
  }
} satisfies Record<string, Counter>

/**
 * Counts the plugin's events for monitoring, with no dependency: logins, failed logins,
 * refreshes and recoveries, reuse detections, revocations by reason and 503s by route.
 *
 * ```ts
 * const metrics = collectMetrics(app.tokenAuth.events)
 * app.get('/metrics', async (request, reply) => reply.type(PROMETHEUS_CONTENT_TYPE).send(metrics.prometheus()))
 * app.addHook('onClose', async () => metrics.close())
 * ```
 *
 * @param events `app.tokenAuth.events`
 */
export function collectMetrics (events: TokenAuthEvents, options: MetricsOptions = {}): MetricsCollector {
  const prefix = options.prefix ?? DEFAULT_PREFIX
  if (typeof prefix !== 'string' || (prefix !== '' && !METRIC_NAME.test(prefix))) {
    throw new TypeError(`collectMetrics option "prefix" must be a Prometheus metric name prefix (letters, digits, _ and :, not starting with a digit), got ${JSON.stringify(prefix)}`)
  }
  const onIncrement = options.onIncrement
  if (onIncrement !== undefined && typeof onIncrement !== 'function') {
    throw new TypeError('collectMetrics option "onIncrement" must be a function')
  }
  const counters = Object.values(COUNTERS)
  const values = new Map<string, number>()
  for (const counter of counters) {
    for (const labels of counter.series) values.set(seriesKey(prefix + counter.name, labels), 0)
  }

  function increment (counter: Counter, labels: Record<string, string> = {}): void {
    const name = prefix + counter.name
    const key = seriesKey(name, labels)
    values.set(key, (values.get(key) as number) + 1)
    // A copy: whatever the callback does with it cannot change our series.
    onIncrement?.(name, { ...labels }, 1)
  }

  const listeners: { [E in keyof TokenAuthEventMap]?: (...args: TokenAuthEventMap[E]) => void } = {
    login: (_event: LoginEvent) => { increment(COUNTERS.logins) },
    loginFailed: (_event: LoginFailedEvent) => { increment(COUNTERS.loginFailures) },
    refresh: (event: RefreshEvent) => {
      increment(COUNTERS.refreshes, { grace: String(event.grace === true) })
      if (event.recovered === true) increment(COUNTERS.recoveries)
    },
    reuseDetected: (_event: ReuseDetectedEvent) => { increment(COUNTERS.reuseDetections) },
    sessionRevoked: (event: SessionRevokedEvent) => {
      // The events are public: anything but a known reason is folded into one series.
      const reason = REVOCATION_REASONS.includes(event.reason) ? event.reason : 'other'
      increment(COUNTERS.revocations, { reason })
    },
    unavailableResponse: (event: UnavailableResponseEvent) => {
      if (ROUTES.includes(event.route)) increment(COUNTERS.unavailableResponses, { route: event.route })
    }
  }
  // One loop for on and one for off, so a counter added above is never left listening after close.
  const subscriptions = Object.entries(listeners) as Array<[keyof TokenAuthEventMap, (...args: any[]) => void]>
  for (const [event, listener] of subscriptions) events.on(event, listener)

  return {
    snapshot: () => Object.fromEntries(values),
    prometheus: () => {
      let text = ''
      for (const counter of counters) {
        const name = prefix + counter.name
        text += `# HELP ${name} ${counter.help}\n# TYPE ${name} counter\n`
        for (const labels of counter.series) {
          const key = seriesKey(name, labels)
          text += `${key} ${values.get(key) as number}\n`
        }
      }
      return text
    },
    close: () => {
      for (const [event, listener] of subscriptions) events.off(event, listener)
    }
  }
}

/**
 * A series as the exposition writes it: `name` or `name{label="value",...}`. Label values and
 * HELP texts are the constants above, none with a backslash, quote or newline to escape.
 */
function seriesKey (name: string, labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([label, value]) => `${label}="${value}"`)
  return pairs.length === 0 ? name : `${name}{${pairs.join(',')}}`
}
