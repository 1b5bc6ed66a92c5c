// Loading one server once with autocannon (in this process, over loopback) and what one such
// window measures: a `Sample`. Every answer must be a 2xx; nothing may error or time out.
import autocannon, { type Options } from 'autocannon'
import { performance } from 'node:perf_hooks'
import { CONNECTIONS } from './config.js'
import { ME_BODY, usesProofs } from './server/scenarios.js'
import type { Server } from './spawn.js'

export interface Sample {
  /** Answers per second: responses / (last response - start), the same for timed and counted runs. */
  requestsPerSecond: number
  responses: number
  seconds: number
  latencyMs: { p50: number, p99: number, max: number }
  /**
   * The server process over the window: CPU (user + system, all threads, from its own
   * `process.cpuUsage()`) per answer; event-loop utilisation (1 = saturated: the server, not
   * autocannon, was the limit); share of the window in GC pauses and mark-compacts. `storeCpu`:
   * the Redis or PostgreSQL server's CPU per answer, null for the memory store.
   */
  cpuMicrosPerRequest: number
  eventLoopUtilization: number
  gcShare: number
  majorGcs: number
  storeCpuMicrosPerRequest: number | null
  statusCodes: Record<string, number>
  problems: string[]
}

/** One request by hand first: a misconfigured scenario must not be timed. Every GET /me answers the same body. */
export async function checkGet (server: Server): Promise<void> {
  const proof: Record<string, string> = usesProofs(server.scenario) ? { dpop: (await server.issue(1))[0] as string } : {}
  const response = await fetch(`${server.url}/me`, { headers: { ...getHeaders(server), ...proof } })
  const body = await response.text()
  if (response.status !== 200 || body !== ME_BODY) throw new Error(`${server.scenario}: GET /me answered ${response.status} ${body}`)
}

/** A refresh token is an opaque string: sent as the cookie, its successor taken from Set-Cookie. */
export async function checkRefresh (server: Server): Promise<void> {
  const [token, proof] = ((await server.issue(1))[0] as string).split(' ')
  const response = await fetch(`${server.url}/auth/refresh`, { method: 'POST', headers: refreshHeaders(token as string, proof) })
  const body = await response.json() as { accessToken?: unknown, tokenType?: unknown, expiresIn?: unknown }
  const cookie = response.headers.get('set-cookie') ?? ''
  const tokenType = proof === undefined ? 'Bearer' : 'DPoP'
  if (response.status !== 200 || typeof body.accessToken !== 'string' || body.tokenType !== tokenType || typeof body.expiresIn !== 'number' ||
    !cookie.startsWith('refresh_token=') || cookie.startsWith(`refresh_token=${token};`)) {
    throw new Error(`${server.scenario}: POST /auth/refresh answered ${response.status} ${JSON.stringify(body)} set-cookie: ${cookie}`)
  }
}

function getHeaders (server: Server): Record<string, string> {
  if (server.token === undefined) return {}
  return { authorization: `${usesProofs(server.scenario) ? 'DPoP' : 'Bearer'} ${server.token}` }
}

/** A refresh token in the cookie, and its DPoP proof when the scenario binds sessions. */
function refreshHeaders (token: string, proof: string | undefined): Record<string, string> {
  return { cookie: `refresh_token=${token}`, ...(proof === undefined ? {} : { dpop: proof }) }
}

/** GET /me for `seconds`. */
export async function loadGet (server: Server, seconds: number): Promise<Sample> {
  return await load(server, { url: `${server.url}/me`, headers: getHeaders(server), duration: seconds })
}

/** GET /me, each request with the next of `proofs` (single-use DPoP proofs for the server's token). */
export async function loadGetWithProofs (server: Server, proofs: string[]): Promise<Sample> {
  return await loadSingleUse(server, proofs, { method: 'GET', path: '/me', headers: getHeaders(server) }, (proof) => ({ dpop: proof }))
}

/** POST /auth/refresh, each request with the next of `tokens` (each a session of its own, never used, and its proof if any), so every one must rotate. */
export async function loadRefresh (server: Server, tokens: string[]): Promise<Sample> {
  return await loadSingleUse(server, tokens, { method: 'POST', path: '/auth/refresh' }, (entry) => {
    const [token, proof] = entry.split(' ')
    return refreshHeaders(token as string, proof)
  })
}

/**
 * One request per item, each sent once with the headers `headersOf` gives it (a refresh token, a
 * proof): `amount` = items, and autocannon calls `setupRequest` exactly once per request sent,
 * so no item is sent twice. Every one must answer 200.
 */
async function loadSingleUse (
  server: Server, items: string[], request: { method: 'GET' | 'POST', path: string, headers?: Record<string, string> },
  headersOf: (item: string) => Record<string, string>
): Promise<Sample> {
  let next = 0
  const sample = await load(server, {
    url: server.url,
    amount: items.length,
    requests: [{
      ...request,
      setupRequest: (sent) => {
        // Past the end (never expected) an invalid item makes the run fail loudly instead of reusing one.
        const item = next < items.length ? items[next] as string : 'exhausted'
        next++
        return { ...sent, headers: { ...sent.headers, ...headersOf(item) } }
      }
    }]
  })
  if (next !== items.length) sample.problems.push(`${next} sent for ${items.length} requests`)
  if (sample.responses !== items.length) sample.problems.push(`${sample.responses} responses for ${items.length} requests`)
  return sample
}

/** One autocannon run (`options` over the bench's defaults) with the server's CPU, event loop and GC over it. */
export async function load (server: Server, options: Options): Promise<Sample> {
  let responses = 0
  let last = 0
  const before = await server.usage()
  const start = performance.now()
  const instance = autocannon({ connections: CONNECTIONS, pipelining: 1, timeout: 10, ...options })
  instance.on('response', () => {
    responses++
    last = performance.now()
  })
  const result = await instance
  const after = await server.usage()
  const seconds = (last - start) / 1000
  const cpu = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system
  const active = after.elu.active - before.elu.active
  const elapsed = active + after.elu.idle - before.elu.idle
  const storeCpu = after.store === null || before.store === null ? null : after.store - before.store
  const sample: Sample = {
    requestsPerSecond: seconds > 0 ? responses / seconds : 0,
    responses,
    seconds,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
    cpuMicrosPerRequest: responses > 0 ? cpu / responses : 0,
    eventLoopUtilization: elapsed > 0 ? active / elapsed : 0,
    gcShare: elapsed > 0 ? (after.gc.ms - before.gc.ms) / elapsed : 0,
    majorGcs: after.gc.major - before.gc.major,
    storeCpuMicrosPerRequest: storeCpu === null || responses === 0 ? null : storeCpu / responses,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count])),
    problems: []
  }
  if (result.non2xx > 0) sample.problems.push(`${result.non2xx} non-2xx answers (${JSON.stringify(sample.statusCodes)})`)
  if (result.errors > 0) sample.problems.push(`${result.errors} errors (${result.timeouts} timeouts)`)
  if (responses === 0) sample.problems.push('no responses')
  return sample
}
