// The attack suite's harness: the example app over real HTTP, a byte-exact HTTP client, the
// login/refresh/logout flows, and the global checks every attack must pass (no 500, no token
// issued, no key, password or token echoed, no unhandled rejection, the server still up).
// Forging lives in ./forge.ts.
import net from 'node:net'
import { Writable } from 'node:stream'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import { buildApp, configFromEnv, type ExampleConfig } from '../../examples/app.js'
import { ACCESS_SECRET, BOB, BOB_ID, BOB_PASSWORD, PASSWORD, REFRESH_SECRET, USER_ID, USERNAME } from '../helpers.js'

export { forgeHmac as forge, forgeAsymmetric, siblings } from './forge.js'
// The demo users (alice the admin, bob a user) are test/helpers.ts's DEMO_USERS, as the example has them.
export { ACCESS_SECRET, BOB, BOB_ID, BOB_PASSWORD, PASSWORD, REFRESH_SECRET, USERNAME }
export { CHALLENGE, decodePayload, INVALID_REQUEST, INVALID_TOKEN, sleep } from '../helpers.js'

export const ALICE_ID = USER_ID
export const COOKIE = 'refresh_token'
export const STORE_UNAVAILABLE = 'FST_TOKEN_AUTH_STORE_UNAVAILABLE'

/**
 * Known keys (so cases can forge validly signed tokens) and limits high enough that only the
 * throttling cases meet them. Each file overrides what its cases need (short TTLs, the store).
 */
export const BASE_ENV: Record<string, string> = {
  LOG_LEVEL: 'warn',
  ACCESS_TOKEN_SECRET: ACCESS_SECRET,
  REFRESH_TOKEN_SECRET: REFRESH_SECRET,
  DEMO_SECOND_PASSWORD: BOB_PASSWORD,
  LOGIN_RATE_LIMIT: '10000',
  ACCOUNT_RATE_LIMIT: '10000'
}

// Anything that escapes the app while a file runs is a finding (the H6 case of each file), collected here
// and asserted by `noIncidents` rather than crashing the run at an unrelated step.
const incidents: string[] = []
process.on('unhandledRejection', (reason) => { incidents.push(`unhandledRejection: ${String((reason as Error)?.stack ?? reason)}`) })
process.on('uncaughtException', (error) => { incidents.push(`uncaughtException: ${String(error?.stack ?? error)}`) })

/** H6: the process saw no unhandled rejection or uncaught exception, and no app logged one. */
export function noIncidents (t: Test, ...examples: Example[]): void {
  t.same(incidents, [], 'no unhandledRejection / uncaughtException in this process')
  for (const example of examples) {
    t.notOk(example.logs.some((line) => /unhandledRejection|uncaughtException/.test(line)), 'the app logged no unhandled rejection')
  }
}

export interface Example {
  app: FastifyInstance
  config: ExampleConfig
  /** `http://127.0.0.1:<port>`: also the app's own origin. */
  base: string
  port: number
  /** Every log line the app wrote. */
  logs: string[]
  /**
   * Strings no error body may contain: keys, passwords, and every token the harness saw issued
   * (grows as flows run).
   */
  secrets: string[]
  /** Every plugin event so far, in order: `events.slice(mark)` shows what a request changed. */
  events: Array<{ name: string, payload: Record<string, unknown> }>
  /** Closes the app (teardown also does; twice is harmless). */
  close: () => Promise<void>
}

const EVENT_NAMES = ['login', 'loginFailed', 'refresh', 'reuseDetected', 'logout', 'logoutAll', 'sessionRevoked'] as const

/** The names of the events since `mark` (an earlier `example.events.length`). */
export function eventsSince (example: Example, mark: number): string[] {
  return example.events.slice(mark).map((event) => event.name)
}

/** Starts `buildApp(configFromEnv({ ...BASE_ENV, ...env }))` on 127.0.0.1:0; closed at teardown. */
export async function startExample (t: Test, env: Record<string, string> = {}, serverOptions: FastifyServerOptions = {}): Promise<Example> {
  const config = configFromEnv({ ...BASE_ENV, ...env })
  const logs: string[] = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      logs.push(...chunk.toString().split('\n').filter(Boolean))
      callback()
    }
  })
  const app = await buildApp(config, { ...serverOptions, logger: { level: config.logLevel, stream } } as FastifyServerOptions)
  let closed: Promise<void> | undefined
  const close = async () => { await (closed ??= app.close().then(() => {})) }
  t.teardown(close)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as net.AddressInfo).port
  const events: Example['events'] = []
  for (const name of EVENT_NAMES) {
    app.tokenAuth.events.on(name, (payload: object) => { events.push({ name, payload: { ...payload } }) })
  }
  const secrets = [config.accessTokenSecret, config.refreshTokenSecret, config.password, config.secondPassword]
  if (config.accessTokenPrivateKey !== undefined) secrets.push(config.accessTokenPrivateKey)
  return { app, config, base: `http://127.0.0.1:${port}`, port, logs, secrets, events, close }
}

