// Checks the capacity model (scripts/capacity/model.ts) against a small fleet:
//   node --import tsx bench/capacity-check.ts
// Two plugin instances, separate Node processes (bench/capacity-server.ts), share one
// Redis under the key prefix `fta-capacity:check-<run>:` (deleted at the end). Both are loaded at
// the same time and at fixed rates (autocannon `overallRate`): refreshes and protected requests
// on each. Measured over the window: each instance's CPU (its process.cpuUsage()), Redis's CPU
// (INFO cpu) and commands (INFO commandstats, INFO itself left out); predicted: the model's
// figures for the rates achieved, from the costs file. Then revocation: revoke a session on
// instance A and time until instance B answers 401 to its access token; first with the store's
// push (pub/sub), then with B polling only (push hidden, revocationPollInterval
// CAPACITY_CHECK_POLL_MS), each against the model's bound.
// Env: CAPACITY_CHECK_SECONDS (default 10), CAPACITY_CHECK_REFRESH_RATE and
// CAPACITY_CHECK_PROTECTED_RATE (per instance per second; defaults 400 and 2000, the rates bench/capacity-costs.ts measures at),
// CAPACITY_CHECK_ROUNDS (load windows, default 3; medians reported), CAPACITY_CHECK_TRIALS
// (revocations per mode, default 10), CAPACITY_CHECK_POLL_MS (default 1000),
// CAPACITY_COSTS (default docs/capacity-costs.json), REDIS_URL, BENCH_REDIS_DB.
import autocannon, { type Options, type Result } from 'autocannon'
import { readFile } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { costsFromFile, type CostsFile, DEFAULT_FLEET, type Fleet, nodePlan, redisPlan, revocationBound, type Workload } from '../scripts/capacity/model.js'
import { type CapacityServer, log, median, redisDelta, redisStats, runId, startCapacityServer } from './capacity-costs.js'
import { connectRedis, deleteRedisPrefix } from './server/stores.js'
import type { RedisClientType } from 'redis'
import type { Usage } from './spawn.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const SECONDS = Number(process.env.CAPACITY_CHECK_SECONDS ?? 10)
const REFRESH_RATE = Number(process.env.CAPACITY_CHECK_REFRESH_RATE ?? 400)
const PROTECTED_RATE = Number(process.env.CAPACITY_CHECK_PROTECTED_RATE ?? 2000)
const TRIALS = Number(process.env.CAPACITY_CHECK_TRIALS ?? 10)
const ROUNDS = Number(process.env.CAPACITY_CHECK_ROUNDS ?? 3)
const POLL_MS = Number(process.env.CAPACITY_CHECK_POLL_MS ?? 1000)
const COSTS = resolve(process.env.CAPACITY_COSTS ?? join(root, 'docs', 'capacity-costs.json'))

/** autocannon at a fixed overall rate: `amount` requests, or for `duration` s. */
async function fire (options: Options, overallRate: number): Promise<{ result: Result, responses: number, last: number }> {
  let responses = 0
  let last = 0
  const all: Options & { overallRate: number } = { connections: 8, pipelining: 1, timeout: 10, ...options, overallRate }
  const instance = autocannon(all)
  instance.on('response', () => { responses++; last = performance.now() })
  const result = await instance
  return { result, responses, last }
}

function refreshRequests (tokens: string[]): Options['requests'] {
  let next = 0
  return [{
    method: 'POST',
    path: '/auth/refresh',
    setupRequest: (request) => ({ ...request, headers: { ...request.headers, cookie: `refresh_token=${tokens[next++] ?? 'exhausted'}` } })
  }]
}

function cpuUs (before: Usage, after: Usage): number {
  return after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system
}

/** Milliseconds from asking A to revoke until B first answers 401 to the session's access token. */
async function propagation (a: CapacityServer, b: CapacityServer, user: string, randomPhaseMs = 0): Promise<number> {
  const session = await a.session(user)
  // Each trial ends just after a poll found the revocation; without a random pause the next one
  // would always start right after a poll and wait the whole interval.
  if (randomPhaseMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * randomPhaseMs))
  const get = async () => (await fetch(`${b.url}/me`, { headers: { authorization: `Bearer ${session.accessToken}` } })).status
  if (await get() !== 200) throw new Error('B refused a fresh access token')
  const start = performance.now()
  // Settled into a value, so a failure while B is being asked is not an unhandled rejection.
  const revoking = a.revoke(session.sessionId).then((revoked) => ({ revoked }), (error: unknown) => ({ revoked: false, error }))
  for (;;) {
    const status = await get()
    if (status === 401) break
    if (status !== 200) throw new Error(`B answered ${status}`)
    if (performance.now() - start > 60_000) throw new Error('B still accepts the token after 60 s')
  }
  const ms = performance.now() - start
  const outcome: { revoked: boolean, error?: unknown } = await revoking
  if (outcome.error !== undefined) throw outcome.error
  if (!outcome.revoked) throw new Error('A found no session to revoke')
  return ms
}

