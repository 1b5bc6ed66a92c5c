import http from 'node:http'
import { DEFAULT_COOKIE_NAME } from '../../lib/options.js'

/*
 * The chaos run's HTTP client for the example server, over real sockets (keep-alive), and the
 * reading of its answers: the refresh cookie, the error code, Retry-After.
 */

const REQUEST_TIMEOUT_MS = 30_000

export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

export class ExampleClient {
  readonly #port: number
  readonly #agent: http.Agent

  constructor (port: number, maxSockets: number) {
    this.#port = port
    this.#agent = new http.Agent({ keepAlive: true, maxSockets })
  }

  /** One request to the example on 127.0.0.1; rejects on a network error or after 30 s. */
  request (method: string, path: string, headers: http.OutgoingHttpHeaders = {}, body?: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: this.#port, method, path, agent: this.#agent, headers: { ...headers, 'content-length': Buffer.byteLength(body ?? '') } }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { text += chunk })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
        res.on('error', reject)
      })
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error('timeout')))
      req.on('error', reject)
      req.end(body)
    })
  }

  /** Closes the keep-alive sockets. */
  close (): void {
    this.#agent.destroy()
  }
}

/** The value of the refresh cookie an answer sets (or clears: ''), undefined when it sets none. */
export function refreshCookieOf (headers: http.IncomingHttpHeaders): string | undefined {
  for (const line of headers['set-cookie'] ?? []) {
    const [pair] = line.split(';')
    const at = pair?.indexOf('=') ?? -1
    if (pair !== undefined && at > 0 && pair.slice(0, at).trim() === DEFAULT_COOKIE_NAME) return pair.slice(at + 1).trim()
  }
  return undefined
}

/** The `code` of a JSON error body. */
export function errorCodeOf (body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { code?: unknown }
    return typeof parsed.code === 'string' ? parsed.code : undefined
  } catch {
    return undefined
  }
}

/** Seconds of a Retry-After header (delta-seconds or an HTTP date); undefined when absent or bad. */
export function retryAfterSeconds (header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000)
}