export interface Reply {
  status: number
  /** Header names lower-cased; repeated headers joined with ", " (Set-Cookie kept apart). */
  headers: Record<string, string>
  setCookies: string[]
  text: string
  /** The parsed body, or undefined when it is not JSON. */
  json: any
}

export interface RequestOptions {
  /** Header pairs sent verbatim and in order, repeats allowed; or an object. */
  headers?: Array<[string, string]> | Record<string, string>
  /** An object is sent as JSON with `Content-Type: application/json` unless one is given. */
  body?: string | Buffer | object
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh socket: no client normalises the
 * headers (duplicates, odd Content-Types and 20 KB values reach Node's parser as written).
 */
export async function send (example: Example, method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
  return parseReply(await sendRaw(example, method, path, options))
}

/** `send`, answered as the very bytes the server wrote: for comparing two answers byte for byte. */
export async function sendRaw (example: Example, method: string, path: string, options: RequestOptions = {}): Promise<Buffer> {
  const pairs: Array<[string, string]> = Array.isArray(options.headers) ? [...options.headers] : Object.entries(options.headers ?? {})
  let body: Buffer | undefined
  if (options.body !== undefined) {
    const isRaw = typeof options.body === 'string' || Buffer.isBuffer(options.body)
    body = isRaw ? Buffer.from(options.body as string | Buffer) : Buffer.from(JSON.stringify(options.body))
    if (!isRaw && !pairs.some(([name]) => name.toLowerCase() === 'content-type')) pairs.push(['content-type', 'application/json'])
    pairs.push(['content-length', String(body.length)])
  } else if (method === 'POST' || method === 'DELETE') {
    pairs.push(['content-length', '0'])
  }
  const head = [`${method} ${path} HTTP/1.1`, `host: 127.0.0.1:${example.port}`, 'connection: close', ...pairs.map(([name, value]) => `${name}: ${value}`)]
  const request = Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), body ?? Buffer.alloc(0)])
  const socket = net.connect(example.port, '127.0.0.1')
  const chunks: Buffer[] = []
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('end', resolve)
    socket.on('error', reject)
    socket.write(request)
  })
  socket.destroy()
  return Buffer.concat(chunks)
}

function parseReply (raw: Buffer): Reply {
  const split = raw.indexOf('\r\n\r\n')
  if (split < 0) throw new Error(`no HTTP answer: ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`)
  const [statusLine, ...lines] = raw.subarray(0, split).toString('latin1').split('\r\n')
  const headers: Record<string, string> = {}
  const setCookies: string[] = []
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    if (name === 'set-cookie') setCookies.push(value)
    else headers[name] = name in headers ? `${headers[name]}, ${value}` : value
  }
  let body = raw.subarray(split + 4)
  if (headers['transfer-encoding'] === 'chunked') body = unchunk(body)
  const text = body.toString('utf8')
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: Number(statusLine?.split(' ')[1]), headers, setCookies, text, json }
}

function unchunk (body: Buffer): Buffer {
  const parts: Buffer[] = []
  let offset = 0
  for (;;) {
    const end = body.indexOf('\r\n', offset)
    const size = parseInt(body.subarray(offset, end).toString('latin1'), 16)
    if (!(size > 0)) return Buffer.concat(parts)
    parts.push(body.subarray(end + 2, end + 2 + size))
    offset = end + 2 + size + 2
  }
}

export interface Cookie {
  value: string
  /** Attribute names lower-cased; flags map to ''. */
  attributes: Record<string, string>
  raw: string
}

/** The Set-Cookie for `name` in a reply, parsed. */
export function cookieOf (reply: Reply, name = COOKIE): Cookie | undefined {
  const raw = reply.setCookies.find((line) => line.startsWith(`${name}=`))
  if (raw === undefined) return undefined
  const [pair, ...attributes] = raw.split(';').map((part) => part.trim())
  return {
    value: decodeURIComponent((pair as string).slice(name.length + 1)),
    attributes: Object.fromEntries(attributes.map((attribute) => {
      const eq = attribute.indexOf('=')
      return eq < 0 ? [attribute.toLowerCase(), ''] : [attribute.slice(0, eq).toLowerCase(), attribute.slice(eq + 1)]
    })),
    raw
  }
}

/** True when the reply expires the refresh cookie (empty value, in the past). */
export function clearsCookie (reply: Reply, name = COOKIE): boolean {
  const cookie = cookieOf(reply, name)
  return cookie !== undefined && cookie.value === '' && (cookie.attributes['max-age'] === '0' || 'expires' in cookie.attributes)
}

