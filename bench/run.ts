// `npm run bench`: requests per second of servers each in its own process (bench/server.ts),
// loaded by autocannon from this one over loopback, then memory per stored session.
//   bare              GET /hello, plain Fastify
//   diy               GET /hello behind a hand-written @fastify/jwt `onRequest: req.jwtVerify()` hook
//   protected         GET /hello behind the plugin's `app.authenticate`
//   protected-eddsa   the same with an Ed25519 access-token key (accessTokenKeys)
//   refresh           POST /auth/refresh, every request with a fresh, never-used refresh token
//                     (MemoryStore, holding only the sessions the run issues)
//   refresh-1m        the same with 1 000 000 more sessions in the MemoryStore
//   refresh-redis     the same on a RedisStore (REDIS_URL, default redis://127.0.0.1:6379)
//   refresh-redis-1m  the same with 1 000 000 more sessions in Redis (skipped if loading them
//                     takes over BENCH_PREFILL_TIMEOUT s, default 60)
//   refresh-postgres  the same on a PostgresStore (DATABASE_URL, default
//                     postgres://postgres@127.0.0.1:5432/test)
//   session-memory    bytes per stored session: MemoryStore heap, Redis MEMORY USAGE (bench/memory.ts)
// A scenario whose Redis or PostgreSQL is unreachable is reported as skipped; the run goes on.
// Environment: BENCH_DURATION (s per scenario, default 5), BENCH_CONNECTIONS (default 50),
// BENCH_WARMUP (s of unmeasured load first, default 1), BENCH_ONLY (comma-separated scenarios),
// BENCH_OUT (write the results there as JSON), BENCH_CPU_PROF (a directory: profile each server
// with `node --cpu-prof` into <dir>/<scenario>/; the main thread's file is the one named CPU.*.0.*),
// BENCH_CPU_PROF_INTERVAL (its sampling interval in µs, default 1000), BENCH_PREFILL_SESSIONS
// (default 1000000), BENCH_PREFILL_TIMEOUT (s, default 60), BENCH_REDIS_DB (default 15; see
// bench/stores.ts), BENCH_REDIS_NO_COMMAND_TIMEOUT=1 (the measured RedisStore's node-redis client
// without its default 5 s per-command timeout, which costs CPU on every command), and those of
// bench/memory.ts. The store CPU column reads the whole redis-server (INFO cpu): other clients of
// a shared Redis count too.
import autocannon, { type Options, type Result } from 'autocannon'
import { type ChildProcess, spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { MemoryStoreFigure, RedisFigure, SessionMemory } from './memory.js'
import { SCENARIOS, type Scenario } from './scenarios.js'

/** What BENCH_ONLY can pick, in the order they run. */
const STEPS = [...SCENARIOS, 'session-memory'] as const
type Step = typeof STEPS[number]

const LABELS: Record<Scenario, string> = {
  bare: 'bare Fastify GET /hello',
  diy: 'DIY @fastify/jwt hook',
  protected: 'plugin authenticate',
  'protected-eddsa': 'plugin authenticate, EdDSA key',
  refresh: 'plugin POST /auth/refresh, memory',
  'refresh-1m': 'the same, memory + 1M sessions',
  'refresh-redis': 'the same, Redis',
  'refresh-redis-1m': 'the same, Redis + 1M sessions',
  'refresh-postgres': 'the same, PostgreSQL'
}

/** The targets of the issues: [numerator, denominator, minimum, or null: reported only]. */
const TARGETS: Array<[Scenario, Scenario, number | null]> = [
  ['protected', 'bare', 0.85],
  ['protected', 'diy', 1.0],
  ['protected-eddsa', 'bare', 0.85],
  ['refresh', 'bare', 0.30],
  ['refresh-redis', 'refresh', 0.75],
  ['refresh-postgres', 'refresh', null],
  ['refresh-1m', 'refresh', 0.9],
  ['refresh-redis-1m', 'refresh-redis', 0.9]
]

/** Most bytes a stored session may take, in the MemoryStore's heap and in Redis. */
const SESSION_BYTES_TARGET = 300

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')

const DURATION = numberFromEnv('BENCH_DURATION', 5, 0.5)
const CONNECTIONS = numberFromEnv('BENCH_CONNECTIONS', 50, 1, true)
const WARMUP = numberFromEnv('BENCH_WARMUP', 1, 0)
const OUT = process.env.BENCH_OUT
const CPU_PROF = process.env.BENCH_CPU_PROF
const CPU_PROF_INTERVAL = numberFromEnv('BENCH_CPU_PROF_INTERVAL', 1000, 1, true)
const ONLY = selectedSteps(process.env.BENCH_ONLY)
const PREFILL_TIMEOUT = numberFromEnv('BENCH_PREFILL_TIMEOUT', 60, 0)
/** Refresh tokens the refresh warm-up spends; its rate sizes the measured run. */
const REFRESH_WARMUP_TOKENS = Math.max(3000, CONNECTIONS * 20)
/** Tokens per IPC message from the server. */
const ISSUE_BATCH = 10_000

interface Measurement {
  scenario: Scenario
  label: string
  /** Answers per second: responses / (last response - start), the same for timed and counted runs. */
  requestsPerSecond: number
  /** autocannon's own mean of its one-second samples (skewed by the last partial sample of a counted run). */
  autocannonAverage: number
  responses: number
  seconds: number
  latencyMs: { mean: number, p50: number, p90: number, p99: number, max: number }
  /**
   * The server process during the run: CPU time (user + system, all threads) per answer, and its
   * event-loop utilisation (1 = saturated, so the server, not autocannon, was the limit). CPU per
   * answer barely moves when other processes compete for the cores; req/s does.
   * `storeCpuMicrosPerRequest`: the same for the Redis or PostgreSQL server (the whole redis-server,
   * or this run's PostgreSQL backends); null for the memory store. `gcShare`: the share of the run's
   * wall time the server spent in GC pauses; `majorGcs`: how many of those were mark-compacts.
   */
  server: {
    cpuMicrosPerRequest: number
    eventLoopUtilization: number
    gcShare: number
    majorGcs: number
    storeCpuMicrosPerRequest: number | null
  }
  non2xx: number
  errors: number
  timeouts: number
  statusCodes: Record<string, number>
  /** Refresh only: tokens issued for the measured run and how many requests spent one. */
  refreshTokens?: { issued: number, used: number, issueSeconds: number }
  /** *-1m only: sessions put in the store before the server listened, and how long that took. */
  prefilled?: { sessions: number, seconds: number }
  valid: boolean
  problems: string[]
}

interface Usage {
  cpu: { user: number, system: number }
  elu: { idle: number, active: number }
  gc: { ms: number, major: number }
  store: number | null
}

interface Server {
  scenario: Scenario
  url: string
  token: string | undefined
  prefilled: { sessions: number, seconds: number } | undefined
  issue (count: number): Promise<string[]>
  usage (): Promise<Usage>
  stop (): Promise<void>
}

const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

async function main (): Promise<void> {
  const cores = availableParallelism()
  const loadBefore = loadavg()
  const started = performance.now()
  log(`fastify-token-auth benchmark: node ${process.version}, ${cores} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), ` +
    `${CONNECTIONS} connections, ${WARMUP} s warm-up + ${DURATION} s per scenario, loopback; ` +
    `load average ${formatLoad(loadBefore)}`)
  const results: Measurement[] = []
  const skipped: Array<{ scenario: Step, reason: string }> = []
  let sessionMemory: SessionMemory | undefined
  let memoryFailed = false
  for (const step of ONLY) {
    if (step === 'session-memory') {
      sessionMemory = await measureSessionMemory()
      memoryFailed = sessionMemory === undefined
      continue
    }
    const server = await startServer(step)
    if ('skipped' in server) {
      log(`${step}: SKIPPED, ${server.skipped}`)
      skipped.push({ scenario: step, reason: server.skipped })
      continue
    }
    try {
      const measured = step.startsWith('refresh') ? await benchRefresh(server) : await benchGet(server)
      if (server.prefilled !== undefined) measured.prefilled = server.prefilled
      results.push(measured)
    } finally {
      await server.stop()
    }
  }
  const loadAfter = loadavg()
  const seconds = (performance.now() - started) / 1000

  const find = (scenario: Scenario) => results.find((result) => result.scenario === scenario)
  const bare = find('bare')?.requestsPerSecond
  printTable(results, bare)
  const ratios = TARGETS.flatMap(([numerator, denominator, target]) => {
    const top = find(numerator)
    const bottom = find(denominator)
    if (top === undefined || bottom === undefined) return []
    const ratio = top.requestsPerSecond / bottom.requestsPerSecond
    // The same ratio from CPU per answer (server, plus the store's server when there is one):
    // what the throughput ratio would be if those alone were the limit, each with a core to itself.
    const cpuRatio = totalCpu(bottom) / totalCpu(top)
    return [{ name: `${numerator}/${denominator}`, ratio, cpuRatio, target, met: target === null ? null : ratio >= target }]
  })
  if (ratios.length > 0) {
    console.log('\nTargets (req/s ratio; in brackets the same ratio from CPU µs per request, server + store server)')
    for (const { name, ratio, cpuRatio, target, met } of ratios) {
      const verdict = target === null ? '(no target, reported)' : `target >= ${target.toFixed(2)}  ${met === true ? 'met' : 'BELOW TARGET'}`
      console.log(`  ${name.padEnd(32)} ${ratio.toFixed(3)} (${cpuRatio.toFixed(3)})  ${verdict}`)
    }
  }
  const memoryTargets = sessionMemory === undefined ? [] : printSessionMemory(sessionMemory)
  for (const { scenario, reason } of skipped) console.log(`\nSKIPPED ${scenario}: ${reason}`)
  const invalid = results.filter((result) => !result.valid)
  for (const result of invalid) console.log(`\nINVALID ${result.scenario}: ${result.problems.join('; ')}`)
  if (memoryFailed) console.log('\nFAILED session-memory: see its error above')
  console.log(`\n${seconds.toFixed(0)} s in all; load average before ${formatLoad(loadBefore)}, after ${formatLoad(loadAfter)}`)

  if (OUT !== undefined && OUT !== '') {
    const path = resolve(OUT)
    await writeFile(path, JSON.stringify({
      date: new Date().toISOString(),
      node: process.version,
      cpus: cores,
      cpuModel: cpus()[0]?.model ?? null,
      loadAverage: { before: loadBefore, after: loadAfter },
      seconds,
      connections: CONNECTIONS,
      durationSeconds: DURATION,
      warmupSeconds: WARMUP,
      results: results.map((result) => ({ ...result, ratioToBare: bare === undefined ? null : result.requestsPerSecond / bare })),
      ratios,
      skipped,
      sessionMemory: sessionMemory ?? null,
      sessionMemoryTargets: memoryTargets
    }, null, 2) + '\n')
    log(`results written to ${path}`)
  }
  if (invalid.length > 0 || memoryFailed) process.exitCode = 1
}

function totalCpu (measurement: Measurement): number {
  return measurement.server.cpuMicrosPerRequest + (measurement.server.storeCpuMicrosPerRequest ?? 0)
}

function formatLoad (load: number[]): string {
  return load.map((value) => value.toFixed(2)).join(' ')
}

/** bare, diy, protected: a timed GET /hello run after an unmeasured warm-up. */
async function benchGet (server: Server): Promise<Measurement> {
  const headers: Record<string, string> = server.token === undefined ? {} : { authorization: `Bearer ${server.token}` }
  await checkHello(server, headers)
  const options: Options = { url: `${server.url}/hello`, headers }
  if (WARMUP > 0) {
    log(`${server.scenario}: warm-up ${WARMUP} s`)
    const warm = await load(server, { ...options, duration: WARMUP })
    if (!warm.valid) return warm
  }
  log(`${server.scenario}: measuring ${DURATION} s`)
  return await load(server, { ...options, duration: DURATION })
}

/**
 * refresh: every request presents a refresh token no request used before, each from its own
 * pre-issued session, so every one must rotate (200). A counted warm-up measures the rate, which
 * sizes the measured run (`amount` = tokens issued) to last about BENCH_DURATION seconds.
 * autocannon calls `setupRequest` exactly once per request sent, so no token is sent twice.
 */
async function benchRefresh (server: Server): Promise<Measurement> {
  const { scenario } = server
  const [probe] = await server.issue(1)
  await checkRefresh(server, probe as string)

  log(`${scenario}: warm-up with ${REFRESH_WARMUP_TOKENS} tokens`)
  const warm = await refreshRun(server, await server.issue(REFRESH_WARMUP_TOKENS))
  if (!warm.valid) return warm

  const count = Math.max(CONNECTIONS * 10, Math.ceil(warm.requestsPerSecond * DURATION * 1.25))
  const issueStart = performance.now()
  const tokens: string[] = []
  for (let left = count; left > 0; left -= ISSUE_BATCH) tokens.push(...await server.issue(Math.min(left, ISSUE_BATCH)))
  const issueSeconds = (performance.now() - issueStart) / 1000
  log(`${scenario}: ${count} sessions issued in ${issueSeconds.toFixed(1)} s; measuring (about ${DURATION} s)`)
  const measured = await refreshRun(server, tokens)
  measured.refreshTokens = { ...measured.refreshTokens!, issueSeconds }
  return measured
}

async function refreshRun (server: Server, tokens: string[]): Promise<Measurement> {
  let next = 0
  const result = await load(server, {
    url: server.url,
    amount: tokens.length,
    requests: [{
      method: 'POST',
      path: '/auth/refresh',
      setupRequest: (request) => {
        // Past the end (never expected) an invalid cookie makes the run fail loudly instead of reusing one.
        const token = next < tokens.length ? tokens[next] : 'exhausted'
        next++
        return { ...request, headers: { ...request.headers, cookie: `refresh_token=${token}` } }
      }
    }]
  })
  result.refreshTokens = { issued: tokens.length, used: next, issueSeconds: 0 }
  if (next !== tokens.length) fail(result, `${next} refresh tokens sent for ${tokens.length} requests`)
  if (result.responses !== tokens.length) fail(result, `${result.responses} responses for ${tokens.length} requests`)
  return result
}

/** One autocannon run; every answer must be a 2xx and nothing may error or time out. */
async function load (server: Server, options: Options): Promise<Measurement> {
  const { scenario } = server
  let responses = 0
  let last = 0
  const before = await server.usage()
  const start = performance.now()
  const instance = autocannon({ connections: CONNECTIONS, pipelining: 1, timeout: 10, ...options })
  instance.on('response', () => {
    responses++
    last = performance.now()
  })
  const result: Result = await instance
  const seconds = (last - start) / 1000
  const after = await server.usage()
  const cpu = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system
  const active = after.elu.active - before.elu.active
  const elapsed = active + after.elu.idle - before.elu.idle
  const storeCpu = after.store === null || before.store === null ? null : after.store - before.store
  const measurement: Measurement = {
    scenario,
    label: LABELS[scenario],
    requestsPerSecond: seconds > 0 ? responses / seconds : 0,
    autocannonAverage: result.requests.average,
    responses,
    seconds,
    latencyMs: { mean: result.latency.mean, p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
    server: {
      cpuMicrosPerRequest: responses > 0 ? cpu / responses : 0,
      eventLoopUtilization: elapsed > 0 ? active / elapsed : 0,
      gcShare: elapsed > 0 ? (after.gc.ms - before.gc.ms) / elapsed : 0,
      majorGcs: after.gc.major - before.gc.major,
      storeCpuMicrosPerRequest: storeCpu === null || responses === 0 ? null : storeCpu / responses
    },
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count])),
    valid: true,
    problems: []
  }
  if (result.non2xx > 0) fail(measurement, `${result.non2xx} non-2xx answers (${JSON.stringify(measurement.statusCodes)})`)
  if (result.errors > 0) fail(measurement, `${result.errors} errors (${result.timeouts} timeouts)`)
  if (responses === 0) fail(measurement, 'no responses')
  return measurement
}

