import { DEFAULT_COOKIE_NAME, DEFAULT_PREFIX } from '../../lib/options.js'
import { PASSWORD, sleep, USERNAME } from '../helpers.js'
import type { FaultTimeline } from './faults.js'
import { type Answer, errorCodeOf, type ExampleClient, refreshCookieOf, retryAfterSeconds } from './http.js'
import { round } from './round.js'

/*
 * The load of a chaos run: clients that each log in once, then refresh over and over (and call
 * GET /me with each new access token) as a well-behaved client does: on a 503 it keeps its
 * cookie and comes back after Retry-After; a 4xx ends its session. What it sees is counted, in
 * total and in the fault window (faults.ts) the answer came in.
 */

const LOGIN_PATH = `${DEFAULT_PREFIX}/login`
const REFRESH_PATH = `${DEFAULT_PREFIX}/refresh`
/** How long the final check keeps retrying a client's 503s. */
const FINAL_CHECK_BOUND_MS = 60_000

/** What the load saw: these fields of the report come from here. */
export interface LoadCounts {
  /** Answers by "status code" (error code when the body has one), per request kind. */
  answers: { login: Record<string, number>, refresh: Record<string, number>, me: Record<string, number> }
  /** 503s answered outside the fault windows: during the warm-up, and during the final check. */
  unavailableInWarmup: number
  unavailableInFinalCheck: number
  /** Error codes of the answers that lost a session. */
  lostCodes: Record<string, number>
  /** 5xx other than 503, to any request. */
  serverErrors: number
  /** 503s without a Retry-After header. */
  unavailableWithoutRetryAfter: number
  /** GET /me answers other than 200. */
  meFailures: number
  /** Requests that got no HTTP answer (connection refused or reset, timeout). */
  networkErrors: number
  /** 200 refreshes without a new refresh cookie. */
  okWithoutCookie: number
  /** 503s that set or cleared the refresh cookie (the client must keep the one it has). */
  unavailableWithCookie: number
}

type RequestKind = keyof LoadCounts['answers']

interface Client {
  index: number
  cookie: string
  busy: boolean
  /** Not picked before this time (Date.now()): Retry-After. */
  notBefore: number
  /** The 4xx that lost the session, if one did. */
  lostBy: string | undefined
  /** The final check's answer ("200" when fine). */
  final: string | undefined
}

type Outcome = 'ok' | 'retry' | 'lost'

function count (counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1
}

/** How an answer is counted: "503", or with the error code of its body, "401 FST_...". */
function keyOf (answer: Answer): string {
  const code = errorCodeOf(answer.body)
  return code === undefined ? String(answer.status) : `${answer.status} ${code}`
}

export class Load {
  readonly counts: LoadCounts = {
    answers: { login: {}, refresh: {}, me: {} },
    unavailableInWarmup: 0,
    unavailableInFinalCheck: 0,
    lostCodes: {},
    serverErrors: 0,
    unavailableWithoutRetryAfter: 0,
    meFailures: 0,
    networkErrors: 0,
    okWithoutCookie: 0,
    unavailableWithCookie: 0
  }

  readonly #http: ExampleClient
  readonly #example: { readonly alive: boolean }
  readonly #timeline: FaultTimeline
  readonly #clients: Client[] = []

  constructor (http: ExampleClient, example: { readonly alive: boolean }, timeline: FaultTimeline) {
    this.#http = http
    this.#example = example
    this.#timeline = timeline
  }

