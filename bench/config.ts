// What `npm run bench` reads from its environment, and the scenarios' labels and targets.
//   BENCH_ROUNDS       rounds (default 5); each round loads every scenario once, in order, so
//                      drift of the machine hits all alike
//   BENCH_DURATION     s measured per scenario per round (default 4)
//   BENCH_CONNECTIONS  autocannon connections (default 32)
//   BENCH_WARMUP       s of unmeasured load per scenario before round 1 (default 1)
//   BENCH_ONLY         comma-separated scenarios and/or session-memory (bare is always added)
//   BENCH_SOURCE       package (default: the packed package, bench/install.ts) or lib (the
//                      working tree's lib/ through tsx: quicker, not what a user gets)
//   BENCH_OUT          write the results there as JSON
//   BENCH_CPU_PROF     a directory: profile each server with `node --cpu-prof` into <dir>/<scenario>/
//   BENCH_CPU_PROF_INTERVAL  its sampling interval in µs (default 1000)
//   BENCH_PREFILL_SESSIONS, BENCH_PREFILL_TIMEOUT, BENCH_REDIS_DB, BENCH_REDIS_NO_COMMAND_TIMEOUT,
//   REDIS_URL, DATABASE_URL: see bench/server/prefill.ts and bench/server/stores.ts; and those
//   of bench/memory.ts.
import { SCENARIOS, type Scenario } from './server/scenarios.js'

/** What BENCH_ONLY can pick, in the order they run. */
export const STEPS = [...SCENARIOS, 'session-memory'] as const
export type Step = typeof STEPS[number]

export const LABELS: Record<Scenario, string> = {
  bare: 'bare Fastify GET /me',
  diy: 'DIY @fastify/jwt onRequest hook',
  express: 'Express 5 + jsonwebtoken middleware',
  protected: 'plugin authenticate',
  'protected-eddsa': 'plugin authenticate, EdDSA key',
  'protected-dpop': 'plugin authenticate, DPoP-bound, memory',
  'diy-refresh': 'DIY Fastify refresh (fast-jwt, Map)',
  refresh: 'plugin POST /auth/refresh, memory',
  'refresh-dpop': 'the same, DPoP-bound session',
  'refresh-1m': 'the same, memory + 1M sessions',
  'refresh-redis': 'the same, Redis',
  'refresh-redis-1m': 'the same, Redis + 1M sessions',
  'refresh-postgres': 'the same, PostgreSQL'
}

/** The targets of the issues: [numerator, denominator, minimum, or null: reported only]. */
export const TARGETS: Array<[Scenario, Scenario, number | null]> = [
  ['refresh', 'bare', 0.30],
  ['protected', 'bare', 0.85],
  ['protected', 'diy', 1.0],
  ['protected', 'express', 20],
  ['refresh-1m', 'refresh', 0.9],
  ['refresh-redis-1m', 'refresh-redis', 0.9],
  ['protected-eddsa', 'bare', null],
  ['protected-dpop', 'protected', null],
  ['refresh-dpop', 'refresh', null],
  ['refresh', 'diy-refresh', null],
  ['refresh-redis', 'refresh', null],
  ['refresh-postgres', 'refresh', 0.5]
]

/** Most bytes a stored session may take, in the MemoryStore's heap and in Redis. */
export const SESSION_BYTES_TARGET = 300

export const ROUNDS = numberFromEnv('BENCH_ROUNDS', 5, 1, true)
export const DURATION = numberFromEnv('BENCH_DURATION', 4, 0.5)
export const CONNECTIONS = numberFromEnv('BENCH_CONNECTIONS', 32, 1, true)
export const WARMUP = numberFromEnv('BENCH_WARMUP', 1, 0)
export const OUT = nonEmpty(process.env.BENCH_OUT)
export const CPU_PROF = nonEmpty(process.env.BENCH_CPU_PROF)
export const CPU_PROF_INTERVAL = numberFromEnv('BENCH_CPU_PROF_INTERVAL', 1000, 1, true)
export const PREFILL_TIMEOUT = numberFromEnv('BENCH_PREFILL_TIMEOUT', 60, 0)
export const SOURCE = sourceFromEnv(process.env.BENCH_SOURCE)
export const ONLY = selectedSteps(process.env.BENCH_ONLY)

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
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

function sourceFromEnv (raw: string | undefined): 'package' | 'lib' {
  if (raw === undefined || raw === '' || raw === 'package') return 'package'
  if (raw === 'lib') return 'lib'
  throw new Error(`BENCH_SOURCE must be package or lib, got "${raw}"`)
}

/** The steps BENCH_ONLY names, in run order; bare always runs with scenarios, as every ratio's round reference. */
function selectedSteps (raw: string | undefined): Step[] {
  if (raw === undefined || raw === '') return [...STEPS]
  const names = raw.split(',').map((name) => name.trim()).filter((name) => name !== '')
  for (const name of names) {
    if (!(STEPS as readonly string[]).includes(name)) throw new Error(`BENCH_ONLY: unknown scenario "${name}" (known: ${STEPS.join(', ')})`)
  }
  if (names.some((name) => name !== 'session-memory')) names.push('bare')
  return STEPS.filter((step) => names.includes(step))
}
