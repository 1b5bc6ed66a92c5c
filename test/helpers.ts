import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import tokenAuth, { type MemoryStore, type TokenAuthOptions, type TokenStore } from '../lib/index.js'
import { secretKid } from '../lib/keys.js'
import { RefreshTokens, refreshTokenParts } from '../lib/refresh-tokens.js'

export const ACCESS_SECRET = 'a'.repeat(32) + '-access-secret-for-tests'
export const REFRESH_SECRET = 'r'.repeat(32) + '-refresh-secret-for-tests'
/** The `kid` the plugin puts in access tokens signed with ACCESS_SECRET, for hand-built tokens. */
export const ACCESS_KID = secretKid(ACCESS_SECRET)
export const USERNAME = 'alice'
export const PASSWORD = 'correct-horse-battery-staple'
export const USER_ID = 'user-1'
/** The demo's second user (role `user`), as examples/app.ts has him (`DEMO_SECOND_PASSWORD`). */
export const BOB = 'bob'
export const BOB_PASSWORD = 'bob-password-1234'
export const BOB_ID = 'user-2'

/**
 * The demo users, one definition for the tests: the same names, ids, passwords and roles as
 * examples/app.ts (the source: the tests over HTTP run it). alice is the admin, bob a user.
 */
export const DEMO_USERS = [
  { id: USER_ID, username: USERNAME, password: PASSWORD, role: 'admin' },
  { id: BOB_ID, username: BOB, password: BOB_PASSWORD, role: 'user' }
] as const

/** The claims `verifyCredentials` (and the demo) give each demo user, by id. */
export const DEMO_CLAIMS: Record<string, { username: string, role: string }> =
  Object.fromEntries(DEMO_USERS.map((user) => [user.id, { username: user.username, role: user.role }]))

/** The users `verifyCredentials` knows: alice and bob. */
const users = new Map<string, { id: string, password: string, claims: Record<string, unknown> }>(
  DEMO_USERS.map((user) => [user.username, { id: user.id, password: user.password, claims: { username: user.username, role: user.role } }]))

export function baseOptions (overrides: Partial<TokenAuthOptions> = {}): TokenAuthOptions {
  return {
    accessTokenSecret: ACCESS_SECRET,
    refreshTokenSecret: REFRESH_SECRET,
    verifyCredentials: async (username, password) => {
      const user = users.get(username)
      return user !== undefined && user.password === password ? { id: user.id, claims: user.claims } : null
    },
    ...overrides
  }
}

/** An app with the plugin and one protected route, `GET /me`; closed at teardown. */
export async function build (t: Test, overrides: Partial<TokenAuthOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions(overrides))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub, sid: request.user.sid }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

export interface LoggedIn {
  response: LightMyRequestResponse
  accessToken: string
  refreshToken: string
}

/** Logs alice in and returns her tokens (the refresh token from the cookie). */
export async function login (app: FastifyInstance, username = USERNAME, password = username === BOB ? BOB_PASSWORD : PASSWORD): Promise<LoggedIn> {
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return { response, accessToken: response.json().accessToken, refreshToken: refreshCookie(response)?.value ?? '' }
}

export function refreshCookie (response: LightMyRequestResponse, name = 'refresh_token') {
  return response.cookies.find((cookie) => cookie.name === name)
}

export function refresh (app: FastifyInstance, refreshToken: string) {
  return app.inject({ method: 'POST', url: '/auth/refresh', cookies: { refresh_token: refreshToken } })
}

export function me (app: FastifyInstance, accessToken: string) {
  return app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } })
}

export interface LogLine { level: number, msg: string, [key: string]: unknown }

/** A pino destination that keeps every line, parsed. */
export function logCapture (): { stream: Writable, lines: LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line))
      callback()
    }
  })
  return { stream, lines }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface WaitForOptions {
  /** Give up after this many ms. @default 5000 */
  timeout?: number
  /** Poll every this many ms. @default 10 */
  interval?: number
  /** What did not happen, for the timeout error; a function is called at the timeout. @default 'condition not met' */
  message?: string | (() => string)
}

/** What `waitFor` rejects with when its condition did not hold in time. */
export class WaitForTimeout extends Error {
  override name = 'WaitForTimeout'
}

/**
 * Polls `condition` (sync or async) until it returns something truthy, and resolves with that;
 * rejects with a WaitForTimeout (`Timed out after <timeout> ms: <message>`) once `timeout` has
 * passed. An error thrown by the condition rejects at once.
 */
