// `npm run chaos -- --seconds 180 [--store redis|postgres|both] [--grace 0|default|both]
// [--sessions 200] [--concurrency 16] [--store-timeout 1000] [--json FILE]`: the chaos run of
// test/chaos/run.ts for each chosen store and reuse-grace setting, one table per run, exit 1
// when any verdict fails (issue 9).
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { StoreKind } from '../test/chaos/faults.js'
import { type ChaosReport, formatReport } from '../test/chaos/report.js'
import { runChaos } from '../test/chaos/run.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '180' },
    store: { type: 'string', default: 'both' },
    grace: { type: 'string', default: 'both' },
    sessions: { type: 'string', default: '200' },
    concurrency: { type: 'string', default: '16' },
    'store-timeout': { type: 'string', default: '1000' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  }
})

if (values.help === true) {
  process.stdout.write('usage: node --import tsx scripts/chaos.ts --seconds 180 [--store redis|postgres|both] [--grace 0|default|both] [--sessions 200] [--concurrency 16] [--store-timeout 1000] [--json FILE]\n')
  process.exit(0)
}

function whole (name: string, raw: string, min: number): number {
  if (!/^\d+$/.test(raw) || Number(raw) < min) {
    process.stderr.write(`--${name} must be a whole number >= ${min}, got "${raw}"\n`)
    process.exit(2)
  }
  return Number(raw)
}

function choice<T extends string> (name: string, raw: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(raw)) {
    process.stderr.write(`--${name} must be one of ${allowed.join(', ')}, got "${raw}"\n`)
    process.exit(2)
  }
  return raw as T
}

const seconds = whole('seconds', values.seconds, 30)
const sessions = whole('sessions', values.sessions, 1)
const concurrency = whole('concurrency', values.concurrency, 1)
const storeTimeoutMs = whole('store-timeout', values['store-timeout'], 1)
const storeChoice = choice('store', values.store, ['redis', 'postgres', 'both'] as const)
const graceChoice = choice('grace', values.grace, ['0', 'default', 'both'] as const)
const stores: StoreKind[] = storeChoice === 'both' ? ['redis', 'postgres'] : [storeChoice]
const graces: Array<number | undefined> = graceChoice === 'both' ? [0, undefined] : graceChoice === '0' ? [0] : [undefined]

const log = (line: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`) }

const reports: ChaosReport[] = []
let failed = false
for (const store of stores) {
  for (const reuseGrace of graces) {
    log(`chaos run: ${store}, grace ${reuseGrace ?? 'default'}, ${seconds} s, ${sessions} sessions, ${concurrency} in flight`)
    try {
      const report = await runChaos({ store, seconds, sessions, concurrency, reuseGrace, storeTimeoutMs, progress: log })
      reports.push(report)
      process.stdout.write(`${formatReport(report)}\n\n`)
      if (!report.verdict.ok) failed = true
    } catch (error) {
      failed = true
      process.stdout.write(`== ${store}, REFRESH_REUSE_GRACE=${reuseGrace ?? 'default'}: the run itself failed: ${(error as Error).stack}\n\n`)
    }
  }
}
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(reports, null, 2))
process.stdout.write(`${reports.filter((report) => report.verdict.ok).length} of ${stores.length * graces.length} runs OK\n`)
process.exitCode = failed ? 1 : 0
