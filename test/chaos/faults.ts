import { sleep } from '../helpers.js'
import type { PrivatePostgres } from '../private-servers/postgres.js'
import type { PrivateRedis } from '../private-servers/redis.js'
import { round } from './round.js'

/*
 * The faults of a chaos run: which, when (the timeline), and how each is injected into the
 * private store. The timeline also holds, per fault, the refresh answers of its window, which
 * the load (load.ts) counts in.
 */

export type StoreKind = 'redis' | 'postgres'

type FaultKind =
  /** Redis: SIGSTOP for durationMs, then SIGCONT. */
  | 'redis-stall'
  /** Redis: CLIENT KILL TYPE normal, then DEBUG SLEEP for durationMs. */
  | 'redis-clients-killed-then-busy'
  /** Redis: SIGKILL, down for durationMs, restarted on the same port and AOF. */
  | 'redis-kill-restart'
  /** PostgreSQL: ACCESS EXCLUSIVE lock on the sessions table held for durationMs. */
  | 'pg-lock'
  /** PostgreSQL: every client backend terminated, then the lock held for durationMs. */
  | 'pg-terminate-then-lock'
  /** PostgreSQL: pg_ctl stop -m immediate, down for durationMs, started again. */
  | 'pg-immediate-stop-restart'

export interface FaultSpec {
  kind: FaultKind
  /** Seconds after the start of the load (logins excluded). */
  at: number
  durationMs: number
}

/** The private store the faults hurt: the one of the run's kind is set. */
export interface StoreServers {
  redis?: PrivateRedis
  postgres?: PrivatePostgres
}

const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value))

/** Warm-up and recovery tail of a run of `seconds`, in seconds. */
export function phases (seconds: number): { warmup: number, tail: number } {
  return { warmup: clamp(seconds * 0.15, 4, 15), tail: clamp(seconds * 0.15, 4, 15) }
}

/** Seconds between the starts of two faults in a long run: each has time to clear, and the system to recover. */
const FAULT_SPACING = 12

/**
 * The faults of a run of `seconds`, between the warm-up and the recovery tail: the three kinds in
 * turn, evenly spaced (at least three, one every ~12 s in longer runs), stalls of 3 to 5 s.
 */
export function defaultFaults (store: StoreKind, seconds: number): FaultSpec[] {
  const { warmup, tail } = phases(seconds)
  const span = seconds - warmup - tail
  const count = Math.max(3, Math.floor(span / FAULT_SPACING))
  const slot = span / count
  if (slot < 4) throw new Error(`a chaos run needs at least ${Math.ceil(warmup + tail + 12)} seconds, got ${seconds}`)
  const longestStall = clamp(slot * 0.4, 3, 5)
  const down = Math.round(clamp(slot * 0.3, 1, 3) * 1000)
  const kinds: FaultKind[] = store === 'redis'
    ? ['redis-stall', 'redis-clients-killed-then-busy', 'redis-kill-restart']
    : ['pg-lock', 'pg-terminate-then-lock', 'pg-immediate-stop-restart']
  return Array.from({ length: count }, (_, index) => {
    const kind = kinds[index % 3] as FaultKind
    const round3 = Math.floor(index / 3)
    // Stalls of 3, 4, 5 s in turn (as long as the slot allows); the busy stall after the cut is 3 s.
    const stall = Math.round(Math.min(3 + (round3 % 3), longestStall) * 1000)
    const durationMs = index % 3 === 0 ? stall : index % 3 === 1 ? 3000 : down
    return { kind, at: round(warmup + index * slot), durationMs }
  })
}

export interface TimelineEntry {
  kind: FaultKind
  /** Seconds after the start of the load. */
  start: number
  end: number
  /** What the fault did (e.g. how many connections it terminated), or why it failed. */
  detail: string
  /** Answers to refreshes that came from this fault's start to the next fault's (or the load's end). */
  refreshOk: number
  refreshUnavailable: number
  /** Sessions that got a 401/403 in this window. */
  sessionsLost: number
  /** Seconds from the fault's end to the first refresh answered 200 that was sent after it. */
  recoveredAfter: number | null
}

/** A timeline entry while the run goes on: its bounds in Date.now() time (endMs 0: under way). */
interface FaultWindow extends TimelineEntry {
  startMs: number
  endMs: number
}

