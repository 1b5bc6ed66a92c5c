// Measures the per-operation costs the capacity model uses (scripts/capacity/model.ts) and writes
// them to docs/capacity-costs.json (or CAPACITY_COSTS_OUT), each figure with the command that
// produced it, the date and its runs:
//   node --import tsx bench/capacity-costs.ts
// The plugin runs from the working tree's lib/ (through tsx, as BENCH_SOURCE=lib) in a server
// process of its own (bench/capacity-server.ts), loaded by autocannon from this process over
// loopback, as `npm run bench` does (bench/load.ts: its CPU per answer comes from the server's own
// process.cpuUsage()). Each window runs at a FIXED rate (autocannon overallRate, 8 connections), an
// instance moderately busy: CPU per request depends on load (a saturated server batches reads,
// writes and Redis round trips and spends 2-4x less per request than one at a few hundred a
// second), and a fleet planned at 60 % utilisation runs in between; the saturated figure (the
// warm-up, 32 connections) is kept in each note. Every figure is the median of CAPACITY_RUNS runs
// (default 5): the machine is shared, so one run can be off. Steps:
//   protected        GET /me behind app.authenticate, memory store: server CPU per request
//   refresh          POST /auth/refresh on the memory, Redis and PostgreSQL stores: server CPU per
//                    refresh; Redis: INFO commandstats and INFO cpu deltas per refresh; PostgreSQL:
//                    pg_current_wal_lsn() delta per refresh, rows from pg_stat_user_tables
//   login            POST /auth/login on Redis, a trivial verifyCredentials (no password hash: the
//                    app's scrypt/argon2, tens of ms, is the app's cost and dominates real logins);
//                    the login rate limits off (their in-memory counters are not measured)
//   login (PostgreSQL)  rows and WAL per createSession, measured while the refresh tokens are issued
//   sweep            one store.sweep() over CAPACITY_SWEEP_SESSIONS sessions, one per user: Redis
//                    commands and CPU per stored session (every instance does this each sweepInterval)
//   session memory   `node --expose-gc --import tsx bench/memory.ts` (run as a child; its `result`
//                    line): Redis used_memory growth per session, 1 and 3 sessions per user
// Redis figures are server-wide deltas (other clients count too); the INFO calls themselves are
// left out of the command counts. Redis keys live under `fta-capacity:<run>:` (database
// BENCH_REDIS_DB, default 15, as the bench), PostgreSQL tables in schema `fta_capacity_<run>`; both
// are deleted at the end. Env: CAPACITY_RUNS, CAPACITY_SECONDS (per run, default 4),
// CAPACITY_PROTECTED_RATE, CAPACITY_REFRESH_RATE, CAPACITY_LOGIN_RATE (defaults 2000, 400, 300 per
// second), CAPACITY_SWEEP_SESSIONS (default 20000), CAPACITY_SKIP_MEMORY=1 (keep the file's session-memory
// figures), BENCH_CONNECTIONS (default 32), REDIS_URL, DATABASE_URL.
import type { Options } from 'autocannon'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Pool } from 'pg'
import type { RedisClientType } from 'redis'
import type { CostsFile, Figure, FigureName } from '../scripts/capacity/model.js'
import { load, loadGet, loadRefresh, type Sample } from './load.js'
import { PASSWORD, type ServerConfig } from './capacity-server.js'
import type { Scenario } from './server/scenarios.js'
import { connectRedis, DATABASE_URL, deleteRedisPrefix } from './server/stores.js'
import type { Server, Usage } from './spawn.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')

// ---------------------------------------------------------------------------------------------
// Driving a server from the measuring process (also used by bench/capacity-check.ts).

/** A server process; fits bench/spawn.ts's `Server`, so bench/load.ts's loaders drive it. */
export interface CapacityServer extends Server {
  pid: number
  session (user: string): Promise<{ accessToken: string, refreshToken: string, sessionId: string }>
  revoke (sessionId: string): Promise<boolean>
  sweep (): Promise<number>
}

const children = new Set<ChildProcess>()
process.on('exit', () => { for (const child of children) child.kill('SIGKILL') })

let issuedUsers = 0

