// The part of autocannon 9's API the benchmark uses (the package ships no types).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  export interface Request {
    method?: string
    path?: string
    headers?: Record<string, string>
    body?: string | Buffer
    /** Called before each request is built; a falsy return skips to the first request. */
    setupRequest?: (request: Request, context: Record<string, unknown>) => Request | null | undefined
  }

  export interface Options {
    url: string
    connections?: number
    /** Seconds; ignored when `amount` is set. */
    duration?: number
    /** Total requests, spread over the connections; the run ends when they are answered. */
    amount?: number
    pipelining?: number
    /** Requests per second over all connections, at most (a fixed load rather than as fast as it goes). */
    overallRate?: number
    /** Seconds before a request counts as timed out. */
    timeout?: number
    method?: string
    headers?: Record<string, string>
    body?: string | Buffer
    requests?: Request[]
  }

  export interface Histogram {
    average: number
    mean: number
    stddev: number
    min: number
    max: number
    total: number
    p50: number
    p90: number
    p99: number
  }

  export interface Result {
    requests: Histogram
    latency: Histogram
    throughput: Histogram
    errors: number
    timeouts: number
    mismatches: number
    non2xx: number
    resets: number
    /** Seconds. */
    duration: number
    statusCodeStats: Record<string, { count: number }>
  }

  /** Emits `response` (client, statusCode, bytes, latencyMs) per answer; awaits to the result. */
  export interface Instance extends EventEmitter, PromiseLike<Result> {
    stop (): void
  }

  export default function autocannon (options: Options): Instance
}