/** The load goes on at least this long after the last fault's end: the recovery is seen. */
const RECOVERY_WATCH_MS = 3000

export class FaultTimeline {
  readonly #faults: FaultSpec[]
  readonly #seconds: number
  readonly #windows: FaultWindow[] = []
  /** Date.now() at the start of the load (0: not started). */
  loadStart = 0
  /** Date.now() at which the load ends: pushed back by a fault that overruns its slot. */
  loadEnd = 0

  constructor (faults: FaultSpec[], seconds: number) {
    this.#faults = faults
    this.#seconds = seconds
  }

  /** The load starts now. */
  begin (): void {
    this.loadStart = Date.now()
    const lastFaultEnd = this.#faults.reduce((latest, fault) => Math.max(latest, fault.at * 1000 + fault.durationMs), 0)
    this.loadEnd = this.loadStart + Math.max(this.#seconds * 1000, lastFaultEnd + RECOVERY_WATCH_MS)
  }

  /** Seconds from the start of the load to `time` (a Date.now()). */
  since (time: number): number {
    return round((time - this.loadStart) / 1000, 2)
  }

  /** The window of the fault under way, or the last one over, at `time`; undefined in the warm-up. */
  windowAt (time: number): FaultWindow | undefined {
    let found: FaultWindow | undefined
    for (const window of this.#windows) if (window.startMs <= time) found = window
    return found
  }

  get entries (): TimelineEntry[] {
    return this.#windows.map(({ startMs: _start, endMs: _end, ...entry }) => entry)
  }

  /** Injects each fault at its time, one after the other, while `example` is alive. */
  async run (servers: StoreServers, example: { readonly alive: boolean }, progress: (line: string) => void): Promise<void> {
    for (const fault of this.#faults) {
      // A fault that overran its slot pushes this one back.
      const wait = this.loadStart + fault.at * 1000 - Date.now()
      if (wait > 0) await sleep(wait)
      if (!example.alive) break
      const startMs = Date.now()
      const window: FaultWindow = { kind: fault.kind, start: this.since(startMs), end: 0, detail: '', refreshOk: 0, refreshUnavailable: 0, sessionsLost: 0, recoveredAfter: null, startMs, endMs: 0 }
      this.#windows.push(window)
      progress(`${window.start}s ${fault.kind} (${fault.durationMs} ms)`)
      try {
        window.detail = await inject(fault, servers)
      } catch (error) {
        window.detail = `injection failed: ${(error as Error).message}`
      }
      window.endMs = Date.now()
      window.end = this.since(window.endMs)
      this.loadEnd = Math.max(this.loadEnd, window.endMs + RECOVERY_WATCH_MS)
    }
  }
}

/** Does what `fault` says to the store; resolves, once the fault is over, with what it did. */
async function inject (fault: FaultSpec, { redis, postgres }: StoreServers): Promise<string> {
  const need = <T>(server: T | undefined): T => {
    if (server === undefined) throw new Error(`${fault.kind} needs the other store`)
    return server
  }
  switch (fault.kind) {
    case 'redis-stall':
      await need(redis).stall(fault.durationMs)
      return `SIGSTOP, SIGCONT after ${fault.durationMs} ms`
    case 'redis-clients-killed-then-busy': {
      const seconds = Math.max(1, Math.round(fault.durationMs / 1000))
      await need(redis).killClientsThenBusy(seconds)
      return `CLIENT KILL TYPE normal, DEBUG SLEEP ${seconds}`
    }
    case 'redis-kill-restart':
      await need(redis).killAndRestart(fault.durationMs)
      return `SIGKILL, down ${fault.durationMs} ms, restarted (AOF)`
    case 'pg-lock':
      await need(postgres).stall(fault.durationMs)
      return `ACCESS EXCLUSIVE lock held ${fault.durationMs} ms`
    case 'pg-terminate-then-lock': {
      const terminated = await need(postgres).terminateConnections()
      await need(postgres).stall(fault.durationMs)
      return `${terminated} backend(s) terminated, then lock held ${fault.durationMs} ms`
    }
    case 'pg-immediate-stop-restart':
      await need(postgres).killAndRestart(fault.durationMs)
      return `pg_ctl stop -m immediate, down ${fault.durationMs} ms, started again`
  }
}