function fail (measurement: Measurement, problem: string): void {
  measurement.valid = false
  measurement.problems.push(problem)
}

/** One request by hand before loading: a misconfigured scenario must not be timed. */
async function checkHello (server: Server, headers: Record<string, string>): Promise<void> {
  const response = await fetch(`${server.url}/hello`, { headers })
  const body = await response.text()
  if (response.status !== 200 || body !== '{"hello":"world"}') {
    throw new Error(`${server.scenario}: GET /hello answered ${response.status} ${body}`)
  }
}

async function checkRefresh (server: Server, token: string): Promise<void> {
  const response = await fetch(`${server.url}/auth/refresh`, { method: 'POST', headers: { cookie: `refresh_token=${token}` } })
  const body = await response.json() as { accessToken?: unknown }
  const cookie = response.headers.get('set-cookie') ?? ''
  if (response.status !== 200 || typeof body.accessToken !== 'string' || !cookie.startsWith('refresh_token=')) {
    throw new Error(`${server.scenario}: POST /auth/refresh answered ${response.status} ${JSON.stringify(body)} set-cookie: ${cookie}`)
  }
}

/**
 * Spawns `bench/server.ts <scenario>` and waits for its `listening <port>` line, or for `skip
 * <reason>` (its store's server is unreachable, or a prefill gave up).
 */
