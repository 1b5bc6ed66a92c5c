// From the rounds' samples to the figures `npm run bench` prints: per scenario the medians over
// rounds, and every ratio as the median (min–max) of its per-round ratios, each round's ratio
// taken between two windows of that same round.
import { LABELS, TARGETS } from './config.js'
import type { Sample } from './load.js'
import type { Scenario } from './server/scenarios.js'

export interface Spread { median: number, min: number, max: number, rounds: number }

export interface ScenarioResult {
  scenario: Scenario
  label: string
  /** One per round, in round order. */
  samples: Sample[]
  requestsPerSecond: number
  p99Ms: number
  /** All rounds' server CPU over all their answers. */
  cpuMicrosPerRequest: number
  storeCpuMicrosPerRequest: number | null
  eventLoopUtilization: number
  ratioToBare: Spread | null
  prefilled?: { sessions: number, seconds: number }
  problems: string[]
}

export interface Ratio {
  name: string
  ratio: Spread
  /** The same ratio from CPU per answer (server + store server): what it would be if CPU alone were the limit. */
  cpuRatio: number
  target: number | null
  met: boolean | null
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

function spread (values: number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), rounds: values.length }
}

/** Per-round ratios of `top` to `bottom` (rounds both have). */
export function roundRatios (top: Sample[], bottom: Sample[]): Spread | null {
  const ratios = top.flatMap((sample, round) => {
    const other = bottom[round]
    return other === undefined || other.requestsPerSecond === 0 ? [] : [sample.requestsPerSecond / other.requestsPerSecond]
  })
  return ratios.length === 0 ? null : spread(ratios)
}

export function summarise (scenario: Scenario, samples: Sample[], bare: Sample[] | undefined): ScenarioResult {
  const responses = samples.reduce((sum, sample) => sum + sample.responses, 0)
  const weighted = (pick: (sample: Sample) => number) => samples.reduce((sum, sample) => sum + pick(sample) * sample.responses, 0) / Math.max(1, responses)
  const store = samples.every((sample) => sample.storeCpuMicrosPerRequest !== null) ? weighted((sample) => sample.storeCpuMicrosPerRequest!) : null
  return {
    scenario,
    label: LABELS[scenario],
    samples,
    requestsPerSecond: median(samples.map((sample) => sample.requestsPerSecond)),
    p99Ms: median(samples.map((sample) => sample.latencyMs.p99)),
    cpuMicrosPerRequest: weighted((sample) => sample.cpuMicrosPerRequest),
    storeCpuMicrosPerRequest: store,
    eventLoopUtilization: median(samples.map((sample) => sample.eventLoopUtilization)),
    ratioToBare: bare === undefined ? null : roundRatios(samples, bare),
    problems: samples.flatMap((sample, round) => sample.problems.map((problem) => `round ${round + 1}: ${problem}`))
  }
}

export function targetRatios (results: ScenarioResult[]): Ratio[] {
  const find = (scenario: Scenario) => results.find((result) => result.scenario === scenario)
  return TARGETS.flatMap(([numerator, denominator, target]) => {
    const top = find(numerator)
    const bottom = find(denominator)
    const ratio = top === undefined || bottom === undefined ? null : roundRatios(top.samples, bottom.samples)
    if (top === undefined || bottom === undefined || ratio === null) return []
    const cpuRatio = totalCpu(bottom) / totalCpu(top)
    return [{ name: `${numerator}/${denominator}`, ratio, cpuRatio, target, met: target === null ? null : ratio.median >= target }]
  })
}

function totalCpu (result: ScenarioResult): number {
  return result.cpuMicrosPerRequest + (result.storeCpuMicrosPerRequest ?? 0)
}

function formatSpread ({ median, min, max }: Spread): string {
  const digits = median >= 10 ? 1 : 2
  return `${median.toFixed(digits)} (${min.toFixed(digits)}–${max.toFixed(digits)})`
}

export function printTable (results: ScenarioResult[]): void {
  const rows = [
    ['scenario', 'req/s', 'p99 ms', 'server CPU µs/req', 'server ELU', 'store CPU µs/req', 'vs bare (min–max)'],
    ...results.map((result) => [
      `${result.scenario}: ${result.label}`,
      Math.round(result.requestsPerSecond).toLocaleString('en-US'),
      String(result.p99Ms),
      result.cpuMicrosPerRequest.toFixed(1),
      result.eventLoopUtilization.toFixed(2),
      result.storeCpuMicrosPerRequest === null ? '-' : result.storeCpuMicrosPerRequest.toFixed(1),
      result.ratioToBare === null ? '-' : formatSpread(result.ratioToBare)
    ])
  ]
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  console.log('\nMedians over rounds (req/s, p99, ELU); CPU over all rounds; ratio: median of per-round ratios')
  for (const [index, row] of rows.entries()) {
    console.log(row.map((cell, column) => column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)).join('  '))
    if (index === 0) console.log(widths.map((width) => '-'.repeat(width)).join('  '))
  }
  const bare = results.find((result) => result.scenario === 'bare')
  if (bare !== undefined && bare.eventLoopUtilization < 0.9) {
    console.log(`NOTE: bare's server was not saturated (ELU ${bare.eventLoopUtilization.toFixed(2)}): the client or other processes on the ` +
      'machine were the limit, so ratios to bare overstate; CPU µs/req (in brackets below) is the steadier figure. Re-run on a quieter machine.')
  }
  for (const { scenario, prefilled } of results) {
    if (prefilled !== undefined) console.log(`(${scenario}: ${prefilled.sessions} sessions prefilled in ${prefilled.seconds.toFixed(1)} s)`)
  }
}

export function printTargets (ratios: Ratio[], skipped: Array<{ scenario: string, reason: string }>): void {
  console.log('\nTargets (median of per-round req/s ratios, min–max; in brackets the ratio of CPU µs per request, server + store server)')
  for (const { name, ratio, cpuRatio, target, met } of ratios) {
    const verdict = target === null ? '(reported)' : `target >= ${target.toFixed(2)}  ${met === true ? 'PASS' : 'FAIL'}`
    console.log(`  ${name.padEnd(32)} ${formatSpread(ratio).padEnd(22)} [${cpuRatio.toFixed(2)}]  ${verdict}`)
  }
  for (const [numerator, denominator, target] of TARGETS) {
    const missing = [numerator, denominator].find((scenario) => skipped.some((skip) => skip.scenario === scenario))
    if (missing !== undefined && target !== null) console.log(`  ${`${numerator}/${denominator}`.padEnd(32)} SKIPPED (${missing} skipped, see below)`)
  }
}