/** One window: both instances loaded at once, refreshes and GET /me on each; their CPU and Redis's over it. */
async function loadWindow (a: CapacityServer, b: CapacityServer, redis: RedisClientType) {
  const count = Math.round(REFRESH_RATE * SECONDS)
  const tokensA = await a.issue(count)
  const tokensB = await b.issue(count)
  const usageBefore = [await a.usage(), await b.usage()] as const
  const redisBefore = await redisStats(redis)
  const start = performance.now()
  const runs = await Promise.all([
    fire({ url: a.url, amount: count, requests: refreshRequests(tokensA) }, REFRESH_RATE),
    fire({ url: b.url, amount: count, requests: refreshRequests(tokensB) }, REFRESH_RATE),
    fire({ url: `${a.url}/me`, headers: { authorization: `Bearer ${a.token!}` }, duration: SECONDS }, PROTECTED_RATE),
    fire({ url: `${b.url}/me`, headers: { authorization: `Bearer ${b.token!}` }, duration: SECONDS }, PROTECTED_RATE)
  ] as const)
  const seconds = (Math.max(...runs.map((run) => run.last)) - start) / 1000
  const redisAfter = await redisStats(redis)
  const usageAfter = [await a.usage(), await b.usage()] as const
  for (const [i, run] of runs.entries()) {
    if (run.result.non2xx > 0 || run.result.errors > 0) throw new Error(`load ${i}: ${run.result.non2xx} non-2xx, ${run.result.errors} errors`)
  }
  return { runs, seconds, redisUsed: redisDelta(redisBefore, redisAfter), cpu: [cpuUs(usageBefore[0], usageAfter[0]), cpuUs(usageBefore[1], usageAfter[1])] as const }
}