async function startServer (scenario: Scenario): Promise<Server | { skipped: string }> {
  const profile = CPU_PROF === undefined || CPU_PROF === ''
    ? []
    // One directory per scenario; Node names each thread's profile (tsx runs a loader thread too).
    : ['--cpu-prof', `--cpu-prof-dir=${join(resolve(CPU_PROF), scenario)}`, `--cpu-prof-interval=${CPU_PROF_INTERVAL}`]
  const prefills = scenario.endsWith('-1m')
  // A prefilled server settles its heap with a full GC before listening.
  const gc = prefills ? ['--expose-gc'] : []
  const child = spawn(process.execPath, [...profile, ...gc, '--import', 'tsx', join(here, 'server.ts'), scenario], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  children.add(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    children.delete(child)
    resolve()
  }))
  let token: string | undefined
  let prefilled: Server['prefilled']
  let skipped: string | undefined
  // Loading a million sessions takes a while (Redis: up to BENCH_PREFILL_TIMEOUT, then clean-up).
  const startTimeout = prefills ? 120 + PREFILL_TIMEOUT * 2 : 30
  const port = await new Promise<number | undefined>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${scenario}: the server did not print "listening <port>" within ${startTimeout} s`)), startTimeout * 1000)
    exited.then(() => {
      clearTimeout(timer)
      if (skipped !== undefined) resolve(undefined)
      else reject(new Error(`${scenario}: the server exited (${child.exitCode ?? child.signalCode}) before listening`))
    }, reject)
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('token ')) token = line.slice('token '.length)
      if (line.startsWith('skip ')) skipped = line.slice('skip '.length)
      if (line.startsWith('prefilled ')) {
        const [sessions, seconds] = line.slice('prefilled '.length).split(' ').map(Number) as [number, number]
        prefilled = { sessions, seconds }
        log(`${scenario}: ${sessions} sessions prefilled in ${seconds.toFixed(1)} s`)
      }
      if (line.startsWith('listening ')) {
        clearTimeout(timer)
        resolve(Number(line.slice('listening '.length)))
      }
    })
  })
  if (port === undefined) return { skipped: skipped as string }
  // Deleting a million Redis keys (or a schema) takes longer than closing a server.
  const stopTimeout = scenario.startsWith('refresh-') ? 120 : 10

  let requestId = 0
  async function ask<T> (message: object, reply: string, pick: (message: Record<string, unknown>) => T): Promise<T> {
    const id = ++requestId
    return await new Promise<T>((resolve, reject) => {
      const onMessage = (message: Record<string, unknown>) => {
        if (message.type !== reply || message.id !== id) return
        child.off('message', onMessage)
        resolve(pick(message))
      }
      child.on('message', onMessage)
      exited.then(() => reject(new Error(`${scenario}: the server exited before answering ${JSON.stringify(message)}`)), reject)
      child.send({ ...message, id })
    })
  }
  return {
    scenario,
    url: `http://127.0.0.1:${port}`,
    token,
    prefilled,
    issue: async (count) => await ask({ type: 'issue', count }, 'tokens', (message) => message.tokens as string[]),
    usage: async () => await ask({ type: 'usage' }, 'usage', (message) => message as unknown as Usage),
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeout * 1000)
        await exited
        clearTimeout(timer)
      }
    }
  }
}