  /** Logs in `sessions` clients, `concurrency` at a time, each retried a few times on 503/429/network errors. */
  async logIn (sessions: number, concurrency: number): Promise<void> {
    let next = 0
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < sessions) {
        const index = next++
        for (let attempt = 1; ; attempt++) {
          const answer = await this.#send('login', 'POST', LOGIN_PATH, { 'content-type': 'application/json' }, JSON.stringify({ username: USERNAME, password: PASSWORD }))
          const cookie = answer?.status === 200 ? refreshCookieOf(answer.headers) : undefined
          if (cookie !== undefined) {
            this.#clients[index] = { index, cookie, busy: false, notBefore: 0, lostBy: undefined, final: undefined }
            break
          }
          if (attempt >= 5 || !this.#example.alive) throw new Error(`login ${index} failed: ${answer?.status} ${answer?.body}`)
          await sleep(1000)
        }
      }
    }))
  }

  /** `concurrency` refreshes in flight, round-robin over the clients ready to go, until the timeline's end of the load. */
  async drive (concurrency: number): Promise<void> {
    let cursor = 0
    const pick = (): Client | undefined => {
      const now = Date.now()
      for (let scanned = 0; scanned < this.#clients.length; scanned++) {
        const client = this.#clients[cursor] as Client
        cursor = (cursor + 1) % this.#clients.length
        if (!client.busy && client.lostBy === undefined && client.notBefore <= now) return client
      }
      return undefined
    }
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (Date.now() < this.#timeline.loadEnd && this.#example.alive) {
        const client = pick()
        if (client === undefined) {
          await sleep(10)
          continue
        }
        client.busy = true
        try {
          await this.#refresh(client, false)
        } finally {
          client.busy = false
        }
      }
    }))
  }

  /** Every client not lost refreshes until it gets a definitive answer (bounded: 60 s in all). */
  async finalCheck (concurrency: number): Promise<void> {
    const deadline = Date.now() + FINAL_CHECK_BOUND_MS
    let next = 0
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < this.#clients.length) {
        const client = this.#clients[next++] as Client
        if (client.lostBy !== undefined) continue
        while (this.#example.alive && Date.now() < deadline) {
          const wait = client.notBefore - Date.now()
          if (wait > 0) await sleep(wait)
          const outcome = await this.#refresh(client, true)
          if (outcome === 'ok') client.final = '200'
          if (outcome !== 'retry') break
        }
        client.final ??= client.lostBy ?? (this.#example.alive ? 'no definitive answer within 60 s' : 'example gone')
      }
    }))
  }

  /** Sessions lost: answered a 4xx, or without a 200 at the final check. */
  get sessionsLost (): { total: number, byAnswer: number } {
    return {
      total: this.#clients.filter((client) => client.lostBy !== undefined || client.final !== '200').length,
      byAnswer: this.#clients.filter((client) => client.lostBy !== undefined).length
    }
  }

  get clientCount (): number {
    return this.#clients.length
  }

  /** One request, its answer counted; undefined (counted as a network error) when none came. */
  async #send (kind: RequestKind, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer | undefined> {
    let answer: Answer
    try {
      answer = await this.#http.request(method, path, headers, body)
    } catch (error) {
      this.counts.networkErrors++
      count(this.counts.answers[kind], `network ${(error as { code?: string }).code ?? (error as Error).message}`)
      return undefined
    }
    count(this.counts.answers[kind], keyOf(answer))
    if (answer.status >= 500 && answer.status !== 503) this.counts.serverErrors++
    if (answer.status === 503 && retryAfterSeconds(answer.headers['retry-after']) === undefined) this.counts.unavailableWithoutRetryAfter++
    return answer
  }

  /** One refresh of `client` (and GET /me with the new access token on a 200). */
  async #refresh (client: Client, final: boolean): Promise<Outcome> {
    const sent = Date.now()
    const answer = await this.#send('refresh', 'POST', REFRESH_PATH, { cookie: `${DEFAULT_COOKIE_NAME}=${client.cookie}` })
    if (answer === undefined) {
      client.notBefore = Date.now() + 1000
      return 'retry'
    }
    // Counted in the window of the fault under way when the answer came (a request sent just
    // before a stall is answered 503 during it).
    const window = final ? undefined : this.#timeline.windowAt(Date.now())
    if (answer.status === 200) {
      const cookie = refreshCookieOf(answer.headers)
      if (cookie === undefined || cookie === '') this.counts.okWithoutCookie++
      else client.cookie = cookie
      if (window !== undefined) {
        window.refreshOk++
        if (window.recoveredAfter === null && sent >= window.endMs && window.endMs > 0) window.recoveredAfter = round((Date.now() - window.endMs) / 1000, 2)
      }
      let accessToken = ''
      try {
        accessToken = (JSON.parse(answer.body) as { accessToken?: string }).accessToken ?? ''
      } catch {}
      const me = await this.#send('me', 'GET', '/me', { authorization: `Bearer ${accessToken}` })
      if (me?.status !== 200) this.counts.meFailures++
      return 'ok'
    }
    if (answer.status === 503) {
      if (window !== undefined) window.refreshUnavailable++
      else if (final) this.counts.unavailableInFinalCheck++
      else this.counts.unavailableInWarmup++
      if (refreshCookieOf(answer.headers) !== undefined) this.counts.unavailableWithCookie++
      const wait = retryAfterSeconds(answer.headers['retry-after']) ?? 1
      client.notBefore = Date.now() + wait * 1000 + Math.random() * 100
      return 'retry'
    }
    if (answer.status >= 400 && answer.status < 500) {
      client.lostBy = keyOf(answer)
      count(this.counts.lostCodes, client.lostBy)
      if (window !== undefined) window.sessionsLost++
      return 'lost'
    }
    // Another 5xx (counted as a server error) or something odder: try again later.
    client.notBefore = Date.now() + 1000
    return 'retry'
  }
}
