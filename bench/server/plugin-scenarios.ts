// The plugin's scenarios, on fastify-token-auth as ./plugin.ts loads it (the packed package by
// default). Logger off; the plugin with its defaults (its routes included) and, for the GET
// scenarios, GET /me and nothing else. Tokens are issued through the plugin
// (`app.tokenAuth.issueSession`) and treated as opaque strings.
//   protected         GET /me behind `app.authenticate`, every client reusing its access token
//   protected-eddsa   the same with an Ed25519 access-token key (accessTokenKeys)
//   protected-dpop    the same with `dpop: 'optional'`: a session bound at login, every request
//                     `Authorization: DPoP` and a fresh ES256 proof (a signature check and a
//                     MemoryStore `useOnce` each)
//   refresh           POST /auth/refresh, MemoryStore holding only the sessions the run issues
//   refresh-dpop      the same, each session bound at login (through the login route, with a
//                     proof), each refresh with a fresh proof of its key
//   refresh-1m        the same with BENCH_PREFILL_SESSIONS (default 1 000 000) more sessions
//   refresh-redis     RedisStore on a node-redis client, a key prefix of its own (REDIS_URL)
//   refresh-redis-1m  the same after loading BENCH_PREFILL_SESSIONS sessions into Redis
//   refresh-postgres  PostgresStore on a pg.Pool (max 10) in a schema of its own (DATABASE_URL)
import Fastify, { type FastifyInstance } from 'fastify'
import type { TokenAuthOptions, TokenStore } from '../../lib/index.js'
import type { AddressInfo } from 'node:net'
import { type Built, fastifyBuilt, type Outcome } from './built.js'
import { proofSigner } from './dpop-proofs.js'
import { loadPlugin, loadPostgresStore, loadRedisStore, type PluginModule } from './plugin.js'
import { type Prefilled, prefillMemory, prefillRedis } from './prefill.js'
import { inWindows } from './records.js'
import { ACCESS_SECRET, REFRESH_SECRET, type Scenario, SESSION_TTL, USER } from './scenarios.js'
import { openPostgres, openRedis } from './stores.js'

function options (overrides: Partial<TokenAuthOptions> = {}): TokenAuthOptions {
  return {
    accessTokenSecret: ACCESS_SECRET,
    refreshTokenSecret: REFRESH_SECRET,
    verifyCredentials: async (username) => username === USER.claims.username ? USER : null,
    ...overrides
  }
}

export async function protectedServer (scenario: 'protected' | 'protected-eddsa' | 'protected-dpop'): Promise<Built> {
  const plugin = await loadPlugin()
  const app = Fastify({ logger: false })
  const eddsa = { accessTokenSecret: undefined, accessTokenKeys: [{ algorithm: 'EdDSA' as const, privateKey: plugin.generateAccessKey('EdDSA') }] }
  await app.register(plugin.default, options(scenario === 'protected-eddsa' ? eddsa : scenario === 'protected-dpop' ? { dpop: 'optional' } : {}))
  app.get('/me', { onRequest: app.authenticate }, async (request) => {
    const user = request.user as { sub: string, username: string }
    return { id: user.sub, username: user.username }
  })
  await app.ready()
  if (scenario !== 'protected-dpop') return fastifyBuilt(app, { token: (await app.tokenAuth.issueSession(USER)).accessToken })
  const signer = proofSigner()
  const { accessToken } = await dpopLogin(app, signer.proofs(1, 'POST', 'http://localhost/auth/login')[0] as string, USER.claims.username)
  const url = () => `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/me`
  return fastifyBuilt(app, { token: accessToken, issue: async (count) => signer.proofs(count, 'GET', url(), accessToken) })
}

/** A login through the route with a DPoP proof (the only way to bind a session); its tokens. */
async function dpopLogin (app: FastifyInstance, proof: string, username: string): Promise<{ accessToken: string, refreshToken: string }> {
  const response = await app.inject({ method: 'POST', url: '/auth/login', payload: { username, password: 'bench' }, headers: { dpop: proof } })
  const cookie = response.cookies.find((cookie) => cookie.name === 'refresh_token')
  if (response.statusCode !== 200 || response.json().tokenType !== 'DPoP' || cookie === undefined) {
    throw new Error(`DPoP login answered ${response.statusCode} ${response.body}`)
  }
  return { accessToken: response.json().accessToken, refreshToken: cookie.value }
}