export async function startCapacityServer (config: ServerConfig): Promise<CapacityServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'capacity-server.ts')], {
    cwd: root,
    env: { ...process.env, CAPACITY_SERVER: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  children.add(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => { children.delete(child); resolve() }))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('capacity server: no "listening" line within 30 s')), 30_000)
    exited.then(() => reject(new Error(`capacity server (${config.store}) exited before listening`)), reject)
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('listening ')) {
        clearTimeout(timer)
        resolve(Number(line.slice('listening '.length)))
      }
    })
  })
  let requestId = 0
  const ask = async <T>(message: object): Promise<T> => {
    const id = ++requestId
    return await new Promise<T>((resolve, reject) => {
      const onMessage = (reply: Record<string, unknown>) => {
        if (reply.id !== id) return
        child.off('message', onMessage)
        if (typeof reply.error === 'string') reject(new Error(reply.error))
        else resolve(reply as T)
      }
      child.on('message', onMessage)
      exited.then(() => reject(new Error('capacity server exited')), reject)
      child.send({ ...message, id })
    })
  }
  const url = `http://127.0.0.1:${port}`
  const first = await ask<{ accessToken: string }>({ type: 'session', user: 'cap-reader' })
  return {
    scenario: `capacity-${config.store}` as Scenario,
    pid: child.pid!,
    url,
    token: first.accessToken,
    prefilled: undefined,
    async issue (count) {
      const tokens: string[] = []
      for (let left = count; left > 0; left -= 10_000) {
        const batch = Math.min(left, 10_000)
        tokens.push(...(await ask<{ tokens: string[] }>({ type: 'issue', count: batch, firstUser: issuedUsers })).tokens)
        issuedUsers += batch
      }
      return tokens
    },
    usage: async () => await ask<Usage>({ type: 'usage' }),
    session: async (user) => await ask({ type: 'session', user }),
    revoke: async (sessionId) => (await ask<{ revoked: boolean }>({ type: 'revoke', sessionId })).revoked,
    sweep: async () => (await ask<{ removed: number }>({ type: 'sweep' })).removed,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
}

let loginUsers = 0

/**
 * Logins, POST /auth/login, `amount` of them, each a user's first session (a user never seen
 * before: a user's later sessions cost Redis more commands); optionally at a fixed overall rate.
 */
export async function loadLogin (server: CapacityServer, amount: number, overallRate?: number, connections = 8): Promise<Sample> {
  return await countedLoad(server, {
    url: server.url,
    amount,
    connections,
    requests: [{
      method: 'POST',
      path: '/auth/login',
      headers: { 'content-type': 'application/json' },
      setupRequest: (request) => ({ ...request, body: JSON.stringify({ username: `login-${process.pid}-${loginUsers++}`, password: PASSWORD }) })
    }]
  }, overallRate)
}

/** GET /me with the server's access token for `seconds`, at a fixed overall rate. */
export async function getAt (server: Server, seconds: number, overallRate: number, connections = 8): Promise<Sample> {
  return await countedLoad(server, { url: `${server.url}/me`, headers: { authorization: `Bearer ${server.token!}` }, duration: seconds, connections }, overallRate)
}

/** POST /auth/refresh, one never-used token per request, at a fixed overall rate. */
export async function refreshAt (server: Server, tokens: string[], overallRate: number, connections = 8): Promise<Sample> {
  let next = 0
  const sample = await countedLoad(server, {
    url: server.url,
    amount: tokens.length,
    connections,
    requests: [{
      method: 'POST',
      path: '/auth/refresh',
      setupRequest: (request) => ({ ...request, headers: { ...request.headers, cookie: `refresh_token=${tokens[next++] ?? 'exhausted'}` } })
    }]
  }, overallRate)
  if (sample.responses !== tokens.length) sample.problems.push(`${sample.responses} responses for ${tokens.length} refreshes`)
  return sample
}

/** One autocannon run with the server's CPU over it (bench/load.ts), at a fixed rate when given. */
export async function countedLoad (server: Server, options: Options, overallRate?: number): Promise<Sample> {
  return await load(server, { ...options, ...(overallRate === undefined ? {} : { overallRate }) })
}

/** Redis as INFO tells it: calls per command (INFO itself left out) and CPU µs so far. */
export interface RedisStats { calls: Record<string, number>, cpuUs: number }

export async function redisStats (client: RedisClientType): Promise<RedisStats> {
  const commandstats = String(await client.sendCommand(['INFO', 'commandstats']))
  const cpu = String(await client.sendCommand(['INFO', 'cpu']))
  const calls: Record<string, number> = {}
  for (const match of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (match[1] !== 'info') calls[match[1]!] = Number(match[2])
  }
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0)
  return { calls, cpuUs: (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6 }
}