export interface Tokens {
  reply: Reply
  accessToken: string
  refreshToken: string
}

function tokensOf (example: Example, reply: Reply, what: string): Tokens {
  if (reply.status !== 200) throw new Error(`${what} answered ${reply.status}: ${reply.text}`)
  const tokens = { reply, accessToken: reply.json.accessToken as string, refreshToken: cookieOf(reply)?.value ?? '' }
  example.secrets.push(tokens.accessToken, tokens.refreshToken)
  return tokens
}

export function loginRequest (example: Example, username = USERNAME, password = username === BOB ? BOB_PASSWORD : PASSWORD, headers: Record<string, string> = {}): Promise<Reply> {
  return send(example, 'POST', '/auth/login', { headers, body: { username, password } })
}

/** Logs a user in (alice by default); throws unless 200. */
export async function login (example: Example, username = USERNAME, password?: string): Promise<Tokens> {
  return tokensOf(example, await loginRequest(example, username, password), 'login')
}

export function refreshRequest (example: Example, refreshToken: string, headers: Record<string, string> = {}): Promise<Reply> {
  return send(example, 'POST', '/auth/refresh', { headers: { cookie: `${COOKIE}=${refreshToken}`, ...headers } })
}

/** Rotates a refresh token; throws unless 200. */
export async function refresh (example: Example, refreshToken: string): Promise<Tokens> {
  return tokensOf(example, await refreshRequest(example, refreshToken), 'refresh')
}

export function logoutRequest (example: Example, refreshToken?: string, headers: Record<string, string> = {}): Promise<Reply> {
  return send(example, 'POST', '/auth/logout', { headers: refreshToken === undefined ? headers : { cookie: `${COOKIE}=${refreshToken}`, ...headers } })
}

export function get (example: Example, path: string, accessToken?: string): Promise<Reply> {
  return send(example, 'GET', path, { headers: accessToken === undefined ? {} : { authorization: `Bearer ${accessToken}` } })
}

/** The server is alive: `GET /health` is 200. */
export async function alive (t: Test, example: Example): Promise<void> {
  const health = await get(example, '/health')
  t.equal(health.status, 200, 'GET /health is still 200')
}

/** No token issued: no refresh cookie with a value, no token field in the body. */
export function noTokenIssued (t: Test, reply: Reply): void {
  t.notOk(reply.setCookies.some((line) => /^(__Host-)?refresh_token=[^;]/.test(line)), 'no refresh token cookie is set')
  const body = typeof reply.json === 'object' && reply.json !== null ? reply.json : {}
  for (const field of ['accessToken', 'refreshToken', 'access_token', 'refresh_token']) {
    t.notOk(field in body, `no ${field} in the body`)
  }
}

/** No 500, a JSON error body, and nothing internal or secret in it. */
export function noLeak (t: Test, example: Example, reply: Reply, extraSecrets: string[] = []): void {
  t.not(reply.status, 500, 'not a 500')
  if (reply.status >= 400) {
    t.match(reply.headers['content-type'], /^application\/json/, 'the error body is JSON')
    // Every error the app answers has a `code` (`refused` asserts which); only Node's own parser
    // errors (a malformed request line or header, before the app runs) have none.
    t.match(reply.json, { statusCode: reply.status, error: String, message: String }, 'the error body is { statusCode, code, error, message }')
  }
  t.notOk(/\n\s+at |"stack"|ECONN|ETIMEDOUT|EPIPE/.test(reply.text), 'no stack trace or socket error in the body')
  const leaked = [...example.secrets, ...extraSecrets].filter((secret) => secret !== '' && reply.text.includes(secret))
  t.same(leaked.length, 0, 'no key, password or token echoed in the body')
}

export interface Refusal {
  status: number
  /** Undefined only for Node's parser errors, which have no code. */
  code: string | undefined
  /** The expected `WWW-Authenticate`, when the case has one. */
  challenge?: string
  /** Tokens sent by this request: none may come back in the body. */
  sent?: string[]
}

/** The full answer to an attack: status, code, no token issued, no leak, and the server still up. */
export async function refused (t: Test, example: Example, reply: Reply, expected: Refusal): Promise<void> {
  t.equal(reply.status, expected.status, `answers ${expected.status}`)
  t.equal(reply.json?.code, expected.code, `code ${expected.code}`)
  if (expected.challenge !== undefined) t.equal(reply.headers['www-authenticate'], expected.challenge, 'WWW-Authenticate')
  noTokenIssued(t, reply)
  noLeak(t, example, reply, expected.sent)
  await alive(t, example)
}
