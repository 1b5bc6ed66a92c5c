/*
 * Clients: node-redis and ioredis behind one small interface (`Connection`), told apart by their
 * methods, so the store imports neither library at load time. The `*Like` interfaces say what
 * the store uses of each; they are public, the types of the `client` option.
 */

/** A command argument: packed records and hashes are sent as bytes. */
export type Arg = string | Buffer

/**
 * node-redis's per-command options as far as this store sets them: `typeMapping` with
 * `{ [RESP_TYPES.BLOB_STRING]: Buffer }` for replies that hold packed records.
 */
export interface NodeRedisCommandOptions {
  typeMapping?: Record<number, unknown>
}

/** A node-redis 5/6 client from `createClient()`, as far as this store uses it. */
export interface NodeRedisClientLike {
  readonly isOpen: boolean
  readonly isReady: boolean
  connect (): Promise<unknown>
  sendCommand (args: Arg[], options?: NodeRedisCommandOptions): Promise<unknown>
  duplicate (): NodeRedisClientLike
  subscribe (channel: string, listener: (message: string) => void): Promise<unknown>
  on (event: 'error', listener: (error: Error) => void): unknown
  close (): Promise<unknown>
  destroy (): unknown
}

/** A node-redis 5/6 cluster client from `createCluster()`, as far as this store uses it. */
export interface NodeRedisClusterLike {
  readonly isOpen: boolean
  readonly masters: readonly object[]
  connect (): Promise<unknown>
  sendCommand (firstKey: string | undefined, isReadonly: boolean | undefined, args: Arg[], options?: NodeRedisCommandOptions): Promise<unknown>
  nodeClient (node: object): Promise<{ sendCommand (args: string[]): Promise<unknown> }>
  subscribe (channel: string, listener: (message: string | Buffer) => void): Promise<unknown>
  unsubscribe (channel: string, listener: (message: string | Buffer) => void): Promise<unknown>
  close (): Promise<unknown>
}

/** An ioredis 5/6 client (`Redis` or `Cluster`), as far as this store uses it. */
export interface IoredisLike {
  readonly isCluster: boolean
  readonly status: string
  call (command: string, args: Arg[]): Promise<unknown>
  /** As `call`, its strings answered as Buffers. */
  callBuffer (command: string, args: Arg[]): Promise<unknown>
  nodes? (role: 'master'): IoredisLike[]
  duplicate (): IoredisSubscriberLike
  quit (): Promise<unknown>
}

interface IoredisSubscriberLike {
  subscribe (channel: string): Promise<unknown>
  on (event: 'message', listener: (channel: string, message: string) => void): unknown
  on (event: 'error', listener: (error: Error) => void): unknown
  quit (): Promise<unknown>
  disconnect (): unknown
}

export type RedisClientLike = NodeRedisClientLike | NodeRedisClusterLike | IoredisLike

export type Send = (args: string[]) => Promise<unknown>