/** after - before: commands in all and by name, and CPU µs. */
export function redisDelta (before: RedisStats, after: RedisStats): { commands: number, byCommand: Record<string, number>, cpuUs: number } {
  const byCommand: Record<string, number> = {}
  let commands = 0
  for (const [name, calls] of Object.entries(after.calls)) {
    const delta = calls - (before.calls[name] ?? 0)
    if (delta > 0) {
      byCommand[name] = delta
      commands += delta
    }
  }
  return { commands, byCommand, cpuUs: after.cpuUs - before.cpuUs }
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** A run id for key prefixes and schema names: process id and start time. */
export function runId (): string {
  return `${process.pid}_${Date.now().toString(36)}`
}

export function log (message: string): void {
  process.stderr.write(`${message}\n`)
}

function saturated (sample: Sample): string {
  return `${sample.cpuMicrosPerRequest.toFixed(1)} µs at ${Math.round(sample.requestsPerSecond)}/s`
}

function check (sample: Sample, what: string): Sample {
  if (sample.problems.length > 0) throw new Error(`${what}: ${sample.problems.join('; ')}`)
  return sample
}

// ---------------------------------------------------------------------------------------------
// The measurement.

const RUNS = Number(process.env.CAPACITY_RUNS ?? 5)
const PROTECTED_RATE = Number(process.env.CAPACITY_PROTECTED_RATE ?? 2000)
const REFRESH_RATE = Number(process.env.CAPACITY_REFRESH_RATE ?? 400)
const LOGIN_RATE = Number(process.env.CAPACITY_LOGIN_RATE ?? 300)
const WINDOW = Number(process.env.CAPACITY_SECONDS ?? 4)
const REFRESHES = Math.round(REFRESH_RATE * WINDOW)
const LOGINS = Math.round(LOGIN_RATE * WINDOW)
const SWEEP_SESSIONS = Number(process.env.CAPACITY_SWEEP_SESSIONS ?? 20_000)
const OUT = resolve(process.env.CAPACITY_COSTS_OUT ?? join(root, 'docs', 'capacity-costs.json'))
const COMMAND = 'node --import tsx bench/capacity-costs.ts'

async function measure (): Promise<void> {
  const date = new Date().toISOString()
  const loadBefore = loadavg()
  const figures: Partial<Record<FigureName, Figure>> = {}
  const put = (name: FigureName, unit: string, samples: number[], note?: string, command = COMMAND) => {
    const value = median(samples)
    figures[name] = { value: Number(value.toPrecision(4)), unit, command, date, samples: samples.map((s) => Number(s.toPrecision(4))), ...(note === undefined ? {} : { note }) }
    log(`${name}: ${figures[name].value} ${unit} (runs: ${figures[name].samples!.join(', ')})`)
  }
  const runs = (label: string) => `median of ${RUNS} runs of ${label}`
  log(`capacity costs: node ${process.version}, ${availableParallelism()} CPU(s), ${RUNS} runs per figure, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`)

  const redis = await connectRedis()
  if ('unreachable' in redis) throw new Error(redis.unreachable)
  const prefix = `fta-capacity:${runId()}:`
  const { default: pg } = await import('pg')
  const pool: Pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
  const schema = `fta_capacity_${runId()}`
  const servers: CapacityServer[] = []
  try {
    // --- protected and refresh on the memory store
    const memory = await startCapacityServer({ store: 'memory' })
    servers.push(memory)
    // Warm-up, and the saturated figures for comparison (as `npm run bench` loads: 32 connections, as fast as answered).
    const saturatedGet = await loadGet(memory, 2)
    const saturatedMemory = await loadRefresh(memory, await memory.issue(3000))
    const protectedUs: number[] = []
    const refreshMemoryUs: number[] = []
    for (let run = 0; run < RUNS; run++) {
      protectedUs.push(check(await getAt(memory, WINDOW, PROTECTED_RATE), 'protected').cpuMicrosPerRequest)
      refreshMemoryUs.push(check(await refreshAt(memory, await memory.issue(REFRESHES), REFRESH_RATE), 'refresh memory').cpuMicrosPerRequest)
    }
    put('node.cpuUsPerProtected', 'µs server CPU per GET /me', protectedUs,
      `${runs(`${WINDOW} s of GET /me at ${PROTECTED_RATE}/s`)}, memory store (the hook never calls the store); saturated: ${saturated(saturatedGet)}`)
    put('node.cpuUsPerRefresh.memory', 'µs server CPU per refresh', refreshMemoryUs, `${runs(`${REFRESHES} refreshes at ${REFRESH_RATE}/s`)}; saturated: ${saturated(saturatedMemory)}`)
    await memory.stop()

    // --- refresh and login on Redis
    const onRedis = await startCapacityServer({ store: 'redis', prefix })
    servers.push(onRedis)
    const saturatedRedis = await loadRefresh(onRedis, await onRedis.issue(3000))
    const saturatedLogin = await loadLogin(onRedis, 2000, undefined, 32)
    const quietBefore = await redisStats(redis)
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const quiet = redisDelta(quietBefore, await redisStats(redis))
    log(`Redis background over 2 s with nothing of ours running: ${quiet.commands} commands, ${Math.round(quiet.cpuUs)} µs CPU`)
    const refresh = { node: [] as number[], commands: [] as number[], cpu: [] as number[], byCommand: {} as Record<string, number> }
    const login = { node: [] as number[], commands: [] as number[], cpu: [] as number[], byCommand: {} as Record<string, number> }
    for (let run = 0; run < RUNS; run++) {
      const tokens = await onRedis.issue(REFRESHES)
      let before = await redisStats(redis)
      const sample = check(await refreshAt(onRedis, tokens, REFRESH_RATE), 'refresh redis')
      let delta = redisDelta(before, await redisStats(redis))
      refresh.node.push(sample.cpuMicrosPerRequest)
      refresh.commands.push(delta.commands / sample.responses)
      refresh.cpu.push(delta.cpuUs / sample.responses)
      refresh.byCommand = delta.byCommand
      before = await redisStats(redis)
      const logins = check(await loadLogin(onRedis, LOGINS, LOGIN_RATE), 'login redis')
      delta = redisDelta(before, await redisStats(redis))
      login.node.push(logins.cpuMicrosPerRequest)
      login.commands.push(delta.commands / logins.responses)
      login.cpu.push(delta.cpuUs / logins.responses)
      login.byCommand = delta.byCommand
    }
    const perOp = (byCommand: Record<string, number>, n: number) => Object.entries(byCommand).map(([name, calls]) => `${name} ${(calls / n).toFixed(2)}`).join(', ')
    put('node.cpuUsPerRefresh.redis', 'µs server CPU per refresh', refresh.node, `${runs(`${REFRESHES} refreshes at ${REFRESH_RATE}/s`)}; saturated: ${saturated(saturatedRedis)}`)
    put('node.cpuUsPerLogin', 'µs server CPU per login', login.node,
      `${runs(`${LOGINS} logins at ${LOGIN_RATE}/s`)}, each a new user's first session; saturated: ${saturated(saturatedLogin)}; Redis store, trivial verifyCredentials and login rate limits off: the app's password hash (scrypt/argon2, tens of ms) comes on top`)
    put('redis.commandsPerRefresh', 'Redis commands per refresh', refresh.commands, `${runs('the refreshes above')}, INFO commandstats deltas; last run by command: ${perOp(refresh.byCommand, REFRESHES)}`)
    put('redis.commandsPerLogin', 'Redis commands per login', login.commands, `${runs('the logins above')}, INFO commandstats deltas; last run by command: ${perOp(login.byCommand, LOGINS)}`)
    put('redis.cpuUsPerRefresh', 'µs Redis CPU per refresh', refresh.cpu, `${runs('the refreshes above')}, INFO cpu used_cpu_user + used_cpu_sys deltas (whole server)`)
    put('redis.cpuUsPerLogin', 'µs Redis CPU per login', login.cpu, `${runs('the logins above')}, INFO cpu deltas (whole server)`)

    // --- the sweep: every key walked once, one script per bucket or index key
    await deleteRedisPrefix(redis, prefix)
    await onRedis.issue(SWEEP_SESSIONS)
    const sweepCommands: number[] = []
    const sweepCpu: number[] = []
    const sweepNode: number[] = []
    for (let run = 0; run < RUNS; run++) {
      const usage = await onRedis.usage()
      const before = await redisStats(redis)
      await onRedis.sweep()
      const delta = redisDelta(before, await redisStats(redis))
      const after = await onRedis.usage()
      sweepNode.push((after.cpu.user + after.cpu.system - usage.cpu.user - usage.cpu.system) / SWEEP_SESSIONS)
      sweepCommands.push(delta.commands / SWEEP_SESSIONS)
      sweepCpu.push(delta.cpuUs / SWEEP_SESSIONS)
      if (run === RUNS - 1) log(`sweep by command: ${perOp(delta.byCommand, SWEEP_SESSIONS)} per session`)
    }
    put('redis.sweepCommandsPerSession', 'Redis commands per stored session per sweep', sweepCommands,
      `${runs(`store.sweep() over ${SWEEP_SESSIONS} sessions, one per user`)}; every instance sweeps every sweepInterval`)
    put('node.sweepCpuUsPerSession', 'µs server CPU per stored session per sweep', sweepNode,
      `${runs(`store.sweep() over ${SWEEP_SESSIONS} sessions`)}: the sweeping instance's own CPU`)
    put('redis.sweepCpuUsPerSession', 'µs Redis CPU per stored session per sweep', sweepCpu, runs(`store.sweep() over ${SWEEP_SESSIONS} sessions`))
    await onRedis.stop()
    await deleteRedisPrefix(redis, prefix)

    // --- PostgreSQL: refresh CPU, rows and WAL per refresh and per createSession
    const { migrate } = await import('../lib/stores/postgres/index.js')
    await pool.query(`CREATE SCHEMA "${schema}"`)
    await migrate(pool, { schema })
    const onPostgres = await startCapacityServer({ store: 'postgres', schema })
    servers.push(onPostgres)
    const saturatedPostgres = await loadRefresh(onPostgres, await onPostgres.issue(2000))
    const lsn = async () => BigInt((await pool.query<{ n: string }>('SELECT pg_current_wal_lsn() - \'0/0\'::pg_lsn AS n')).rows[0]!.n)
    const fpi = async () => Number((await pool.query<{ n: string }>('SELECT wal_fpi AS n FROM pg_stat_wal')).rows[0]!.n)
    // pg_stat_user_tables is per table, so only ours count; backends flush their counts up to ~10 s late (PostgreSQL 15).
    const tableRows = async () => {
      const { rows } = await pool.query<{ ins: string, upd: string, del: string }>(
        'SELECT sum(n_tup_ins) AS ins, sum(n_tup_upd) AS upd, sum(n_tup_del) AS del FROM pg_stat_user_tables WHERE schemaname = $1', [schema])
      return Number(rows[0]!.ins) + Number(rows[0]!.upd) + Number(rows[0]!.del)
    }
    await new Promise((resolve) => setTimeout(resolve, 11_000))
    const rowsAtStart = await tableRows()
    const pgRefresh = { node: [] as number[], wal: [] as number[], fpi: [] as number[], count: 0 }
    const pgLogin = { wal: [] as number[], count: 0 }
    let rowsAfterIssue = 0
    for (let run = 0; run < RUNS; run++) {
      let start = await lsn()
      const tokens = await onPostgres.issue(REFRESHES)
      pgLogin.wal.push(Number(await lsn() - start) / REFRESHES)
      pgLogin.count += REFRESHES
      start = await lsn()
      const fpiStart = await fpi()
      const sample = check(await refreshAt(onPostgres, tokens, REFRESH_RATE), 'refresh postgres')
      pgRefresh.wal.push(Number(await lsn() - start) / sample.responses)
      pgRefresh.fpi.push((await fpi() - fpiStart) / sample.responses)
      pgRefresh.node.push(sample.cpuMicrosPerRequest)
      pgRefresh.count += sample.responses
    }
    await new Promise((resolve) => setTimeout(resolve, 11_000))
    rowsAfterIssue = await tableRows() - rowsAtStart
    put('node.cpuUsPerRefresh.postgres', 'µs server CPU per refresh', pgRefresh.node, `${runs(`${REFRESHES} refreshes at ${REFRESH_RATE}/s`)}; saturated: ${saturated(saturatedPostgres)}`)
    put('postgres.walBytesPerRefresh', 'WAL bytes per refresh', pgRefresh.wal,
      `${runs(`${REFRESHES} refreshes`)}, pg_current_wal_lsn() deltas (whole cluster: others' writes count too); full-page images per refresh ${pgRefresh.fpi.map((f) => f.toFixed(2)).join(', ')}`)
    put('postgres.walBytesPerLogin', 'WAL bytes per login (createSession)', pgLogin.wal,
      `${runs(`${REFRESHES} app.tokenAuth.issueSession calls`)}, pg_current_wal_lsn() deltas (whole cluster)`)
    await onPostgres.stop()
    // Each createSession inserts one row, each refresh updates one (lib/stores/postgres/statements.ts); checked against the table statistics.
    const expected = pgLogin.count + pgRefresh.count
    const rowsNote = `pg_stat_user_tables n_tup_ins + n_tup_upd + n_tup_del of the run's schema: ${rowsAfterIssue} for ${pgLogin.count} sessions created and ${pgRefresh.count} refreshes (expected ${expected} at one row each)`
    put('postgres.rowsPerRefresh', 'rows written per refresh', [1], rowsNote)
    put('postgres.rowsPerLogin', 'rows written per login', [1], rowsNote)
    if (rowsAfterIssue !== expected) log(`WARNING: ${rowsNote}`)
  } finally {
    for (const server of servers) await server.stop()
    await deleteRedisPrefix(redis, prefix).catch(() => {})
    await redis.close()
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {})
    await pool.end()
  }

  // --- session memory, from bench/memory.ts as it is now
  let previous: CostsFile | undefined
  try { previous = JSON.parse(await readFile(OUT, 'utf8')) as CostsFile } catch {}
  if (process.env.CAPACITY_SKIP_MEMORY === '1' && previous !== undefined) {
    for (const name of ['redis.bytesPerSession.1PerUser', 'redis.bytesPerSession.3PerUser'] as const) figures[name] = previous.figures[name]
  } else {
    const memory = await sessionMemory()
    const command = 'node --expose-gc --import tsx bench/memory.ts'
    for (const figure of memory) {
      const name = figure.sessionsPerUser === 1 ? 'redis.bytesPerSession.1PerUser' : 'redis.bytesPerSession.3PerUser'
      put(name, 'bytes of Redis used_memory per session', [figure.usedMemoryPerSession],
        `INFO used_memory growth / ${figure.sessions} sessions, ${figure.sessionsPerUser} per user (includes each key's expiry entry); MEMORY USAGE of the keys: ${figure.bytesPerSession.toFixed(0)} B`, command)
    }
  }

  const file: CostsFile = {
    about: 'Per-operation costs for scripts/capacity.ts (docs/capacity.md). Re-measure: node --import tsx bench/capacity-costs.ts. ' +
      'Each figure: value (the median of its samples), unit, the command that produced it, date; edit a value by hand to try another figure.',
    machine: {
      node: process.version,
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? null,
      loadAverage: { before: loadBefore, after: loadavg() },
      rates: { protected: PROTECTED_RATE, refresh: REFRESH_RATE, login: LOGIN_RATE, connections: 8, secondsPerRun: WINDOW },
      source: 'the working tree\'s lib/ through tsx; servers loaded at fixed rates by autocannon over loopback on the same machine'
    },
    figures: figures as Record<FigureName, Figure>
  }
  await writeFile(OUT, JSON.stringify(file, null, 2) + '\n')
  log(`written to ${OUT}`)
}

/** bench/memory.ts in a child (it needs --expose-gc and a quiet heap); its Redis figures. */
async function sessionMemory (): Promise<Array<{ sessionsPerUser: number, sessions: number, bytesPerSession: number, usedMemoryPerSession: number }>> {
  log('session memory: node --expose-gc --import tsx bench/memory.ts')
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, 'memory.ts')], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
  children.add(child)
  let result: { redis: unknown } | undefined
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('result ')) result = JSON.parse(line.slice('result '.length)) as { redis: unknown }
  })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  children.delete(child)
  if (code !== 0 || result === undefined || !Array.isArray(result.redis)) throw new Error(`bench/memory.ts exited ${code} without Redis figures`)
  return result.redis as Array<{ sessionsPerUser: number, sessions: number, bytesPerSession: number, usedMemoryPerSession: number }>
}

const entry = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href
if (entry) {
  measure().catch((error: unknown) => {
    console.error(error)
    for (const child of children) child.kill('SIGKILL')
    process.exitCode = 1
  })
}
