import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import pg from 'pg'
import { createClient } from 'redis'
import type { Test } from 'tap'
import tokenAuth, { MemoryStore, type TokenStore } from '../lib/index.js'
import { migrate, PostgresStore } from '../lib/stores/postgres/index.js'
import { RedisStore } from '../lib/stores/redis/index.js'
import type { RevocationRecord } from '../lib/stores/types.js'
import { sessionRecord } from '../lib/testing.js'
import { baseOptions, decodePayload, login, PASSWORD, sleep, USERNAME } from './helpers.js'
import { DATABASE_URL, postgresAvailable, REDIS_URL, redisAvailable } from './services.js'

// app.close() must let go of everything the plugin started (its two intervals, the store's push
// subscription, the default store) and nothing the app owns (a store it passed in). The proof
// that nothing is left: a child process that builds an app on a real store, closes it, releases
// what the app itself owns, and then has to exit on its own, without process.exit.

/** Set in the child processes this file spawns: the scenario to run instead of the tests. */
const CHILD_SCENARIO = process.env.FTA_CLOSE_SCENARIO
/** How long a child may take to exit once its app has closed. */
const EXIT_WITHIN = 5000
/** The child's output line marking the app closed; the exit clock starts there. */
const CLOSED = 'app closed'

const until = async (condition: () => boolean, what: string, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** A MemoryStore that counts the calls the plugin's timers and close make, and the revocations it pushes. */
class RecordingStore extends MemoryStore {
  readonly calls = { revokedSince: 0, sweep: 0, close: 0, subscribe: 0, unsubscribe: 0, pushed: 0 }
  /** Held back until released, to close the app while the subscription is still starting. */
  subscribeGate: Promise<void> | undefined

  override async revokedSince (since: number): Promise<RevocationRecord[]> {
    this.calls.revokedSince++
    return await super.revokedSince(since)
  }

  override async sweep (now: number): Promise<number> {
    this.calls.sweep++
    return await super.sweep(now)
  }

  override async close (): Promise<void> {
    this.calls.close++
    await super.close()
  }

  override async subscribeRevocations (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    this.calls.subscribe++
    await this.subscribeGate
    const stop = await super.subscribeRevocations((record) => {
      this.calls.pushed++
      listener(record)
    })
    return async () => {
      this.calls.unsubscribe++
      await stop()
    }
  }
}

/** Records the intervals started while `run` runs, and every interval cleared until `restore`. */
async function recordIntervals<T> (run: () => Promise<T>) {
  const started: Array<{ timer: NodeJS.Timeout, delay: number | undefined }> = []
  const cleared = new Set<unknown>()
  const { setInterval: realSet, clearInterval: realClear } = globalThis
  globalThis.setInterval = ((handler: () => void, delay?: number) => {
    const timer = realSet(handler, delay)
    started.push({ timer, delay })
    return timer
  }) as typeof setInterval
  globalThis.clearInterval = ((timer: NodeJS.Timeout | undefined) => {
    cleared.add(timer)
    realClear(timer)
  }) as typeof clearInterval
  try {
    const result = await run()
    // Only the intervals started by `run` count; clearing stays recorded until restore.
    globalThis.setInterval = realSet
    return {
      result,
      started,
      cleared,
      restore: () => { globalThis.clearInterval = realClear }
    }
  } catch (error) {
    globalThis.setInterval = realSet
    globalThis.clearInterval = realClear
    throw error
  }
}

async function appWith (t: Test, store?: TokenStore, extra: Parameters<typeof baseOptions>[0] = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(tokenAuth, baseOptions({ ...(store === undefined ? {} : { store }), ...extra }))
  await app.ready()
  return app
}

async function tests (): Promise<void> {
  const { default: t } = await import('tap')

  t.test('app.close() clears the sweeper and the revocation poller, and closes the default MemoryStore', async (t) => {
    const { result: app, started, cleared, restore } = await recordIntervals(async () => await appWith(t, undefined, { sweepInterval: 1000, revocationPollInterval: 100 }))
    t.teardown(restore)
    t.same(started.map(({ delay }) => delay).sort(), [100, 1000], 'the plugin runs two intervals: the poller and the sweeper')
    t.ok(started.every(({ timer }) => !timer.hasRef()), 'both unref()ed: they never hold the process open')
    t.notOk(started.some(({ timer }) => cleared.has(timer)), 'running until close')

    const store = app.tokenAuth.store
    t.ok(store instanceof MemoryStore, 'the default store')
    let closed = 0
    const close = store.close.bind(store)
    store.close = async () => { closed++; await close() }
    await app.close()
    t.equal(closed, 1, 'the default store was closed once')
    t.same(started.filter(({ timer }) => !cleared.has(timer)), [], 'every interval was cleared')
  })

  t.test('a store the app passed in: the push subscription ends, polling stops, the store stays open', async (t) => {
    const store = new RecordingStore()
    const app = await appWith(t, store, { revocationPollInterval: 100 })
    await until(() => store.calls.subscribe === 1 && store.calls.revokedSince >= 3, 'the subscription and two polls')

    const { accessToken } = await login(app)
    const sid = decodePayload(accessToken).sid as string
    await app.tokenAuth.revokeSession(sid)
    t.equal(store.calls.pushed, 1, 'a revocation reaches the plugin by push while it runs')

    await app.close()
    t.equal(store.calls.unsubscribe, 1, 'the subscription was ended')
    t.equal(store.calls.close, 0, 'the store was not closed: it is the app\'s')

    const polls = store.calls.revokedSince
    await sleep(350) // more than three poll intervals
    t.equal(store.calls.revokedSince, polls, 'no poll after close')

    // The store still works for the app, and pushes to nobody from this plugin.
    const now = Date.now()
    const record = sessionRecord({ createdAt: now })
    await store.createSession(record)
    t.same((await store.listUserSessions(record.userId, now)).map((session) => session.id), [record.id], 'still usable')
    t.ok(await store.revokeSession(record.id, undefined, { now, keepFor: 60_000 }), 'revoked after close')
    t.equal(store.calls.pushed, 1, 'not pushed to the closed app')
  })

  t.test('closed while the subscription is still starting: it is ended as soon as it starts', async (t) => {
    const store = new RecordingStore()
    let release!: () => void
    store.subscribeGate = new Promise((resolve) => { release = resolve })
    const app = await appWith(t, store)
    await until(() => store.calls.subscribe === 1, 'the subscription attempt')
    // Today close() does not wait for the attempt; were it to, the release lets it finish.
    const closed = app.close()
    await Promise.race([closed, sleep(50)])
    release()
    await closed
    await until(() => store.calls.unsubscribe === 1, 'the late subscription to be ended')
    t.equal(store.calls.close, 0, 'the store was not closed')
  })

  t.test('a subscription that failed is not retried after close', async (t) => {
    const store = new RecordingStore()
    store.subscribeGate = Promise.reject(new Error('store down'))
    store.subscribeGate.catch(() => {})
    const app = await appWith(t, store, { revocationPollInterval: 100 })
    // The poll retries the failed subscription: wait for one retry, then close.
    await until(() => store.calls.subscribe >= 2, 'a retried subscription')
    await app.close()
    const attempts = store.calls.subscribe
    await sleep(350)
    t.equal(store.calls.subscribe, attempts, 'no subscription retry after close')
    t.equal(store.calls.unsubscribe, 0)
  })

  /**
   * Runs a scenario in a child process; it must report its app closed and then exit by itself,
   * with code 0, within EXIT_WITHIN ms.
   */
  async function exitsByItself (t: Test, scenario: string): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0', FTA_CLOSE_SCENARIO: scenario },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    // Starting tsx and the app is not what is measured, but it must not hang either.
    const setupTimer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    let exitTimer: NodeJS.Timeout | undefined
    let killed = false
    child.stdout.on('data', () => {
      if (exitTimer === undefined && stdout.includes(CLOSED)) {
        clearTimeout(setupTimer)
        exitTimer = setTimeout(() => { killed = true; child.kill('SIGKILL') }, EXIT_WITHIN)
      }
    })
    const [code, signal] = await exited
    clearTimeout(setupTimer)
    clearTimeout(exitTimer)
    t.ok(stdout.includes(CLOSED), `${scenario}: the app closed`, { stdout, stderr })
    t.notOk(killed, `${scenario}: exited by itself within ${EXIT_WITHIN} ms of app.close()`, { stderr })
    t.equal(signal, null, `${scenario}: not killed`)
    t.equal(code, 0, `${scenario}: exit code 0`, { stderr })
  }

  t.test('a process with the default store exits by itself after app.close()', async (t) => {
    await exitsByItself(t, 'memory')
  })

  t.test('a process with a Redis store exits by itself after app.close()', async (t) => {
    const skip = await redisAvailable()
    if (skip !== undefined) {
      t.plan(0, skip)
      return
    }
    for (const scenario of ['redis-client', 'redis-client-early', 'redis-url', 'ioredis']) {
      await exitsByItself(t, scenario)
    }
  })

  t.test('a process with a PostgreSQL store exits by itself after app.close()', async (t) => {
    const skip = await postgresAvailable()
    if (skip !== undefined) {
      t.plan(0, skip)
      return
    }
    for (const scenario of ['postgres', 'postgres-early']) {
      await exitsByItself(t, scenario)
    }
  })
}

