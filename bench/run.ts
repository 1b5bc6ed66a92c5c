// `npm run bench`: what a user of the package gets, measured from outside. Every scenario's server
// runs in its own process (bench/server/), on the packed package installed into a temporary
// consumer project (bench/install.ts), and is loaded by autocannon from this process over
// loopback. All servers run at once; each round loads every scenario once, in order, and each
// ratio is taken per round (to that round's bare) and reported as the median over rounds.
// The scenarios: bench/server/baselines.ts and bench/server/plugin-scenarios.ts; the environment
// variables: bench/config.ts; then session-memory, bytes per stored session (bench/memory.ts).
// A scenario whose Redis or PostgreSQL is unreachable is reported as skipped; the run goes on.
import { writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { CONNECTIONS, DURATION, ONLY, OUT, ROUNDS, SOURCE, WARMUP } from './config.js'
import { prepare, type Prepared } from './install.js'
import { checkGet, checkRefresh, loadGet, loadGetWithProofs, loadRefresh, type Sample } from './load.js'
import { printTable, printTargets, type ScenarioResult, summarise, targetRatios } from './report.js'
import { measureSessionMemory, printSessionMemory } from './session-memory.js'
import { isRefresh, type Scenario, SCENARIOS, usesProofs } from './server/scenarios.js'
import { children, type Server, startServer } from './spawn.js'

/** Refresh tokens the refresh warm-up spends; its rate sizes round 1. */
const REFRESH_WARMUP_TOKENS = Math.max(3000, CONNECTIONS * 20)
/** Tokens per IPC message from a server. */
const ISSUE_BATCH = 10_000

interface Loaded { server: Server, samples: Sample[], rate: number, problems: string[] }

async function main (): Promise<void> {
  const loadBefore = loadavg()
  const started = performance.now()
  const scenarios = SCENARIOS.filter((scenario) => (ONLY as readonly string[]).includes(scenario))
  log(`fastify-token-auth benchmark: node ${process.version}, ${availableParallelism()} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), ` +
    `${CONNECTIONS} connections, ${ROUNDS} rounds × ${DURATION} s per scenario after ${WARMUP} s warm-up, loopback; load average ${formatLoad(loadBefore)}`)
  const skipped: Array<{ scenario: Scenario, reason: string }> = []
  const loaded = new Map<Scenario, Loaded>()
  let prepared: Prepared | undefined
  try {
    if (scenarios.length > 0) {
      prepared = await prepare(SOURCE, log)
      log(`servers: ${prepared.description}`)
    }
    for (const scenario of scenarios) {
      const server = await startServer(scenario, prepared!, log)
      if ('skipped' in server) {
        log(`${scenario}: SKIPPED, ${server.skipped}`)
        skipped.push({ scenario, reason: server.skipped })
      } else {
        loaded.set(scenario, { server, samples: [], rate: 0, problems: [] })
      }
    }
    for (const entry of loaded.values()) await warmUp(entry)
    for (let round = 1; round <= ROUNDS; round++) {
      for (const entry of loaded.values()) {
        if (entry.problems.length > 0) continue
        const sample = await measure(entry)
        entry.samples.push(sample)
        entry.rate = sample.requestsPerSecond
        log(`round ${round}/${ROUNDS} ${entry.server.scenario}: ${Math.round(sample.requestsPerSecond)} req/s, ` +
          `${sample.cpuMicrosPerRequest.toFixed(1)} µs CPU/req${sample.problems.length > 0 ? `; ${sample.problems.join('; ')}` : ''}`)
      }
    }
  } finally {
    await Promise.all([...loaded.values()].map(async ({ server }) => await server.stop()))
    await prepared?.dispose()
  }

  const bare = loaded.get('bare')?.samples
  const results: ScenarioResult[] = [...loaded.values()].map(({ server, samples, problems }) => {
    const result = summarise(server.scenario, samples, bare)
    result.problems.unshift(...problems)
    if (server.prefilled !== undefined) result.prefilled = server.prefilled
    return result
  })
  const measured = results.filter((result) => result.samples.length > 0)
  printTable(measured)
  const ratios = targetRatios(measured)
  printTargets(ratios, skipped)
  let sessionMemory
  let memoryTargets: ReturnType<typeof printSessionMemory> = []
  const memoryFailed = ONLY.includes('session-memory') && (sessionMemory = await measureSessionMemory(log)) === undefined
  if (sessionMemory !== undefined) memoryTargets = printSessionMemory(sessionMemory)
  for (const { scenario, reason } of skipped) console.log(`\nSKIPPED ${scenario}: ${reason}`)
  const invalid = results.filter((result) => result.problems.length > 0)
  for (const result of invalid) console.log(`\nINVALID ${result.scenario}: ${result.problems.join('; ')}`)
  if (memoryFailed) console.log('\nFAILED session-memory: see its error above')
  const loadAfter = loadavg()
  const seconds = (performance.now() - started) / 1000
  console.log(`\nservers: ${prepared?.description ?? '-'}`)
  console.log(`${seconds.toFixed(0)} s in all; load average before ${formatLoad(loadBefore)}, after ${formatLoad(loadAfter)}`)

  if (OUT !== undefined) {
    const path = resolve(OUT)
    await writeFile(path, JSON.stringify({
      date: new Date().toISOString(),
      node: process.version,
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? null,
      loadAverage: { before: loadBefore, after: loadAfter },
      source: SOURCE,
      seconds,
      connections: CONNECTIONS,
      rounds: ROUNDS,
      durationSeconds: DURATION,
      warmupSeconds: WARMUP,
      results,
      ratios,
      skipped,
      sessionMemory: sessionMemory ?? null,
      sessionMemoryTargets: memoryTargets
    }, null, 2) + '\n')
    log(`results written to ${path}`)
  }
  if (invalid.length > 0 || memoryFailed) process.exitCode = 1
}

/**
 * One request by hand, then unmeasured load: WARMUP s of GET, or REFRESH_WARMUP_TOKENS refreshes
 * or proofs (whose rate sizes round 1).
 */
async function warmUp (entry: Loaded): Promise<void> {
  const { server } = entry
  if (isRefresh(server.scenario)) {
    await checkRefresh(server)
    const warm = await loadRefresh(server, await issue(server, REFRESH_WARMUP_TOKENS))
    entry.rate = warm.requestsPerSecond
    entry.problems.push(...warm.problems.map((problem) => `warm-up: ${problem}`))
  } else if (usesProofs(server.scenario)) {
    await checkGet(server)
    const warm = await loadGetWithProofs(server, await issue(server, REFRESH_WARMUP_TOKENS))
    entry.rate = warm.requestsPerSecond
    entry.problems.push(...warm.problems.map((problem) => `warm-up: ${problem}`))
  } else {
    await checkGet(server)
    if (WARMUP > 0) entry.problems.push(...(await loadGet(server, WARMUP)).problems.map((problem) => `warm-up: ${problem}`))
  }
  log(`${server.scenario}: warmed up`)
}

/**
 * One round's window. A refresh or DPoP window spends single-use tokens (or proofs) issued just
 * before (outside the window), as many as the last window's rate would answer in about
 * BENCH_DURATION seconds.
 */
async function measure ({ server, rate }: Loaded): Promise<Sample> {
  const singleUse = isRefresh(server.scenario) || usesProofs(server.scenario)
  if (!singleUse) return await loadGet(server, DURATION)
  const count = Math.max(CONNECTIONS * 10, Math.ceil(rate * DURATION * 1.1))
  const issued = await issue(server, count)
  return isRefresh(server.scenario) ? await loadRefresh(server, issued) : await loadGetWithProofs(server, issued)
}

async function issue (server: Server, count: number): Promise<string[]> {
  const tokens: string[] = []
  for (let left = count; left > 0; left -= ISSUE_BATCH) tokens.push(...await server.issue(Math.min(left, ISSUE_BATCH)))
  return tokens
}

function formatLoad (load: number[]): string {
  return load.map((value) => value.toFixed(2)).join(' ')
}

function log (message: string): void {
  process.stderr.write(`${message}\n`)
}

main().catch((error: unknown) => {
  console.error(error)
  // A server left running would keep this process alive (stdout pipe, IPC channel).
  for (const child of children) child.kill('SIGKILL')
  process.exitCode = 1
})
