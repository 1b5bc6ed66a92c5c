import type { ExampleReport, LogReport } from './example.js'
import type { StoreKind, TimelineEntry } from './faults.js'
import type { LoadCounts } from './load.js'
import { round } from './round.js'
import type { RssReport } from './rss.js'

/*
 * What a chaos run found: the report (its parts come from load.ts, example.ts, rss.ts and
 * faults.ts), the verdict on it, and a readable table of it.
 */

/** Allowed RSS growth after warm-up. */
export const RSS_GROWTH_LIMIT = 0.10

export interface ChaosReport extends LoadCounts {
  store: StoreKind
  reuseGrace: number | 'default'
  storeTimeoutMs: number
  seconds: number
  sessions: number
  concurrency: number
  refreshesOk: number
  /** 503s answered to refreshes sent during a fault window. */
  unavailableDuringFaults: number
  sessionsLost: number
  /** Of the lost: answered 401/403 (or another 4xx) at some point. */
  sessionsLostByAnswer: number
  /** Of the lost: no 401/403, but no 200 either at the final check. */
  sessionsLostNoFinalOk: number
  example: ExampleReport
  rss: RssReport
  requestsPerSecond: number
  refreshesPerSecond: number
  loadSeconds: number
  finalCheckSeconds: number
  timeline: TimelineEntry[]
  logs: LogReport
  verdict: { ok: boolean, failures: string[] }
}

/** Why the run failed, if it did: each broken promise of "a 503 never costs a session", a crash, a leak. */
export function verdictOf (report: Omit<ChaosReport, 'verdict'>): ChaosReport['verdict'] {
  const failures: string[] = []
  if (report.sessionsLost > 0) failures.push(`${report.sessionsLost} session(s) lost (${report.sessionsLostByAnswer} answered 4xx: ${JSON.stringify(report.lostCodes)}; ${report.sessionsLostNoFinalOk} without a final 200)`)
  if (report.serverErrors > 0) failures.push(`${report.serverErrors} 5xx other than 503`)
  if (report.unavailableWithoutRetryAfter > 0) failures.push(`${report.unavailableWithoutRetryAfter} 503 without Retry-After`)
  if (report.unavailableWithCookie > 0) failures.push(`${report.unavailableWithCookie} 503 with a Set-Cookie of the refresh cookie`)
  if (report.meFailures > 0) failures.push(`${report.meFailures} GET /me not 200`)
  const { crashed, exitCode, signal } = report.example
  if (crashed) failures.push(`the example exited during the run (code ${exitCode}, signal ${signal})`)
  // A crashed example has no end reading; the crash is the failure.
  if (!crashed && !(report.rss.growth <= RSS_GROWTH_LIMIT)) failures.push(`RSS grew ${round(report.rss.growth * 100)} % after warm-up (${report.rss.afterWarmup} -> ${report.rss.atEnd} MiB)`)
  return { ok: failures.length === 0, failures }
}

function table (rows: Array<[string, string | number]>): string {
  const width = Math.max(...rows.map(([label]) => label.length))
  return rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`).join('\n')
}

/** The report as a readable table, the fault timeline and the most frequent warn/error log lines. */
export function formatReport (report: ChaosReport): string {
  const counts = (record: Record<string, number>): string =>
    Object.entries(record).sort((a, b) => b[1] - a[1]).map(([key, n]) => `${key}: ${n}`).join(', ') || '-'
  const lines = [
    `== ${report.store}, REFRESH_REUSE_GRACE=${report.reuseGrace}, STORE_TIMEOUT_MS=${report.storeTimeoutMs}: ${report.verdict.ok ? 'OK' : 'FAIL'}`,
    table([
      ['load / final check', `${report.loadSeconds} s / ${report.finalCheckSeconds} s, ${report.sessions} sessions, ${report.concurrency} in flight`],
      ['requests/s (refresh/s)', `${report.requestsPerSecond} (${report.refreshesPerSecond})`],
      ['refresh answers', counts(report.answers.refresh)],
      ['GET /me answers', counts(report.answers.me)],
      ['login answers', counts(report.answers.login)],
      ['503 in faults / warm-up / final', `${report.unavailableDuringFaults} / ${report.unavailableInWarmup} / ${report.unavailableInFinalCheck}`],
      ['sessions lost', `${report.sessionsLost} (4xx: ${report.sessionsLostByAnswer} ${counts(report.lostCodes)}; no final 200: ${report.sessionsLostNoFinalOk})`],
      ['5xx other than 503', report.serverErrors],
      ['503 without Retry-After', report.unavailableWithoutRetryAfter],
      ['GET /me not 200', report.meFailures],
      ['network errors', report.networkErrors],
      ['200 without cookie', report.okWithoutCookie],
      ['503 with Set-Cookie', report.unavailableWithCookie],
      ['example crashed', report.example.crashed ? `yes, at ${report.example.exitedAt} s (code ${report.example.exitCode}, signal ${report.example.signal})` : 'no'],
      ['example shutdown', report.example.shutdown],
      ['RSS MiB warm-up -> end', `${report.rss.afterWarmup} -> ${report.rss.atEnd} (${(report.rss.growth * 100).toFixed(1)} %, ${report.rss.method}; heap ${report.rss.heapAfterWarmup} -> ${report.rss.heapAtEnd}; max ${report.rss.max})`],
      ['log lines by level', counts(report.logs.byLevel)],
      ['error lines (with err.stack)', `${report.logs.errors} (${report.logs.errorsWithStack})`]
    ]),
    '  timeline (s after load start):',
    ...report.timeline.map((entry) =>
      `    ${String(entry.start).padStart(6)} -> ${String(entry.end).padEnd(6)} ${entry.kind.padEnd(31)} ok ${entry.refreshOk}, 503 ${entry.refreshUnavailable}, lost ${entry.sessionsLost}, ` +
      `first 200 ${entry.recoveredAfter === null ? 'never' : `${entry.recoveredAfter} s`} after; ${entry.detail}`),
    '  top warn/error log lines:',
    ...Object.entries(report.logs.top).map(([line, n]) => `    ${String(n).padStart(6)}  ${line}`)
  ]
  if (report.example.crashed) lines.push('  example stderr:', ...report.example.stderr.split('\n').map((line) => `    ${line}`))
  if (!report.verdict.ok) lines.push('  FAILURES:', ...report.verdict.failures.map((failure) => `    - ${failure}`))
  return lines.join('\n')
}
