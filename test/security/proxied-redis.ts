// A Redis database of the attack suite's own, reached through a TcpProxy that the store-fault
// cases switch between forward, refuse (Redis down), blackhole (Redis hangs) and mute (commands
// run, replies lost).
import { createClient } from 'redis'
import type { Test } from 'tap'
import { REDIS_URL } from '../services.js'
import { TcpProxy } from '../tcp-proxy.js'

/**
 * Database `database` of the test Redis, emptied before and after (the example's fixed key
 * prefix then meets nothing another run or suite left, records of an older format say), behind
 * a proxy; `url` is what the example's REDIS_URL takes. Both closed at teardown.
 */
export async function proxiedRedis (t: Test, database: number): Promise<{ proxy: TcpProxy, url: string }> {
  const target = new URL(REDIS_URL)
  const emptied = createClient({ url: `redis://${target.host}/${database}` })
  await emptied.connect()
  await emptied.flushDb()
  t.teardown(async () => {
    await emptied.flushDb()
    emptied.destroy()
  })
  const proxy = await TcpProxy.start(Number(target.port || 6379), target.hostname)
  t.teardown(() => proxy.close())
  return { proxy, url: `redis://${proxy.url}/${database}` }
}