export async function waitFor<T> (condition: () => T | Promise<T>, options: WaitForOptions = {}): Promise<NonNullable<T>> {
  const { timeout = 5000, interval = 10, message = 'condition not met' } = options
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await condition()
    if (value) return value as NonNullable<T>
    if (Date.now() > deadline) throw new WaitForTimeout(`Timed out after ${timeout} ms: ${typeof message === 'function' ? message() : message}`)
    await sleep(interval)
  }
}

/** The JSON payload of a JWT, unverified: for asserting what a token carries. */
export function decodePayload (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString())
}

/** What a refresh token names (its user, session and id), unverified: for asserting what it carries. */
export function refreshTokenOf (token: string): { sub: string, sid: string, jti: string } {
  const parts = refreshTokenParts(token)
  if (parts === null) throw new Error(`not a refresh token: ${token.slice(0, 12)}…`)
  return { sub: parts.sub, sid: parts.sid, jti: parts.jti }
}

/** The hash a store holds for a refresh token minted with REFRESH_SECRET (docs/design.md, «Hashed at rest»). */
export function storedHashOf (token: string): string {
  return new RefreshTokens(REFRESH_SECRET).read(token).hash
}

/**
 * What of a token must never be stored or shown: the token, its id (`jti`) and its signature
 * (an access token, a JWT) or tag (a refresh token).
 */
export function tokenSecrets (token: string): { token: string, jti: string, signature: string } {
  const refresh = refreshTokenParts(token)
  if (refresh !== null) return { token, jti: refresh.jti, signature: refresh.tag }
  return { token, jti: decodePayload(token).jti as string, signature: token.split('.')[2] as string }
}

/** Error codes the tests assert most. */
export const MISSING = 'FST_TOKEN_AUTH_MISSING_TOKEN'
export const MALFORMED = 'FST_TOKEN_AUTH_MALFORMED_AUTHORIZATION'
export const INVALID = 'FST_TOKEN_AUTH_INVALID_TOKEN'
export const EXPIRED = 'FST_TOKEN_AUTH_TOKEN_EXPIRED'
export const REVOKED = 'FST_TOKEN_AUTH_SESSION_REVOKED'
export const INVALID_REFRESH = 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'

/** WWW-Authenticate challenges (RFC 6750 §3). */
export const CHALLENGE = 'Bearer'
export const INVALID_REQUEST = 'Bearer error="invalid_request"'
export const INVALID_TOKEN = 'Bearer error="invalid_token"'

/** A MemoryStore without push: revocations travel only through the polled feed. */
export function pollOnly (store: MemoryStore): TokenStore {
  return {
    createSession: (session, options) => store.createSession(session, options),
    getSession: (sessionId, now) => store.getSession(sessionId, now),
    rotate: (request) => store.rotate(request),
    revokeSession: (id, userId, context) => store.revokeSession(id, userId, context),
    revokeUserSessions: (userId, context) => store.revokeUserSessions(userId, context),
    listUserSessions: (userId, now) => store.listUserSessions(userId, now),
    updateUserClaims: (userId, claims, context) => store.updateUserClaims(userId, claims, context),
    revokedSince: (since) => store.revokedSince(since),
    sweep: (now) => store.sweep(now),
    close: () => store.close()
  }
}

/**
 * Boots the plugin with `baseOptions(overrides)`: `ready()` must fail with
 * FST_TOKEN_AUTH_INVALID_OPTION naming `option`. Resolves with the message, for checks on what it
 * reveals.
 */
export async function assertBootFails (t: Test, overrides: Record<string, unknown>, option: string, label = option): Promise<string> {
  const app = Fastify()
  app.register(tokenAuth, baseOptions(overrides as Partial<TokenAuthOptions>))
  const error = await app.ready().then(() => null, (e: unknown) => e as Error & { code?: string })
  await app.close()
  t.equal(error?.code, 'FST_TOKEN_AUTH_INVALID_OPTION', `${label}: ready() fails with INVALID_OPTION`)
  t.ok(error?.message.startsWith(`Invalid option "${option}": `), `${label}: names ${option} (${error?.message})`)
  return error?.message ?? ''
}

/**
 * A hand-driven clock for one test: `Date.now` is frozen at the current time and moves only with
 * `advance`. Install it before building the app: the plugin's session service takes `Date.now`
 * as its clock when it is created, and the JWT checks read it too. Restored at teardown; timers
 * stay real.
 */
export function handClock (t: Test): { advance: (ms: number) => void, now: () => number } {
  let clock = Date.now()
  const realNow = Date.now
  Date.now = () => clock
  t.teardown(() => { Date.now = realNow })
  return { advance: (ms: number) => { clock += ms }, now: () => clock }
}
