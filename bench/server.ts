// One benchmark server per process: `node --import tsx bench/server.ts <scenario>`.
// Prints `token <jwt>` (scenarios that need one), then `listening <port>` on stdout.
// Over IPC (when spawned with one) it answers, outside HTTP so only the route is measured:
//   { type: 'usage', id }        -> { type: 'usage', id, cpu: process.cpuUsage(), elu: eventLoopUtilization() }
//   { type: 'issue', id, count } -> { type: 'tokens', id, tokens } (refresh only: `count` refresh
//                                   tokens of freshly issued sessions)
import fastifyJwt from '@fastify/jwt'
import Fastify, { type FastifyInstance } from 'fastify'
import { performance } from 'node:perf_hooks'
import tokenAuth, { MemoryStore, type TokenAuthOptions } from '../lib/index.js'

const SCENARIOS = ['bare', 'diy', 'protected', 'refresh'] as const
type Scenario = typeof SCENARIOS[number]

const ACCESS_SECRET = 'bench-access-secret-0123456789-abcdefghijklmnop'
const REFRESH_SECRET = 'bench-refresh-secret-0123456789-abcdefghijklmno'
const USER = { id: 'user-1', claims: { username: 'alice' } }

type Message = { type: 'issue', id: number, count: number } | { type: 'usage', id: number }

function pluginOptions (overrides: Partial<TokenAuthOptions> = {}): TokenAuthOptions {
  return {
    accessTokenSecret: ACCESS_SECRET,
    refreshTokenSecret: REFRESH_SECRET,
    verifyCredentials: async (username) => username === 'alice' ? USER : null,
    ...overrides
  }
}

interface Built {
  app: FastifyInstance
  token?: string
  issue?: (count: number) => Promise<string[]>
}

async function build (scenario: Scenario): Promise<Built> {
  const app = Fastify({ logger: false })
  const hello = async () => ({ hello: 'world' })

  switch (scenario) {
    case 'bare':
      app.get('/hello', hello)
      return { app }

    case 'diy': {
      await app.register(fastifyJwt, { secret: ACCESS_SECRET })
      app.get('/hello', { onRequest: async (request) => { await request.jwtVerify() } }, hello)
      await app.ready()
      // The same claims, lifetime and size as the plugin's access token, for a like-for-like check.
      const token = app.jwt.sign({ sub: USER.id, sid: 'x'.repeat(22), jti: 'y'.repeat(22), username: 'alice' }, { expiresIn: '15m' })
      return { app, token }
    }

    case 'protected': {
      // Defaults throughout: memory store, routes on, verify cache on.
      await app.register(tokenAuth, pluginOptions())
      app.get('/hello', { onRequest: app.authenticate }, hello)
      await app.ready()
      const { accessToken } = await app.tokenAuth.issueSession(USER)
      return { app, token: accessToken }
    }

    case 'refresh': {
      // A MemoryStore like the default one, but never full: a long run pre-issues more than
      // the default 100 000 sessions, and an evicted session would answer 401.
      await app.register(tokenAuth, pluginOptions({
        loginRateLimit: false,
        refreshTokenTtl: 7 * 24 * 60 * 60,
        store: new MemoryStore({ maxSessions: 10_000_000 })
      }))
      await app.ready()
      let users = 0
      const issue = async (count: number) => {
        const tokens: string[] = []
        for (let i = 0; i < count; i++) {
          // Spread over many users, as real sessions would be.
          const set = await app.tokenAuth.issueSession({ id: `user-${users++ % 1000}`, claims: USER.claims })
          tokens.push(set.refreshToken)
        }
        return tokens
      }
      return { app, issue }
    }
  }
}

async function main (): Promise<void> {
  const scenario = process.argv[2] as Scenario
  if (!SCENARIOS.includes(scenario)) {
    console.error(`usage: node --import tsx bench/server.ts <${SCENARIOS.join('|')}>`)
    process.exit(2)
  }
  const { app, token, issue } = await build(scenario)
  process.on('message', (message: Message) => {
    answer(message).then((reply) => process.send?.(reply), (error: unknown) => {
      console.error(error)
      process.exit(1)
    })
  })
  async function answer (message: Message): Promise<object> {
    if (message.type === 'usage') {
      return { type: 'usage', id: message.id, cpu: process.cpuUsage(), elu: performance.eventLoopUtilization() }
    }
    if (issue === undefined) throw new Error(`the ${scenario} server issues no tokens`)
    return { type: 'tokens', id: message.id, tokens: await issue(message.count) }
  }
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  // Close cleanly on SIGTERM so `--cpu-prof` gets to write its profile; leave with the parent.
  const stop = () => { app.close().finally(() => process.exit(0)) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  process.once('disconnect', stop)
  if (token !== undefined) process.stdout.write(`token ${token}\n`)
  process.stdout.write(`listening ${new URL(address).port}\n`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