function printTable (results: Measurement[], bare: number | undefined): void {
  const rows = [
    ['scenario', 'req/s (mean)', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'vs bare', 'server CPU µs/req', 'server ELU', 'GC % (major)', 'store CPU µs/req'],
    ...results.map((result) => [
      `${result.scenario}: ${result.label}`,
      Math.round(result.requestsPerSecond).toLocaleString('en-US'),
      String(result.latencyMs.p50),
      String(result.latencyMs.p99),
      String(result.non2xx),
      String(result.errors),
      bare === undefined ? '-' : (result.requestsPerSecond / bare).toFixed(3),
      result.server.cpuMicrosPerRequest.toFixed(1),
      result.server.eventLoopUtilization.toFixed(2),
      `${(result.server.gcShare * 100).toFixed(1)} (${result.server.majorGcs})`,
      result.server.storeCpuMicrosPerRequest === null ? '-' : result.server.storeCpuMicrosPerRequest.toFixed(1)
    ])
  ]
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  console.log('')
  for (const [index, row] of rows.entries()) {
    console.log(row.map((cell, column) => column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)).join('  '))
    if (index === 0) console.log(widths.map((width) => '-'.repeat(width)).join('  '))
  }
  for (const { scenario, refreshTokens: refresh, prefilled } of results) {
    if (refresh === undefined) continue
    const filled = prefilled === undefined ? '' : `; ${prefilled.sessions} sessions prefilled in ${prefilled.seconds.toFixed(1)} s`
    console.log(`(${scenario}: ${refresh.used} of ${refresh.issued} pre-issued single-use tokens sent, issuing took ${refresh.issueSeconds.toFixed(1)} s${filled})`)
  }
}