async function main (): Promise<void> {
  const file = JSON.parse(await readFile(COSTS, 'utf8')) as CostsFile
  const costs = costsFromFile(file)
  const redis = await connectRedis()
  if ('unreachable' in redis) throw new Error(redis.unreachable)
  const prefix = `fta-capacity:check-${runId()}:`
  const servers: CapacityServer[] = []
  try {
    const a = await startCapacityServer({ store: 'redis', prefix })
    const b = await startCapacityServer({ store: 'redis', prefix })
    servers.push(a, b)
    log(`two instances on Redis (prefix ${prefix}): A pid ${a.pid}, B pid ${b.pid}`)
    // Warm-up: JIT and connections, unmeasured.
    for (const server of [a, b]) {
      await fire({ url: `${server.url}/me`, headers: { authorization: `Bearer ${server.token!}` }, duration: 1 }, PROTECTED_RATE)
      const tokens = await server.issue(REFRESH_RATE)
      await fire({ url: server.url, amount: tokens.length, requests: refreshRequests(tokens) }, REFRESH_RATE)
    }
    log(`load: ${ROUNDS} rounds of ${SECONDS} s, per instance ${REFRESH_RATE} refreshes/s and ${PROTECTED_RATE} GET /me/s`)
    const names = ['instance A CPU (cores)', 'instance B CPU (cores)', 'both instances CPU (cores)', 'Redis commands/s', 'Redis CPU (cores)']
    const predicted: number[][] = names.map(() => [])
    const measured: number[][] = names.map(() => [])
    const rates: Array<[number, number]> = []
    let byCommand = ''
    for (let round = 0; round < ROUNDS; round++) {
      const window = await loadWindow(a, b, redis)
      const { runs, seconds, redisUsed } = window
      const refreshes = runs[0].responses + runs[1].responses
      const gets = runs[2].responses + runs[3].responses
      rates.push([refreshes / seconds, gets / seconds])
      // The model on the rates achieved: no logins, no sweep (the instances' sweepInterval is an hour).
      const workload: Workload = { sessions: 0, refreshesPerSecond: refreshes / seconds, protectedPerSecond: gets / seconds, loginsPerSecond: 0, sessionsPerUser: 1 }
      const fleet: Fleet = { ...DEFAULT_FLEET, store: 'redis', sweepIntervalMs: Infinity }
      const predictedRedis = redisPlan(costs, workload, fleet, 2)
      const perInstance = (refreshRun: { responses: number }, getRun: { responses: number }) =>
        (refreshRun.responses * costs.nodeCpuUsPerRefresh.redis + getRun.responses * costs.nodeCpuUsPerProtected) / 1e6 / seconds
      const row = [
        [perInstance(runs[0], runs[2]), window.cpu[0] / 1e6 / seconds],
        [perInstance(runs[1], runs[3]), window.cpu[1] / 1e6 / seconds],
        [nodePlan(costs, workload, fleet).cpuCores, (window.cpu[0] + window.cpu[1]) / 1e6 / seconds],
        [predictedRedis.commandsPerSecond, redisUsed.commands / seconds],
        [predictedRedis.cpuCores, redisUsed.cpuUs / 1e6 / seconds]
      ]
      for (const [i, [p, m]] of row.entries()) {
        predicted[i]!.push(p!)
        measured[i]!.push(m!)
      }
      byCommand = Object.entries(redisUsed.byCommand).map(([name, calls]) => `${name} ${(calls / seconds).toFixed(0)}`).join(', ')
      log(`round ${round + 1}/${ROUNDS}: ${names.map((name, i) => `${name} ${row[i]![0]!.toFixed(3)} / ${row[i]![1]!.toFixed(3)}`).join('; ')}`)
    }
    console.log(`\nCapacity check: 2 instances sharing one Redis, ${ROUNDS} rounds of ${SECONDS} s, each at (median) ` +
      `${median(rates.map(([r]) => r)).toFixed(0)} refreshes/s and ${median(rates.map(([, g]) => g)).toFixed(0)} GET /me/s in all ` +
      `(asked: ${2 * REFRESH_RATE} and ${2 * PROTECTED_RATE}); costs ${relative(process.cwd(), COSTS)}. Medians over rounds; meas/pred is the median of the rounds' ratios.`)
    console.log(`  ${'figure'.padEnd(28)} ${'predicted'.padStart(10)} ${'measured'.padStart(10)} ${'meas/pred'.padStart(9)}  ratio per round`)
    for (const [i, name] of names.entries()) {
      const ratios = measured[i]!.map((m, round) => m / predicted[i]![round]!)
      console.log(`  ${name.padEnd(28)} ${median(predicted[i]!).toFixed(3).padStart(10)} ${median(measured[i]!).toFixed(3).padStart(10)} ` +
        `${median(ratios).toFixed(2).padStart(9)}  ${ratios.map((r) => r.toFixed(2)).join(' ')}`)
    }
    console.log(`  Redis commands/s by command (last round; commands run by scripts count too): ${byCommand}`)
    console.log('  Redis CPU is the whole server\'s (INFO cpu): other clients count too.')

    // Revocation, pushed: B hears it on its subscription.
    const pushed: number[] = []
    for (let i = 0; i < TRIALS; i++) pushed.push(await propagation(a, b, `revoke-push-${i}`))
    const pushBound = revocationBound({ push: true, pollIntervalMs: DEFAULT_FLEET.revocationPollIntervalMs, storeTimeoutMs: DEFAULT_FLEET.storeTimeoutMs })
    // Revocation, polled: a third instance C with the push hidden and a short poll interval.
    const c = await startCapacityServer({ store: 'redis', prefix, push: false, pollIntervalMs: POLL_MS })
    servers.push(c)
    const polled: number[] = []
    for (let i = 0; i < TRIALS; i++) polled.push(await propagation(a, c, `revoke-poll-${i}`, POLL_MS))
    const pollBound = revocationBound({ push: false, pollIntervalMs: POLL_MS, storeTimeoutMs: DEFAULT_FLEET.storeTimeoutMs })
    const ms = (values: number[]) => `median ${median(values).toFixed(1)} ms, max ${Math.max(...values).toFixed(1)} ms`
    console.log(`\nRevocation on A until the other instance answers 401 (${TRIALS} trials each; includes A's revoke call and one GET round trip):`)
    console.log(`  pushed (pub/sub), B polling every ${DEFAULT_FLEET.revocationPollIntervalMs} ms: ${ms(pushed)}; model: typically one store hop, ` +
      `bound ${pushBound.boundMs} ms if the push is lost`)
    console.log(`  polled only, C polling every ${POLL_MS} ms: ${ms(polled)}; model: typically ${pollBound.typicalMs} ms, ` +
      `bound ${pollBound.boundMs} ms (${POLL_MS} ms interval + a read, at most storeTimeout ${DEFAULT_FLEET.storeTimeoutMs} ms)`)
    console.log(`  samples pushed: ${pushed.map((value) => value.toFixed(1)).join(', ')}`)
    console.log(`  samples polled: ${polled.map((value) => value.toFixed(0)).join(', ')}`)
  } finally {
    for (const server of servers) await server.stop()
    const deleted = await deleteRedisPrefix(redis, prefix)
    log(`clean-up: ${deleted} keys under ${prefix} deleted`)
    await redis.close()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
