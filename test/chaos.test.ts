import t from 'tap'
import { defaultFaults, type StoreKind } from './chaos/faults.js'
import { type ChaosReport, formatReport, RSS_GROWTH_LIMIT } from './chaos/report.js'
import { runChaos } from './chaos/run.js'
import { privatePostgresUnavailable } from './private-servers/postgres.js'
import { privateRedisUnavailable } from './private-servers/redis.js'

/*
 * A short chaos run (issue 9; the long one is `npm run chaos`): the example server over real
 * HTTP on a private Redis / PostgreSQL, a refresh load, and three store faults (stall, client
 * connections cut then a stall, kill and restart). A 503 must never cost a session. The runs
 * go in parallel: most of their wall time is fixed (the load and fault timeline), and run one
 * after the other they would not fit the file's time budget on a 2-core machine.
 */

const SECONDS = 24
/** Each login hashes with scrypt (~0.3 s of CPU here): more sessions cost start-up time, not coverage. */
const SESSIONS = 40
const CONCURRENCY = 16

interface Case {
  store: StoreKind
  reuseGrace: number | undefined
}

const cases: Case[] = [
  { store: 'redis', reuseGrace: 0 },
  { store: 'postgres', reuseGrace: 0 },
  { store: 'redis', reuseGrace: undefined }
]

const skip: Record<StoreKind, string | undefined> = {
  redis: privateRedisUnavailable(),
  postgres: privatePostgresUnavailable()
}

// Every run starts now; each subtest waits for its own. Settled into a value at once, so a run
// that fails before its subtest reads it is not an unhandled rejection.
const runs = cases.map((test) => skip[test.store] !== undefined
  ? undefined
  : runChaos({ store: test.store, seconds: SECONDS, sessions: SESSIONS, concurrency: CONCURRENCY, reuseGrace: test.reuseGrace })
    .then((report) => ({ report }), (error: unknown) => ({ error: error as Error })))

t.setTimeout(170_000)

for (const [index, test] of cases.entries()) {
  const name = `${test.store}, REFRESH_REUSE_GRACE=${test.reuseGrace ?? 'default'}: a 503 never costs a session`
  t.test(name, async (t) => {
    const reason = skip[test.store]
    const run = runs[index]
    if (reason !== undefined || run === undefined) {
      t.plan(0, reason)
      return
    }
    const settled = await run
    if ('error' in settled) throw settled.error
    const report: ChaosReport = settled.report
    const detail = formatReport(report)
    t.comment(detail)

    t.equal(report.sessionsLost, 0, `no session lost (4xx: ${JSON.stringify(report.lostCodes)}, no final 200: ${report.sessionsLostNoFinalOk})`)
    t.equal(report.serverErrors, 0, 'no 5xx other than 503')
    t.equal(report.unavailableWithoutRetryAfter, 0, 'every 503 carries Retry-After')
    t.equal(report.unavailableWithCookie, 0, 'no 503 touches the refresh cookie')
    t.equal(report.meFailures, 0, 'GET /me with each new access token answers 200')
    t.equal(report.networkErrors, 0, 'every request got an HTTP answer')
    t.equal(report.okWithoutCookie, 0, 'every 200 refresh sets the new refresh cookie')
    t.equal(report.example.crashed, false, report.example.crashed
      ? `the example exited during the run at ${report.example.exitedAt} s (code ${report.example.exitCode}, signal ${report.example.signal}): ${report.example.stderr}`
      : 'the example did not exit during the run')
    // A crashed example has no end reading; the crash fails above.
    t.ok(report.example.crashed || report.rss.growth <= RSS_GROWTH_LIMIT,
      `RSS after warm-up ${report.rss.afterWarmup} MiB, at the end ${report.rss.atEnd} MiB (${(report.rss.growth * 100).toFixed(1)} %, ${report.rss.method}): at most ${RSS_GROWTH_LIMIT * 100} %`)

    // Not vacuous: the faults happened and hurt, and the load was real.
    t.equal(report.timeline.length, defaultFaults(test.store, SECONDS).length, 'every fault of the timeline injected')
    t.notOk(report.timeline.some((entry) => entry.detail.startsWith('injection failed')), 'every injection worked')
    t.ok(report.unavailableDuringFaults > 0, `the faults caused 503s (${report.unavailableDuringFaults})`)
    t.ok(report.refreshesOk >= SESSIONS * 20, `many refreshes succeeded (${report.refreshesOk})`)
    t.ok(report.timeline.every((entry) => entry.recoveredAfter !== null), 'refreshes succeeded again after every fault')

    // The example logs an outage once, at error level when it starts (its end at warn), not a
    // line per 503: at most 2 error lines per fault. More 503s than error lines: not vacuous.
    const unavailable = Object.values(report.answers).flatMap((byKey) => Object.entries(byKey))
      .filter(([key]) => key.split(' ')[0] === '503').reduce((sum, [, n]) => sum + n, 0)
    t.ok(report.logs.errors <= 2 * report.timeline.length, `error log lines: ${report.logs.errors} for ${report.timeline.length} faults, at most 2 per fault`)
    t.ok(unavailable > report.logs.errors, `more 503 answers (${unavailable}) than error log lines (${report.logs.errors})`)

    t.ok(report.verdict.ok, `verdict: ${report.verdict.failures.join('; ') || 'ok'}`)
  })
}