/** Runs bench/memory.ts in a process of its own (it needs `--expose-gc` and a quiet heap). */
async function measureSessionMemory (): Promise<SessionMemory | undefined> {
  log('session-memory: measuring bytes per stored session')
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, 'memory.ts')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit']
  })
  children.add(child)
  let result: SessionMemory | undefined
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('result ')) result = JSON.parse(line.slice('result '.length)) as SessionMemory
  })
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)))
  children.delete(child)
  if (code !== 0) log(`session-memory: bench/memory.ts exited with ${code}`)
  return code === 0 ? result : undefined
}

/** The bytes-per-session table; returns each figure with its verdict for BENCH_OUT. */
function printSessionMemory (memory: SessionMemory): Array<{ name: string, bytesPerSession: number, target: number, met: boolean }> {
  const figures: Array<{ name: string, sessions: number, bytesPerSession: number, note: string }> = [
    ...memory.memoryStore.map((figure: MemoryStoreFigure) => ({
      name: `MemoryStore heap, ${figure.sessionsPerUser} session(s)/user`,
      sessions: figure.sessions,
      bytesPerSession: figure.bytesPerSession,
      note: ''
    })),
    ...('skipped' in memory.redis
      ? []
      : memory.redis.map((figure: RedisFigure) => ({
        name: `Redis MEMORY USAGE, ${figure.sessionsPerUser} session(s)/user`,
        sessions: figure.sessions,
        bytesPerSession: figure.bytesPerSession,
        note: `record key ${figure.recordKeyBytes.toFixed(0)} (name ${figure.keyNameBytes.toFixed(0)}, JSON value ` +
          `${figure.valueBytes.toFixed(0)}, Redis overhead ${(figure.recordKeyBytes - figure.keyNameBytes - figure.valueBytes).toFixed(0)}) ` +
          `+ user index ${figure.indexBytesPerSession.toFixed(0)}; used_memory growth ${figure.usedMemoryPerSession.toFixed(0)}`
      })))
  ]
  const verdicts = figures.map(({ name, bytesPerSession }) => ({ name, bytesPerSession, target: SESSION_BYTES_TARGET, met: bytesPerSession <= SESSION_BYTES_TARGET }))
  console.log(`\nMemory per stored session (a login + one refresh; 111-char User-Agent, IPv4, claims { username }), target <= ${SESSION_BYTES_TARGET} bytes`)
  const width = Math.max(...figures.map(({ name }) => name.length))
  for (const [i, { name, sessions, bytesPerSession, note }] of figures.entries()) {
    const verdict = verdicts[i]!.met ? 'met' : 'BELOW TARGET'
    console.log(`  ${name.padEnd(width)}  ${sessions.toLocaleString('en-US').padStart(7)} sessions  ${bytesPerSession.toFixed(0).padStart(5)} B  ${verdict.padEnd(12)}  ${note}`.trimEnd())
  }
  if ('skipped' in memory.redis) console.log(`  Redis: SKIPPED, ${memory.redis.skipped}`)

  const breakdowns = memory.memoryStore.filter((figure) => figure.breakdown !== null)
  if (breakdowns.length > 0) {
    console.log(`  MemoryStore, where the bytes go (bytes per session; ${breakdowns.map((figure) => `${figure.sessionsPerUser}/user`).join(', ')}):`)
    const parts = [...new Set(breakdowns.flatMap((figure) => figure.breakdown!.map((share) => share.part)))]
    for (const part of parts) {
      const cells = breakdowns.map((figure) => figure.breakdown!.find((share) => share.part === part)?.bytesPerSession ?? 0)
      console.log(`    ${cells.map((bytes) => bytes.toFixed(0).padStart(5)).join(' ')}  ${part}`)
    }
  }
  if (memory.redisRecordFields !== null) {
    const fields = Object.entries(memory.redisRecordFields).map(([field, bytes]) => `${field} ${bytes}`).join(', ')
    console.log(`  Redis record value (JSON array) by field, bytes: ${fields}`)
  }
  return verdicts
}

function numberFromEnv (name: string, fallback: number, min: number, integer = false): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got "${raw}"`)
  }
  return value
}

function selectedSteps (raw: string | undefined): Step[] {
  if (raw === undefined || raw === '') return [...STEPS]
  const names = raw.split(',').map((name) => name.trim()).filter((name) => name !== '')
  for (const name of names) {
    if (!(STEPS as readonly string[]).includes(name)) throw new Error(`BENCH_ONLY: unknown scenario "${name}" (known: ${STEPS.join(', ')})`)
  }
  return STEPS.filter((step) => names.includes(step))
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
