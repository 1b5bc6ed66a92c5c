import { readFileSync } from 'node:fs'
import { sleep } from '../helpers.js'
import { Inspector } from './inspector.js'
import { round } from './round.js'

/*
 * The example's memory over a chaos run: VmRSS sampled four times a second, and two readings
 * (after the warm-up, at the end) taken right after a full GC forced through the inspector, so
 * that a leak is told from V8's heap growth between major GCs.
 */

export interface RssReport {
  /**
   * How afterWarmup and atEnd were read: the median of 5 VmRSS samples right after a full GC
   * forced through the inspector, or (inspector unreachable) the median of the samples of the
   * last 3 s before each point.
   */
  method: 'after forced GC' | 'raw samples'
  /** VmRSS (MiB) at the end of the warm-up, just before the first fault. */
  afterWarmup: number
  /** VmRSS (MiB) at the end of the load, the last fault long over, requests still running. */
  atEnd: number
  /** atEnd / afterWarmup - 1. */
  growth: number
  /** V8 heapUsed (MiB) after the forced GCs, when the inspector answered. */
  heapAfterWarmup: number | null
  heapAtEnd: number | null
  max: number
  samples: number
  /** One sample per second of the run (MiB), logins and final check included, for a closer look. */
  series: number[]
}

interface RssReading {
  rss: number
  heap: number | null
}

/** VmRSS of `pid` in MiB, undefined when it is gone. */
function rssOf (pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? undefined : Number(match[1]) / 1024
  } catch {
    return undefined
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

export class RssWatch {
  readonly #pid: number | undefined
  readonly #inspectPort: number
  readonly #progress: (line: string) => void
  readonly #samples: Array<{ at: number, mib: number }> = []
  readonly #sampler: NodeJS.Timeout
  #gcFailure: string | undefined

  /** Starts sampling the VmRSS of `pid`, whose inspector listens on `inspectPort`. */
  constructor (pid: number | undefined, inspectPort: number, progress: (line: string) => void) {
    this.#pid = pid
    this.#inspectPort = inspectPort
    this.#progress = progress
    this.#sampler = setInterval(() => {
      const mib = pid === undefined ? undefined : rssOf(pid)
      if (mib !== undefined) this.#samples.push({ at: Date.now(), mib })
    }, 250)
  }

  stop (): void {
    clearInterval(this.#sampler)
  }

  /**
   * RSS (and heapUsed) now: after a full GC forced through the inspector, else the median of
   * the last 3 s of samples. The inspector session lasts one reading only: a process that
   * exits with a debugger attached waits for it to detach ("Waiting for the debugger to
   * disconnect..."), alive but deaf, which would hide a crash.
   */
  async measure (): Promise<RssReading> {
    if (this.#pid !== undefined) {
      let inspector: Inspector | undefined
      try {
        inspector = await Inspector.connect(this.#inspectPort)
        await inspector.send('HeapProfiler.collectGarbage')
        const evaluated = await inspector.send('Runtime.evaluate', { expression: 'process.memoryUsage().heapUsed', returnByValue: true }) as { result?: { value?: number } }
        inspector.close()
        await sleep(200)
        const readings: number[] = []
        for (let i = 0; i < 5; i++) {
          const mib = rssOf(this.#pid)
          if (mib !== undefined) readings.push(mib)
          await sleep(100)
        }
        const heap = evaluated.result?.value
        return { rss: median(readings), heap: typeof heap === 'number' ? heap / 2 ** 20 : null }
      } catch (error) {
        this.#gcFailure = (error as Error).message
        this.#progress(`no forced GC (${this.#gcFailure}): RSS read from the raw samples`)
      } finally {
        inspector?.close()
      }
    }
    const now = Date.now()
    return { rss: median(this.#samples.filter((sample) => sample.at >= now - 3000).map((sample) => sample.mib)), heap: null }
  }

  /** The readings (undefined: not taken, the example gone) and the samples so far. */
  report (afterWarmup: RssReading | undefined, atEnd: RssReading | undefined): RssReport {
    return {
      method: this.#gcFailure === undefined ? 'after forced GC' : 'raw samples',
      afterWarmup: round(afterWarmup?.rss ?? NaN),
      atEnd: round(atEnd?.rss ?? NaN),
      growth: round((atEnd?.rss ?? NaN) / (afterWarmup?.rss ?? NaN) - 1, 3),
      heapAfterWarmup: afterWarmup?.heap == null ? null : round(afterWarmup.heap),
      heapAtEnd: atEnd?.heap == null ? null : round(atEnd.heap),
      max: round(Math.max(...this.#samples.map((sample) => sample.mib))),
      samples: this.#samples.length,
      series: this.#samples.filter((_sample, index) => index % 4 === 0).map((sample) => round(sample.mib, 0))
    }
  }
}