export async function refreshScenario (scenario: Scenario): Promise<Outcome> {
  const plugin = await loadPlugin()
  const app = Fastify({ logger: false })
  if (scenario === 'refresh-dpop') return await refreshDpopServer(plugin, app)
  if (scenario === 'refresh' || scenario === 'refresh-1m') {
    // Never full: a long run issues more than the default 100 000 sessions, and an evicted
    // session would answer 401.
    const store = new plugin.MemoryStore({ maxSessions: 10_000_000 })
    const prefilled = scenario === 'refresh-1m' ? await prefillMemory(store) : undefined
    return await refreshServer(plugin, app, store, { ...(prefilled === undefined ? {} : { prefilled }) })
  }
  if (scenario === 'refresh-postgres') {
    const postgres = await openPostgres(await loadPostgresStore())
    if ('unreachable' in postgres) return { skip: postgres.unreachable }
    return await refreshServer(plugin, app, postgres.store, { cleanup: postgres.cleanup, storeCpu: postgres.cpu })
  }
  const redis = await openRedis(await loadRedisStore())
  if ('unreachable' in redis) return { skip: redis.unreachable }
  let prefilled: Prefilled | undefined
  if (scenario === 'refresh-redis-1m') {
    const result = await prefillRedis(redis.prefix).catch(async (error: unknown) => {
      await redis.cleanup()
      throw error
    })
    if ('skip' in result) {
      await redis.cleanup()
      return result
    }
    prefilled = result
  }
  return await refreshServer(plugin, app, redis.store, { cleanup: redis.cleanup, storeCpu: redis.cpu, ...(prefilled === undefined ? {} : { prefilled }) })
}

/**
 * The plugin on `store`. The sweep is set to an hour, so it never runs during a measurement (its
 * cost, a walk over every session, is not what the refresh figure is about); no login rate limit.
 */
async function refreshServer (plugin: PluginModule, app: FastifyInstance, store: TokenStore,
  extra: Pick<Built, 'cleanup' | 'storeCpu' | 'prefilled'>): Promise<Built> {
  try {
    await app.register(plugin.default, options({ loginRateLimit: false, refreshTokenTtl: SESSION_TTL, sweepInterval: 60 * 60 * 1000, store }))
    await app.ready()
  } catch (error) {
    await extra.cleanup?.()
    throw error
  }
  // Settle the heap a prefill churned, as a long-running server's would be by then.
  const gc = (globalThis as { gc?: () => void }).gc
  if (extra.prefilled !== undefined && gc !== undefined) for (let i = 0; i < 2; i++) gc()
  let users = 0
  const issue = async (count: number) => {
    const tokens: string[] = new Array(count)
    // Concurrent, so a remote store's round trips overlap; spread over many users, as real sessions are.
    await inWindows(count, 64, async (i) => {
      tokens[i] = (await app.tokenAuth.issueSession({ id: `user-${users++ % 1000}`, claims: USER.claims })).refreshToken
    })
    return tokens
  }
  return fastifyBuilt(app, { ...extra, issue })
}

/**
 * `refresh-dpop`: sessions bound at login, each issued as "<refresh token> <proof>": a refresh
 * token of a fresh session and a proof of its key for POST /auth/refresh. One key serves every
 * session (a key per session would only add the bench's own signing cost); logins go through the
 * route, over as many users as `refresh` spreads its sessions, with no login limit.
 */
async function refreshDpopServer (plugin: PluginModule, app: FastifyInstance): Promise<Built> {
  const store = new plugin.MemoryStore({ maxSessions: 10_000_000 })
  await app.register(plugin.default, options({
    loginRateLimit: false,
    accountRateLimit: false,
    refreshTokenTtl: SESSION_TTL,
    sweepInterval: 60 * 60 * 1000,
    store,
    dpop: 'optional',
    verifyCredentials: async (username) => ({ id: username, claims: USER.claims })
  }))
  await app.ready()
  const signer = proofSigner()
  let users = 0
  const issue = async (count: number) => {
    const logins = signer.proofs(count, 'POST', 'http://localhost/auth/login')
    const refreshes = signer.proofs(count, 'POST', `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/auth/refresh`)
    const issued: string[] = new Array(count)
    await inWindows(count, 64, async (i) => {
      issued[i] = `${(await dpopLogin(app, logins[i] as string, `user-${users++ % 1000}`)).refreshToken} ${refreshes[i] as string}`
    })
    return issued
  }
  return fastifyBuilt(app, { issue })
}
