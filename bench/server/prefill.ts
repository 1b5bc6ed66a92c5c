// The million extra sessions of the *-1m scenarios, put into the store before the server listens.
//   BENCH_PREFILL_SESSIONS (default 1 000 000) over 100 000 users; BENCH_PREFILL_TIMEOUT (s,
//   default 60): the Redis prefill gives up (the scenario is skipped) past it.
import { performance } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import type { MemoryStore } from '../../lib/index.js'
import type { PrefillJob } from './prefill-worker.js'
import { sessionRecord } from './records.js'
import { SESSION_TTL } from './scenarios.js'

export type Prefilled = { sessions: number, seconds: number }

const PREFILL_SESSIONS = integerFromEnv('BENCH_PREFILL_SESSIONS', 1_000_000)
const PREFILL_TIMEOUT = integerFromEnv('BENCH_PREFILL_TIMEOUT', 60)
/** Users the prefilled sessions belong to (10 sessions each by default). */
const PREFILL_USERS = 100_000

/** Realistic sessions straight into the MemoryStore (no token signing), 10 per user. */
export async function prefillMemory (store: MemoryStore): Promise<Prefilled> {
  const start = performance.now()
  const ttl = SESSION_TTL * 1000
  for (let n = 0; n < PREFILL_SESSIONS; n++) await store.createSession(sessionRecord(n, n % PREFILL_USERS, Date.now(), ttl))
  return { sessions: store.size, seconds: (performance.now() - start) / 1000 }
}

/**
 * Sessions through the store's own createSession, pipelined by two worker threads
 * (./prefill-worker) on connections of their own; gives up after BENCH_PREFILL_TIMEOUT seconds.
 */
export async function prefillRedis (prefix: string): Promise<Prefilled | { skip: string }> {
  const start = performance.now()
  const deadline = Date.now() + PREFILL_TIMEOUT * 1000
  const threads = 2
  const share = Math.ceil(PREFILL_SESSIONS / threads)
  const results = await Promise.all(Array.from({ length: threads }, async (_, i) => {
    const job: PrefillJob = { prefix, from: i * share, to: Math.min(PREFILL_SESSIONS, (i + 1) * share), users: PREFILL_USERS, ttlMs: SESSION_TTL * 1000, deadline }
    const worker = newWorker(job)
    return await new Promise<{ loaded?: number, unreachable?: string, error?: string }>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    }).finally(() => worker.terminate())
  }))
  const seconds = (performance.now() - start) / 1000
  const failed = results.find((result) => result.error !== undefined)
  if (failed !== undefined) throw new Error(`prefill worker: ${failed.error}`)
  const unreachable = results.find((result) => result.unreachable !== undefined)
  if (unreachable !== undefined) return { skip: unreachable.unreachable as string }
  const loaded = results.reduce((sum, result) => sum + (result.loaded ?? 0), 0)
  if (loaded < PREFILL_SESSIONS) {
    return { skip: `loading ${PREFILL_SESSIONS} sessions into Redis took more than ${PREFILL_TIMEOUT} s (${loaded} loaded, ${Math.round(loaded / seconds)}/s; the machine's load matters); BENCH_PREFILL_TIMEOUT sets the limit` }
  }
  return { sessions: loaded, seconds }
}

function newWorker (job: PrefillJob): Worker {
  // Compiled (the default), the worker is a .js file beside this one; from the sources
  // (BENCH_SOURCE=lib) a worker does not inherit `--import tsx`: it registers tsx itself.
  const compiled = import.meta.url.endsWith('.js')
  const file = new URL(`./prefill-worker.${compiled ? 'js' : 'ts'}`, import.meta.url)
  if (compiled) return new Worker(file, { workerData: job })
  return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(file.href)}) })`,
    { eval: true, workerData: job })
}

function integerFromEnv (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be an integer >= 0, got "${raw}"`)
  return value
}