/**
 * One scenario, in a child process: build an app on a store, wait for its revocation
 * subscription (unless `-early`), log in and out, close the app, release what the app owns.
 * Anything the plugin leaves open keeps the process alive, and the parent sees it.
 */
async function scenario (name: string): Promise<void> {
  const early = name.endsWith('-early')
  const kind = name.replace(/-early$/, '')
  const prefix = `fta-close-test:${randomBytes(6).toString('hex')}:`
  const schema = `fta_close_${randomBytes(6).toString('hex')}`
  /** What the app releases after app.close(): its own clients, never the plugin's. */
  let release = async (): Promise<void> => {}
  let store: TokenStore | undefined

  if (kind === 'redis-client') {
    const client = createClient({ url: REDIS_URL })
    await client.connect()
    store = new RedisStore({ client, prefix })
    release = async () => {
      const keys: string[] = []
      for await (const batch of client.scanIterator({ MATCH: `${prefix}*` })) keys.push(...batch)
      if (keys.length > 0) await client.del(keys)
      await client.close()
    }
  } else if (kind === 'redis-url') {
    const owned = new RedisStore({ url: REDIS_URL, prefix })
    store = owned
    // Only a subscription here, no session: nothing written to clean up.
    release = async () => { await owned.close() }
  } else if (kind === 'ioredis') {
    const client = new Redis(REDIS_URL)
    store = new RedisStore({ client, prefix })
    release = async () => { await client.quit() }
  } else if (kind === 'postgres') {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 })
    pool.on('error', () => {}) // as every app should: a dropped idle connection must not end the process
    await pool.query(`CREATE SCHEMA ${schema}`)
    await migrate(pool, { schema })
    store = new PostgresStore({ pool, schema })
    release = async () => {
      await pool.query(`DROP SCHEMA ${schema} CASCADE`)
      await pool.end()
    }
  } else if (kind !== 'memory') {
    throw new Error(`unknown scenario ${name}`)
  }

  let subscribed: Promise<void> = Promise.resolve()
  if (store?.subscribeRevocations !== undefined) {
    const subscribe = store.subscribeRevocations.bind(store)
    subscribed = new Promise((resolve) => {
      store.subscribeRevocations = async (listener) => {
        const stop = await subscribe(listener)
        resolve()
        return stop
      }
    })
  }
  const app = Fastify()
  await app.register(tokenAuth, baseOptions(store === undefined ? {} : { store }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ id: request.user.sub }))
  if (early) {
    await app.ready()
  } else {
    // A real server and a real client: their sockets must go too.
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    await subscribed
    const response = await fetch(`${address}/auth/login`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: USERNAME, password: PASSWORD })
    })
    if (response.status !== 200) throw new Error(`login: ${response.status}`)
    const { accessToken } = await response.json() as { accessToken: string }
    // Logging out everywhere revokes, which is pushed back to this process.
    const logout = await fetch(`${address}/auth/logout?all=true`, { method: 'POST', headers: { authorization: `Bearer ${accessToken}` } })
    if (logout.status !== 204) throw new Error(`logout: ${logout.status}`)
  }
  await app.close()
  process.stdout.write(`${CLOSED}\n`)
  // Diagnostics only, unref()ed so it keeps nothing alive: what is still holding the process.
  setTimeout(() => { process.stderr.write(`still running 3 s after close: ${process.getActiveResourcesInfo().join(', ')}\n`) }, 3000).unref()
  await release()
}

if (CHILD_SCENARIO !== undefined) {
  await scenario(CHILD_SCENARIO)
} else {
  await tests()
}
