// A worker thread of the refresh-redis-1m server (./prefill.ts): loads sessions n = from … to-1
// into Redis through the store's own createSession (ids from `sessionIdFor`, as the plugin makes
// them), pipelined on two connections of its own, until done or `deadline` (ms since the epoch).
// Posts `{ loaded }`, or `{ unreachable }`. Two of these keep both cores busy.
import { parentPort, workerData } from 'node:worker_threads'
import { loadRedisStore } from './plugin.js'
import { inWindows, sessionRecord } from './records.js'
import { connectRedis } from './stores.js'

export interface PrefillJob {
  prefix: string
  from: number
  to: number
  users: number
  ttlMs: number
  deadline: number
}

async function load ({ prefix, from, to, users, ttlMs, deadline }: PrefillJob): Promise<object> {
  const { RedisStore } = await loadRedisStore()
  const clients = []
  try {
    const loaders: Array<InstanceType<typeof RedisStore>> = []
    for (let i = 0; i < 2; i++) {
      const client = await connectRedis(true)
      if ('unreachable' in client) return client
      clients.push(client)
      loaders.push(new RedisStore({ client, prefix }))
    }
    const loaded = await inWindows(to - from, 1000, async (i) => {
      const n = from + i
      const loader = loaders[n % loaders.length]!
      await loader.createSession(sessionRecord(n, n % users, Date.now(), ttlMs, loader.sessionIdFor(`user-${n % users}`)))
    }, deadline, Date.now)
    return { loaded }
  } finally {
    await Promise.all(clients.map(async (client) => await client.close()))
  }
}

load(workerData as PrefillJob).then((result) => parentPort!.postMessage(result), (error: unknown) => {
  parentPort!.postMessage({ error: String((error as Error)?.stack ?? error) })
})
