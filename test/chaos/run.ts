import { sleep } from '../helpers.js'
import { PrivatePostgres } from '../private-servers/postgres.js'
import { freePort } from '../private-servers/process.js'
import { PrivateRedis } from '../private-servers/redis.js'
import { Example } from './example.js'
import { defaultFaults, FaultTimeline, type FaultSpec, phases, type StoreKind, type StoreServers } from './faults.js'
import { ExampleClient } from './http.js'
import { Load } from './load.js'
import { type ChaosReport, verdictOf } from './report.js'
import { round } from './round.js'
import { RssWatch } from './rss.js'

/*
 * The chaos run (issue 9): the example server (examples/server.ts) in a child process, on a
 * private Redis or PostgreSQL, under a steady refresh load over real HTTP while faults are
 * injected into the store. It proves, or disproves, "a 503 never costs a session": a client
 * that keeps its cookie on a 503 and retries after Retry-After must never be answered 401/403,
 * and must refresh fine once the faults are over.
 *
 * This file wires the parts: example.ts (the server and its logs), load.ts (the clients),
 * faults.ts (what is injected when), rss.ts (the memory), report.ts (the verdict and the table).
 */

interface ChaosOptions {
  store: StoreKind
  /** Seconds of load (warm-up and recovery tail included; logins and the final check excluded). */
  seconds: number
  /** Clients, each logged in once. */
  sessions: number
  /** Requests in flight at once. */
  concurrency: number
  /** REFRESH_REUSE_GRACE of the example, seconds; undefined: the example's default (5). */
  reuseGrace?: number | undefined
  /** STORE_TIMEOUT_MS of the example; default 1000. */
  storeTimeoutMs?: number
  /** The faults; default: `defaultFaults(store, seconds)`. An empty list: a run without faults. */
  faults?: FaultSpec[]
  /** Progress lines (default: none). */
  progress?: (line: string) => void
}

/** The run's private store, stopped by the returned cleanup step. */
async function startStore (store: StoreKind): Promise<{ servers: StoreServers, url: string, stop: () => Promise<void> }> {
  if (store === 'redis') {
    const redis = await PrivateRedis.start()
    return { servers: { redis }, url: redis.url, stop: () => redis.stop() }
  }
  const postgres = await PrivatePostgres.start()
  return { servers: { postgres }, url: postgres.databaseUrl, stop: () => postgres.stop() }
}

/** Runs the chaos run described by `options`; every server it started is gone when it settles. */
export async function runChaos (options: ChaosOptions): Promise<ChaosReport> {
  const { store, seconds, sessions, concurrency } = options
  const storeTimeoutMs = options.storeTimeoutMs ?? 1000
  const faults = options.faults ?? defaultFaults(store, seconds)
  const say = (line: string): void => { options.progress?.(`${store}: ${line}`) }
  // Undone in reverse order, whatever happens: the example before its store.
  const cleanup: Array<() => Promise<unknown>> = []
  try {
    const { servers, url, stop } = await startStore(store)
    cleanup.push(stop)
    const port = await freePort()
    const example = await Example.start({ store, storeUrl: url, port, storeTimeoutMs, sessions, reuseGrace: options.reuseGrace })
    cleanup.push(() => example.stop())
    const http = new ExampleClient(port, concurrency + 4)
    cleanup.push(async () => { http.close() })
    await example.waitUntilUp(http)
    say(`example up (pid ${example.pid}), logging in ${sessions} clients`)

    const timeline = new FaultTimeline(faults, seconds)
    const load = new Load(http, example, timeline)
    await load.logIn(sessions, concurrency)

    // The load, the faults and the RSS readings, side by side.
    timeline.begin()
    const rss = new RssWatch(example.pid, example.inspectPort, say)
    cleanup.push(async () => { rss.stop() })
    const driving = load.drive(concurrency)
    // The warm-up reading, just before the first fault.
    const { warmup } = phases(seconds)
    const warmupEnd = timeline.loadStart + Math.min(warmup, faults[0]?.at ?? warmup) * 1000 - 1500
    if (warmupEnd > Date.now()) await sleep(warmupEnd - Date.now())
    const afterWarmup = await rss.measure()
    await timeline.run(servers, example, say)
    // The end reading, under load, the last fault long over.
    if (timeline.loadEnd - 1500 > Date.now()) await sleep(timeline.loadEnd - 1500 - Date.now())
    const atEnd = example.alive ? await rss.measure() : undefined
    await driving
    const loadSeconds = (Date.now() - timeline.loadStart) / 1000

    const finalStart = Date.now()
    if (example.alive) {
      say(`final check of ${load.clientCount} clients`)
      await load.finalCheck(concurrency)
    }
    const finalCheckSeconds = (Date.now() - finalStart) / 1000
    rss.stop()

    // Our keep-alive sockets closed first: the shutdown is the example's own.
    http.close()
    const shutdown = await example.stop()
    const lost = load.sessionsLost
    const timelineEntries = timeline.entries
    const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0)
    const { answers } = load.counts
    const report: Omit<ChaosReport, 'verdict'> = {
      store,
      reuseGrace: options.reuseGrace ?? 'default',
      storeTimeoutMs,
      seconds,
      sessions,
      concurrency,
      ...load.counts,
      refreshesOk: answers.refresh['200'] ?? 0,
      unavailableDuringFaults: sum(timelineEntries.map((entry) => entry.refreshUnavailable)),
      sessionsLost: lost.total,
      sessionsLostByAnswer: lost.byAnswer,
      sessionsLostNoFinalOk: lost.total - lost.byAnswer,
      example: example.report(shutdown, (time) => timeline.since(time)),
      rss: rss.report(afterWarmup, atEnd),
      requestsPerSecond: round(sum([...Object.values(answers.refresh), ...Object.values(answers.me)]) / (loadSeconds + finalCheckSeconds)),
      refreshesPerSecond: round(sum(Object.values(answers.refresh)) / (loadSeconds + finalCheckSeconds)),
      loadSeconds: round(loadSeconds),
      finalCheckSeconds: round(finalCheckSeconds),
      timeline: timelineEntries,
      logs: example.logs
    }
    return { ...report, verdict: verdictOf(report) }
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => {})
  }
}
