import { performance } from 'node:perf_hooks'

/** One store call in flight: when it times out, and how to fail it then. */
interface PendingCall {
  /** On the monotonic clock (`performance.now()`), so a wall-clock step neither fires nor holds it. */
  readonly expiresAt: number
  readonly fail: (cause: Error) => void
}

/**
 * Time limits of store calls («A 503 is the truth» in docs/design.md). Every call has the same
 * limit, so calls reach their deadlines in the order they started: one timer, waiting for the
 * oldest call in flight, serves them all. A timer per call (set, then cleared) cost more than a
 * MemoryStore rotation.
 */
export class CallDeadlines {
  readonly #limit: number
  /** Calls in flight, oldest first (a Set keeps insertion order). */
  readonly #pending = new Set<PendingCall>()
  #timer: NodeJS.Timeout | undefined

  constructor (limit: number) {
    this.#limit = limit
  }

  /**
   * Runs `operation` with its deadline (wall clock, ms), settling as it does, or rejecting once the
   * deadline has passed; what the operation does after that is ignored here.
   */
  async run<T> (operation: (deadline: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.#limit
    return await new Promise<T>((resolve, reject) => {
      const call: PendingCall = { expiresAt: performance.now() + this.#limit, fail: reject }
      this.#track(call)
      let settled: Promise<T>
      try {
        settled = operation(deadline)
      } catch (cause) {
        settled = Promise.reject(cause)
      }
      settled.then((value) => {
        if (this.#untrack(call)) resolve(value)
      }, (cause: unknown) => {
        if (this.#untrack(call)) reject(cause)
      })
    })
  }

  #track (call: PendingCall): void {
    this.#pending.add(call)
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#expire(), this.#limit)
    } else if (this.#pending.size === 1) {
      // Idle, the timer was let go so it never held the process open; a call in flight does.
      this.#timer.ref()
    }
  }

  /** Whether the call was still in flight (not yet timed out). */
  #untrack (call: PendingCall): boolean {
    if (!this.#pending.delete(call)) return false
    if (this.#pending.size === 0) this.#timer?.unref()
    return true
  }

  /** Fails every call past its deadline, then waits for the oldest one left. */
  #expire (): void {
    this.#timer = undefined
    const now = performance.now()
    for (const call of this.#pending) {
      if (call.expiresAt > now) {
        this.#timer = setTimeout(() => this.#expire(), call.expiresAt - now)
        return
      }
      this.#pending.delete(call)
      call.fail(new Error(`store call exceeded ${this.#limit} ms`))
    }
  }
}
