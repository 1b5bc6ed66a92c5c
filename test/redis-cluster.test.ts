import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster } from 'ioredis'
import { createCluster } from 'redis'
import t from 'tap'
import { RedisStore } from '../lib/stores/redis/index.js'
import type { SessionRecord } from '../lib/stores/types.js'
import { defineStoreConformance } from '../lib/testing.js'
import { waitFor } from './helpers.js'

/*
 * A real 3-master Redis Cluster, started on spare ports for this file and torn down after it:
 * the store's key layout must keep every script in one hash slot (no CROSSSLOT), spread users
 * over the masters, and pass the conformance kit through node-redis and ioredis cluster clients.
 */

const exec = promisify(execFile)
const MASTERS = 3

const missing = await redisServerMissing()
if (missing !== undefined) {
  if (process.env.CI === 'true') throw new Error(`${missing}. Under CI=true this is a failure, not a skip.`)
  t.plan(0, missing)
} else {
  await suite()
}

async function redisServerMissing (): Promise<string | undefined> {
  try {
    await exec('redis-server', ['--version'])
    await exec('redis-cli', ['--version'])
    return undefined
  } catch (error) {
    return `redis-server and redis-cli are needed to start a local Redis Cluster (${(error as Error).message})`
  }
}

async function suite (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'fta-redis-cluster-'))
  const ports = await sparePorts(MASTERS)
  t.teardown(async () => {
    for (const port of ports) {
      const pid = await readFile(join(dir, `${port}.pid`), 'utf8').catch(() => undefined)
      if (pid !== undefined) {
        try {
          process.kill(Number(pid))
        } catch {}
      }
    }
    await rm(dir, { recursive: true, force: true })
  })
  for (const port of ports) {
    await exec('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no',
      '--daemonize', 'yes', '--dir', dir, '--pidfile', join(dir, `${port}.pid`), '--logfile', join(dir, `${port}.log`)
    ])
  }
  // Polled every 100 ms for up to 30 s (a cluster normally forms in a few seconds).
  const clusterUp = { timeout: 30_000, interval: 100, message: 'the local Redis Cluster did not come up' }
  await waitFor(async () => (await Promise.all(ports.map(async (port) => await cli(port, 'ping')))).every((reply) => reply === 'PONG'), clusterUp)
  await exec('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'])
  await waitFor(async () => (await Promise.all(ports.map(async (port) => await cli(port, 'cluster', 'info'))))
    .every((info) => info.includes('cluster_state:ok')), clusterUp)

  const cluster = createCluster({ rootNodes: ports.map((port) => ({ url: `redis://127.0.0.1:${port}` })) })
  cluster.on('error', () => {})
  await cluster.connect()
  const ioCluster = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })))
  t.teardown(async () => {
    await cluster.close()
    await ioCluster.quit()
  })

  const prefixes = new WeakMap<RedisStore, string>()
  function kitStore (client: ConstructorParameters<typeof RedisStore>[0]['client'], recordFormat?: 'json'): RedisStore {
    const prefix = `fta-test:${randomBytes(6).toString('hex')}:`
    const store = new RedisStore({ client, prefix, recordFormat })
    prefixes.set(store, prefix)
    return store
  }

  t.test('conformance kit through a node-redis cluster client', async (t) => {
    defineStoreConformance({ test: (name, fn) => t.test(name, fn), createStore: () => kitStore(cluster) })
  })

  t.test('conformance kit through an ioredis cluster client', async (t) => {
    defineStoreConformance({ test: (name, fn) => t.test(name, fn), createStore: () => kitStore(ioCluster) })
  })

  t.test('conformance kit through a node-redis cluster client, recordFormat json', async (t) => {
    defineStoreConformance({ test: (name, fn) => t.test(name, fn), createStore: () => kitStore(cluster, 'json') })
  })

  for (const recordFormat of ['packed', 'json'] as const) {
    t.test(`users spread over the masters; each user's keys share one slot (recordFormat ${recordFormat})`, async (t) => {
      const prefix = `fta-test:${randomBytes(6).toString('hex')}:`
      const store = new RedisStore({ client: cluster, prefix, recordFormat })
      t.teardown(() => store.close())
      const now = Date.now()
      const users = Array.from({ length: 12 }, (_, i) => `user-${i}`)
      for (const userId of users) {
        for (let n = 0; n < 2; n++) {
          const id = n === 0 ? randomBytes(16).toString('base64url') : store.sessionIdFor(userId)
          await store.createSession(session(id, userId, now))
        }
      }
      // Where each key landed: every master's own keys under this prefix. Packed, a user's two
      // sessions share their bucket; JSON, each has a record key, listed in the user's index.
      const userKey = recordFormat === 'packed' ? ':b' : ':i'
      const keysByMaster = await Promise.all(ports.map(async (port) => (await cli(port, '--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean)))
      const mastersWithUsers = keysByMaster.filter((keys) => keys.some((key) => key.endsWith(userKey))).length
      t.ok(mastersWithUsers > 1, `the 12 users' ${userKey} keys sit on ${mastersWithUsers} of ${MASTERS} masters`)
      for (const userId of users) {
        t.equal((await store.listUserSessions(userId, now)).length, 2, `${userId} lists both sessions`)
      }
      const sessionKeys = keysByMaster.flat().filter((key) => key.includes(':s:') || key.endsWith(':b'))
      t.equal(sessionKeys.length, recordFormat === 'packed' ? 12 : 24)
      for (const key of sessionKeys) {
        const index = key.slice(0, key.indexOf('}:') + 1) + ':i'
        t.equal(await cluster.sendCommand(key, true, ['CLUSTER', 'KEYSLOT', key]), await cluster.sendCommand(index, true, ['CLUSTER', 'KEYSLOT', index]),
          `${key} shares its index's slot`)
      }
      const revoked = await store.revokeUserSessions('user-0', { now, keepFor: 60_000 })
      t.equal(revoked.length, 2)
      t.equal(await store.sweep(now + 15 * 60_000), 22, 'sweep walks every master')
    })
  }

  for (const [name, client] of [['node-redis', cluster], ['ioredis', ioCluster]] as const) {
    t.test(`${name}: a session cap and a claims update, each one script over a user's bucket and keys of their own, for users across the masters`, async (t) => {
      const store = kitStore(client)
      t.teardown(() => store.close())
      const now = Date.now()
      for (const userId of Array.from({ length: 6 }, (_, i) => `capped-${i}`)) {
        // Six sessions: four in the bucket, two in keys of their own; the oldest are the least recently used.
        const sessions = Array.from({ length: 6 }, (_, i) => session(store.sessionIdFor(userId), userId, now + i))
        for (const one of sessions) await store.createSession(one)
        const newest = session(store.sessionIdFor(userId), userId, now + 10)
        const result = await store.createSession(newest, { sessionLimit: { max: 2, policy: 'end-least-recent', keepRevocationFor: 60_000 } })
        t.strictSame(result, { outcome: 'created', ended: sessions.slice(0, 5) }, `${userId}: five ended`)
        const changes = await store.updateUserClaims(userId, { role: 'x' }, { now: now + 11, keepFor: 60_000 })
        t.strictSame(changes, [sessions[5], newest].map((one) => ({ sessionId: (one as SessionRecord).id, revokedAt: now + 11, claimsVersion: 1 })), `${userId}: two updated`)
        t.strictSame(await store.listUserSessions(userId, now + 11), [sessions[5], newest].map((one) => ({ ...one, claims: { role: 'x' }, claimsVersion: 1 })))
      }
      t.equal((await store.revokedSince(now)).length, 6 * 7, 'every ended session and every claims change is in the feed')
    })
  }

  t.test('a cluster client not yet connected is connected on first use, and closed by closeClient', async (t) => {
    const own = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${ports[0]}` }] })
    own.on('error', () => {})
    const store = new RedisStore({ client: own, prefix: `fta-test:${randomBytes(6).toString('hex')}:`, closeClient: true })
    const original = session(randomBytes(16).toString('base64url'), 'user-c', Date.now())
    await store.createSession(original)
    t.strictSame(await store.listUserSessions('user-c', original.createdAt), [original])
    t.equal(own.isOpen, true)
    await store.close()
    t.equal(own.isOpen, false)
  })

  t.test('no command of the whole file met a CROSSSLOT; scripts failed only with the first NOSCRIPT per script and node', async (t) => {
    for (const port of ports) {
      const errors = stats(await cli(port, 'info', 'errorstats'), 'errorstat_')
      const commands = stats(await cli(port, 'info', 'commandstats'), 'cmdstat_')
      t.equal(errors.get('CROSSSLOT'), undefined, `node ${port}: no CROSSSLOT`)
      // (The clients' handshakes meet some ERR replies of Redis 7.0, e.g. CLIENT SETINFO: not ours.)
      const failing = [...commands].filter(([, stat]) => /(failed|rejected)_calls=[1-9]/.test(stat)).map(([name]) => name)
      t.strictSame(failing, ['evalsha'], `node ${port}: only EVALSHA failed`)
      t.equal(/failed_calls=(\d+)/.exec(commands.get('evalsha') ?? '')?.[1], /count=(\d+)/.exec(errors.get('NOSCRIPT') ?? '')?.[1],
        `node ${port}: every EVALSHA failure was a NOSCRIPT, answered by EVAL`)
      t.ok(commands.has('eval'), `node ${port}: scripts were loaded there`)
    }
  })
}

function session (id: string, userId: string, now: number): SessionRecord {
  return {
    id,
    userId,
    claims: { role: 'user' },
    createdAt: now,
    lastUsedAt: now,
    expiresAt: now + 10 * 60_000,
    absoluteExpiresAt: now + 60 * 60_000,
    tokenHash: randomBytes(32).toString('base64url'),
    previousTokenHash: null,
    rotatedAt: null,
    graceUses: 0,
    userAgent: 'agent/1',
    ip: '198.51.100.1',
    firstUserAgent: 'agent/1',
    firstIp: '198.51.100.1',
    authentication: { time: now },
    claimsVersion: 0
  }
}

/** `INFO` lines `<prefix><name>:<stat>`, by name. */
function stats (info: string, prefix: string): Map<string, string> {
  const lines = info.split(/\r?\n/).filter((line) => line.startsWith(prefix))
  return new Map(lines.map((line) => [line.slice(prefix.length, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]))
}

async function cli (port: number, ...args: string[]): Promise<string> {
  try {
    return (await exec('redis-cli', ['-p', String(port), ...args])).stdout.trim()
  } catch {
    return ''
  }
}

/** `count` ports p that are free, with p + 10000 (the cluster bus port) free too. */
async function sparePorts (count: number): Promise<number[]> {
  const ports: number[] = []
  while (ports.length < count) {
    const port = 20_000 + Math.floor(Math.random() * 10_000)
    if (!ports.includes(port) && await free(port) && await free(port + 10_000)) ports.push(port)
  }
  return ports
}

async function free (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}