/** What the store needs from a client, whatever its library. */
export interface Connection {
  /**
   * Sends one command; `key` routes it to its node in a cluster (`undefined`: any node).
   * `binary`: the reply's strings come as Buffers (replies holding packed records), else as strings.
   */
  send (key: string | undefined, args: Arg[], binary?: boolean): Promise<unknown>
  /** A sender per master, for commands about one node's own data (SCAN, INFO). */
  masters (): Promise<Send[]>
  /** Subscribes on a connection of its own; resolves with the unsubscribe function. */
  subscribe (channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>
  /** Makes the client usable (node-redis clients need `connect()`; others connect by themselves). */
  connect (): Promise<void>
  close (): Promise<void>
}

/** An error listener for errors reported elsewhere too (a rejected command) or wanted by nobody. */
export function ignore (): void {}

/**
 * Most time a subscriber connection may take to subscribe. While Redis is down a client keeps
 * reconnecting and `connect()` never settles: the attempt is given up (its connection destroyed)
 * and the plugin retries later, instead of a pending connection that keeps the process alive.
 */
const SUBSCRIBE_TIMEOUT = 5000

async function withinSubscribeTimeout (attempt: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis subscription not ready within ${SUBSCRIBE_TIMEOUT} ms`)), SUBSCRIBE_TIMEOUT)
  })
  attempt.catch(ignore) // a late failure of an abandoned attempt is nobody's to handle
  await Promise.race([attempt, deadline]).finally(() => clearTimeout(timer))
}

/** The adapter for a client the app passed, told apart by its methods. */
export function connectionFor (client: RedisClientLike): Connection {
  if ('isCluster' in client && typeof client.call === 'function') return ioredisConnection(client)
  if ('masters' in client && typeof client.nodeClient === 'function') return nodeRedisClusterConnection(client)
  if (typeof (client as Partial<NodeRedisClientLike>).sendCommand === 'function') return nodeRedisConnection(client as NodeRedisClientLike)
  throw new TypeError('RedisStore option "client" must be a node-redis client or cluster, or an ioredis client or cluster')
}

/**
 * A command sent while the connection is down would wait in the client's offline queue and run
 * after the plugin has already answered 503 (a login that creates a session nobody holds, a
 * refresh that rotates away the token the client kept): refuse it at once instead, whatever
 * the app's client options say.
 */
function notConnected (): Error {
  return new Error('Redis connection is not ready')
}

/**
 * node-redis's option for replies whose strings should come as Buffers: RESP_TYPES.BLOB_STRING
 * (the type byte `$`, 36) mapped to Buffer. Spelt out so the store imports nothing of node-redis.
 */
const BINARY_REPLIES: NodeRedisCommandOptions = { typeMapping: { 36: Buffer } }

export function nodeRedisConnection (client: NodeRedisClientLike): Connection {
  const send = async (args: Arg[], binary = false): Promise<unknown> => {
    if (!client.isReady) throw notConnected()
    return binary ? await client.sendCommand(args, BINARY_REPLIES) : await client.sendCommand(args)
  }
  return {
    send: async (_key, args, binary) => await send(args, binary),
    masters: async () => [send],
    async subscribe (channel, onMessage) {
      // A subscribed RESP2 connection can run nothing else: listen on a duplicate.
      const subscriber = client.duplicate()
      subscriber.on('error', ignore)
      try {
        await withinSubscribeTimeout((async () => {
          await subscriber.connect()
          await subscriber.subscribe(channel, onMessage)
        })())
      } catch (error) {
        subscriber.destroy()
        throw error
      }
      return async () => { await subscriber.close() }
    },
    async connect () {
      if (!client.isOpen) await client.connect()
    },
    async close () {
      // close() waits for replies still due; a client still trying to connect has none to wait for.
      if (client.isReady) await client.close()
      else client.destroy()
    }
  }
}

function nodeRedisClusterConnection (cluster: NodeRedisClusterLike): Connection {
  return {
    send: async (key, args, binary) => binary
      ? await cluster.sendCommand(key, false, args, BINARY_REPLIES)
      : await cluster.sendCommand(key, false, args),
    masters: async () => await Promise.all(cluster.masters.map(async (master) => {
      const client = await cluster.nodeClient(master)
      return async (args: string[]) => await client.sendCommand(args)
    })),
    async subscribe (channel, onMessage) {
      // The cluster client already subscribes on a connection of its own (its pub/sub node).
      const listener = (message: string | Buffer): void => { onMessage(String(message)) }
      await cluster.subscribe(channel, listener)
      return async () => { await cluster.unsubscribe(channel, listener) }
    },
    async connect () {
      if (!cluster.isOpen) await cluster.connect()
    },
    async close () {
      await cluster.close()
    }
  }
}

/** ioredis states in which a command would only be queued for a connection that is gone. */
const IOREDIS_DOWN = new Set(['reconnecting', 'close', 'end'])

function ioredisConnection (client: IoredisLike): Connection {
  const sender = (node: IoredisLike, binary = false) => async (args: Arg[]): Promise<unknown> => {
    if (IOREDIS_DOWN.has(node.status)) throw notConnected()
    const [command, ...rest] = args as [string, ...Arg[]]
    return binary ? await node.callBuffer(command, rest) : await node.call(command, rest)
  }
  return {
    // ioredis routes by the command's keys itself (EVALSHA included).
    send: async (_key, args, binary) => await sender(client, binary)(args),
    masters: async () => (client.nodes?.('master') ?? [client]).map((node) => sender(node)),
    async subscribe (channel, onMessage) {
      const subscriber = client.duplicate()
      subscriber.on('error', ignore)
      subscriber.on('message', (from, message) => { if (from === channel) onMessage(message) })
      try {
        await withinSubscribeTimeout(subscriber.subscribe(channel))
      } catch (error) {
        subscriber.disconnect()
        throw error
      }
      return async () => { await subscriber.quit() }
    },
    async connect () {},
    async close () {
      await client.quit()
    }
  }
}
