// Memory per stored session, for `npm run bench` (which runs it as
// `node --expose-gc --import tsx bench/memory.ts`) or on its own. Prints progress on stderr and,
// last on stdout, one line `result <json>` (a `SessionMemory`).
//
// Every session is what the plugin stores for a real login followed by one refresh: a random
// session id (from `store.sessionIdFor(userId)` when the store has it, as the plugin asks), the
// user's id, claims `{ username }`, the hashes of the current and of the previous refresh token
// id, the grace-window start, and a 111-character User-Agent and an IPv4 built for each session,
// so no two sessions share a string (as with strings parsed from real requests).
//   MemoryStore  V8 heap used (after full GCs) with N sessions in the store, minus before, / N.
//                Where the bytes go: the exact size of every object the store holds, from a
//                heap-snapshot diff of a smaller store (strings, records, numbers), and the hash
//                tables, whose snapshot sizes are wrong (V8 overstates them ~2x), from the heap
//                growth of the same two tables built alone (`Map<id, record>` and the user index
//                `Map<userId, Set<id>>`, as MemoryStore declares them) with N entries.
//   RedisStore   MEMORY USAGE (SAMPLES 0: exact) of every key under the run's prefix, / N: the
//                users' buckets (a user's first sessions, packed, in one key) and any record keys
//                and user indexes (sorted sets) of sessions beyond a bucket's room. Also
//                INFO used_memory growth / N, which adds what MEMORY USAGE leaves out (each key's
//                entry in the expiry table) but counts whatever else the server did meanwhile.
//                The prefix is 4 bytes long, as the default `fta:`.
// Each with 3 sessions per user and with 1. Env: BENCH_MEMORY_SESSIONS (MemoryStore, default
// 200000), BENCH_MEMORY_SNAPSHOT_SESSIONS (the snapshot diff, default 10000, 0: no breakdown),
// BENCH_REDIS_MEMORY_SESSIONS (default 20000), REDIS_URL.
import { randomBytes } from 'node:crypto'
import { getHeapSnapshot, getHeapStatistics } from 'node:v8'
import { MemoryStore } from '../lib/stores/memory.js'
import { RESP_TYPES } from 'redis'
import { RedisStore } from '../lib/stores/redis/index.js'
import { decodeBucket } from '../lib/stores/redis/bucket.js'
import { decodePacked, encodeClient } from '../lib/stores/redis/packed.js'
import type { RotateRequest, SessionRecord, TokenStore } from '../lib/stores/types.js'
import { randomId } from '../lib/tokens.js'
import { connectRedis, deleteRedisPrefix, inWindows, ipv4, sessionRecord, userAgent } from './stores.js'

const HOUR = 60 * 60 * 1000

export interface Share { part: string, bytesPerSession: number }

export interface MemoryStoreFigure {
  sessionsPerUser: number
  sessions: number
  bytesPerSession: number
  /** Where they go; the last part is what the others leave unexplained. */
  breakdown: Share[] | null
  /** The same sessions sharing one User-Agent string: what interning the strings would give. */
  internedBytesPerSession: number
}

export interface RedisFigure {
  sessionsPerUser: number
  sessions: number
  /**
   * MEMORY USAGE of the keys holding sessions (the users' buckets, and record keys of sessions
   * beyond a bucket's room) + the index keys, / sessions.
   */
  bytesPerSession: number
  /** The keys holding sessions (buckets and record keys), / sessions. */
  recordKeyBytes: number
  indexBytesPerSession: number
  /** Of those keys: their names and their values, / sessions; the rest is Redis's overhead. */
  keyNameBytes: number
  valueBytes: number
  /** INFO used_memory growth / sessions (includes each key's expiry entry; noisy on a shared Redis). */
  usedMemoryPerSession: number
}

export interface SessionMemory {
  memoryStore: MemoryStoreFigure[]
  redis: RedisFigure[] | { skipped: string }
  /**
   * One Redis record, bytes per field: of the JSON array (quotes and separator included), or of
   * the packed record (length prefixes included).
   */
  redisRecordFields: Record<string, number> | null
}

const gc = (globalThis as { gc?: () => void }).gc

function heapUsed (): number {
  for (let i = 0; i < 4; i++) gc!()
  // The MemoryStore keeps most of a session in typed arrays, whose bytes V8 counts apart.
  return getHeapStatistics().used_heap_size + process.memoryUsage().arrayBuffers
}

function log (message: string): void {
  process.stderr.write(`${message}\n`)
}

function integerFromEnv (name: string, fallback: number, min: number): number {
  const value = Number(process.env[name] || fallback)
  if (!Number.isSafeInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}`)
  return value
}

/** The refresh that follows login: rotation to a fresh hash, the client's strings built anew. */
function rotation (session: SessionRecord, n: number, sharedAgent?: string): RotateRequest {
  return {
    sessionId: session.id,
    presentedHash: session.tokenHash,
    // A stored hash is 128 bits in base64url (docs/design.md, «Hashed at rest»): random will do.
    nextHash: randomId(16),
    now: Date.now() + 1000,
    idleTtl: HOUR,
    grace: 30_000,
    graceLimit: 10,
    userAgent: sharedAgent ?? userAgent(n),
    ip: ipv4(n),
    keepRevocationFor: 15 * 60 * 1000
  }
}

/**
 * Logs in and refreshes `count` sessions, `perUser` per user, `window` of them at a time; each
 * with a User-Agent string of its own (as parsed from its requests), or all with `sharedAgent`.
 */
async function fill (store: TokenStore, count: number, perUser: number, window = 1, sharedAgent?: string): Promise<void> {
  await inWindows(count, window, async (n) => {
    const user = Math.floor(n / perUser)
    const session = sessionRecord(n, user, Date.now(), HOUR, store.sessionIdFor?.(`user-${user}`))
    if (sharedAgent !== undefined) {
      session.userAgent = sharedAgent
      session.firstUserAgent = sharedAgent
    }
    await store.createSession(session)
    const result = await store.rotate(rotation(session, n, sharedAgent))
    if (result.outcome !== 'rotated') throw new Error(`rotation answered ${result.outcome}`)
  })
}

async function memoryStoreBytes (count: number, perUser: number, sharedAgent?: string): Promise<number> {
  // Warm the code paths first, so compiled code and feedback are not counted.
  await fill(new MemoryStore(), 2000, perUser)
  const before = heapUsed()
  const store = new MemoryStore({ maxSessions: count })
  await fill(store, count, perUser, 1, sharedAgent)
  const after = heapUsed()
  if (store.size !== count) throw new Error(`the store holds ${store.size} sessions, not ${count}`)
  return (after - before) / count
}

// ---------------------------------------------------------------------------------------------
// Heap-snapshot diff: every object a snapshot after filling has and one before lacks, by kind.
// ---------------------------------------------------------------------------------------------

interface Snapshot {
  snapshot: { meta: { node_fields: string[], node_types: [string[]], edge_fields: string[], edge_types: [string[]] } }
  nodes: number[]
  edges: number[]
  strings: string[]
}

async function takeSnapshot (): Promise<Snapshot> {
  const chunks: Buffer[] = []
  for await (const chunk of getHeapSnapshot()) chunks.push(chunk as Buffer)
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Snapshot
}

function nodeIds (snapshot: Snapshot): Set<number> {
  const { node_fields: fields } = snapshot.snapshot.meta
  const idField = fields.indexOf('id')
  const ids = new Set<number>()
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) ids.add(snapshot.nodes[i + idField]!)
  return ids
}

/** What a string in the store is, from its content (see bench/stores.ts for the formats). */
function stringPart (text: string): string {
  if (text.startsWith('Mozilla/')) return `string userAgent (${text.length} chars)`
  if (/^\d+\.\d+\.\d+\.\d+$/.test(text)) return 'string ip'
  if (text.startsWith('user-')) return 'string userId'
  if (text.startsWith('name-')) return 'string claims.username (shared by the user\'s sessions)'
  if (/^[\w-]{43}$/.test(text)) return 'strings tokenHash + previousTokenHash (43 chars)'
  if (/^[\w-]{22}$/.test(text)) return 'string session id (22 chars; the Map key too)'
  return 'string other'
}

/** Bytes per session of every object but the hash tables (and the Sets), from a snapshot diff. */
async function objectShares (count: number, perUser: number): Promise<Share[]> {
  await fill(new MemoryStore(), 2000, perUser)
  const store = new MemoryStore({ maxSessions: count })
  heapUsed()
  const before = nodeIds(await takeSnapshot())
  await fill(store, count, perUser)
  heapUsed()
  const after = await takeSnapshot()
  if (store.size !== count) throw new Error(`the store holds ${store.size} sessions, not ${count}`)

  const { node_fields: fields, node_types: [types], edge_fields: edgeFields, edge_types: [edgeTypes] } = after.snapshot.meta
  const width = fields.length
  const [typeField, nameField, idField, sizeField, edgeCountField] =
    ['type', 'name', 'id', 'self_size', 'edge_count'].map((field) => fields.indexOf(field)) as [number, number, number, number, number]
  const edgeWidth = edgeFields.length
  const edgeTypeField = edgeFields.indexOf('type')
  const edgeNameField = edgeFields.indexOf('name_or_index')
  const propertyEdge = edgeTypes.indexOf('property')
  const shares = new Map<string, number>()
  let edgeIndex = 0
  for (let i = 0; i < after.nodes.length; i += width) {
    const edgeCount = after.nodes[i + edgeCountField]!
    const firstEdge = edgeIndex
    edgeIndex += edgeCount * edgeWidth
    if (before.has(after.nodes[i + idField]!)) continue
    const type = types[after.nodes[i + typeField]!]!
    const name = after.strings[after.nodes[i + nameField]!]!
    let part: string | undefined
    if (type === 'string') {
      part = stringPart(name)
    } else if (type === 'concatenated string' || type === 'sliced string') {
      part = `${type} (not flat)`
    } else if (type === 'number' || type === 'heap number') {
      part = 'HeapNumbers: ms times above 2^31 (boxed, 16 bytes each)'
    } else if (type === 'object' && name === 'Object') {
      let record = false
      for (let e = firstEdge; e < firstEdge + edgeCount * edgeWidth; e += edgeWidth) {
        if (after.edges[e + edgeTypeField] === propertyEdge && after.strings[after.edges[e + edgeNameField]!] === 'tokenHash') record = true
      }
      part = record ? 'record object (13 in-object fields)' : 'claims object { username }'
    } else if (!(type === 'array' || (type === 'object' && (name === 'Set' || name === 'Map')))) {
      part = 'other (code compiled meanwhile and the like)'
    }
    if (part !== undefined) shares.set(part, (shares.get(part) ?? 0) + after.nodes[i + sizeField]!)
  }
  return [...shares].map(([part, bytes]) => ({ part, bytesPerSession: bytes / count }))
    .filter((share) => share.bytesPerSession >= 0.5)
    .sort((a, b) => b.bytesPerSession - a.bytesPerSession)
}

async function memoryStoreFigure (count: number, snapshotCount: number, perUser: number): Promise<MemoryStoreFigure> {
  log(`session-memory: MemoryStore, ${count} sessions, ${perUser} per user`)
  const bytesPerSession = await memoryStoreBytes(count, perUser)
  const internedBytesPerSession = await memoryStoreBytes(count, perUser, userAgent(0))
  if (snapshotCount === 0) return { sessionsPerUser: perUser, sessions: count, bytesPerSession, breakdown: null, internedBytesPerSession }
  const objects = await objectShares(snapshotCount, perUser)
  // The store keeps sessions in typed arrays (lib/stores/memory/slab.ts), which a heap snapshot
  // shows as a few large buffers: the shares are the JS objects and strings around them.
  const breakdown = [...objects].sort((a, b) => b.bytesPerSession - a.bytesPerSession)
  const explained = breakdown.reduce((sum, share) => sum + share.bytesPerSession, 0)
  breakdown.push({ part: 'unexplained (total - parts)', bytesPerSession: bytesPerSession - explained })
  return { sessionsPerUser: perUser, sessions: count, bytesPerSession, breakdown, internedBytesPerSession }
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

const STORED_FIELDS = ['userId', 'claims', 'createdAt', 'lastUsedAt', 'expiresAt', 'absoluteExpiresAt', 'tokenHash',
  'previousTokenHash', 'rotatedAt', 'graceUses', 'userAgent', 'ip']

type Client = Exclude<Awaited<ReturnType<typeof connectRedis>>, { unreachable: string }>

async function usedMemory (client: Client): Promise<number> {
  const info = String(await client.sendCommand(['INFO', 'memory']))
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1])
}

/**
 * A 4-byte prefix (the length of the default `fta:`) no one else uses: claimed with SET NX on a
 * marker key, which expires by itself.
 */
async function claimShortPrefix (client: Client): Promise<string> {
  for (;;) {
    const prefix = `${randomBytes(3).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 3)}:`
    const claimed = await client.sendCommand(['SET', `fta-bench-prefix:${prefix}`, '1', 'NX', 'EX', '3600'])
    // Clean-up deletes every key under the prefix: make sure none is someone else's.
    if (claimed !== null && !(await anyKey(client, `${prefix}*`))) return prefix
  }
}

async function anyKey (client: Client, pattern: string): Promise<boolean> {
  let cursor = '0'
  do {
    const [next, found] = await client.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '10000']) as [string, string[]]
    if (found.length > 0) return true
    cursor = next
  } while (cursor !== '0')
  return false
}

/** The first entry of a bucket: after its length (one byte below 255, else 255 and 4 bytes). */
function firstEntry (bucket: Buffer): Buffer {
  return bucket[0] === 255 ? bucket.subarray(5, 5 + bucket.readUInt32BE(1)) : bucket.subarray(1, 1 + bucket[0]!)
}

async function redisFigure (client: Client, count: number, perUser: number): Promise<{ figure: RedisFigure, fields: Record<string, number> }> {
  log(`session-memory: RedisStore, ${count} sessions, ${perUser} per user`)
  const prefix = await claimShortPrefix(client)
  const store = new RedisStore({ client, prefix })
  try {
    const before = await usedMemory(client)
    await fill(store, count, perUser, 500)
    const after = await usedMemory(client)

    const keys: string[] = []
    let cursor = '0'
    do {
      const [next, found] = await client.sendCommand(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', '10000']) as [string, string[]]
      cursor = next
      keys.push(...found)
    } while (cursor !== '0')
    // Sessions live in their user's bucket (packed records, the first few of each user) or in
    // record keys of their own, which the user's index lists (lib/stores/redis/keys.ts).
    const bucketKeys = keys.filter((key) => key.endsWith('}:b'))
    const recordKeys = keys.filter((key) => key.includes('}:s:'))
    const indexKeys = keys.filter((key) => key.endsWith('}:i'))
    const binary = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } }
    const buckets = await Promise.all(bucketKeys.map(async (key) => await client.sendCommand(['GET', key], binary) as unknown as Buffer))
    const bucketed = buckets.reduce((sum, bucket) => sum + decodeBucket(bucket).length, 0)
    if (recordKeys.length + bucketed !== count || bucketKeys.length + recordKeys.length + indexKeys.length !== keys.length) {
      throw new Error(`${recordKeys.length} record, ${bucketKeys.length} bucket (${bucketed} sessions) and ${indexKeys.length} index keys of ${keys.length} for ${count} sessions`)
    }
    const sessionKeys = [...bucketKeys, ...recordKeys]
    const usage = async (list: string[]): Promise<number> => (await Promise.all(list.map(async (key) =>
      await client.sendCommand(['MEMORY', 'USAGE', key, 'SAMPLES', '0']) as number))).reduce((a, b) => a + b, 0)
    const lengths = await Promise.all(sessionKeys.map(async (key) => await client.sendCommand(['STRLEN', key]) as number))
    const recordBytes = await usage(sessionKeys)
    const indexBytes = await usage(indexKeys)
    // One record's parts: the first entry of a bucket (a length prefix, then a packed record), or a record key's value.
    const raw = buckets[0] === undefined
      ? await client.sendCommand(['GET', recordKeys[0]!], binary) as unknown as Buffer
      : firstEntry(buckets[0])
    return {
      figure: {
        sessionsPerUser: perUser,
        sessions: count,
        bytesPerSession: (recordBytes + indexBytes) / count,
        recordKeyBytes: recordBytes / count,
        indexBytesPerSession: indexBytes / count,
        keyNameBytes: sessionKeys.reduce((sum, key) => sum + Buffer.byteLength(key), 0) / count,
        valueBytes: lengths.reduce((a, b) => a + b, 0) / count,
        usedMemoryPerSession: (after - before) / count
      },
      fields: raw[0] === 0x5B
        ? Object.fromEntries(STORED_FIELDS.map((field, i) => [field, JSON.stringify((JSON.parse(raw.toString()) as unknown[])[i]).length + 1]))
        : packedSizes(raw)
    }
  } finally {
    await store.close()
    await deleteRedisPrefix(client, prefix)
    await client.sendCommand(['DEL', `fta-bench-prefix:${prefix}`])
  }
}

async function main (): Promise<void> {
  if (gc === undefined) throw new Error('run with node --expose-gc')
  const sessions = integerFromEnv('BENCH_MEMORY_SESSIONS', 200_000, 1)
  const snapshotSessions = integerFromEnv('BENCH_MEMORY_SNAPSHOT_SESSIONS', 10_000, 0)
  const redisSessions = integerFromEnv('BENCH_REDIS_MEMORY_SESSIONS', 20_000, 1)
  const result: SessionMemory = { memoryStore: [], redis: [], redisRecordFields: null }

  for (const perUser of [3, 1]) result.memoryStore.push(await memoryStoreFigure(sessions, snapshotSessions, perUser))

  // The loader's own client, with no per-command timeout: node-redis's default one makes
  // pipelining thousands of calls several times slower, and changes nothing Redis stores.
  const client = await connectRedis(true)
  if ('unreachable' in client) {
    result.redis = { skipped: client.unreachable }
  } else {
    try {
      const figures: RedisFigure[] = []
      for (const perUser of [3, 1]) {
        const { figure, fields } = await redisFigure(client, redisSessions, perUser)
        figures.push(figure)
        result.redisRecordFields = fields
      }
      result.redis = figures
    } finally {
      await client.close()
    }
  }
  process.stdout.write(`result ${JSON.stringify(result)}\n`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})

/** Bytes per part of a packed record, for bench/memory.ts. */
function packedSizes (raw: Buffer): Record<string, number> {
  // The layout is lib/stores/redis/packed-layout.ts's; the id of a bucket entry (16 raw bytes, or text) is left with
  // the times and hashes, whose sizes depend on the flags.
  const record = decodePacked('', raw)
  const text = (value: string): number => {
    const bytes = Buffer.byteLength(value)
    return bytes + (bytes < 255 ? 1 : 5)
  }
  const client = encodeClient(record.userAgent, record.ip)
  const sizes = {
    flags: 2,
    userId: text(record.userId),
    'claims (no outer braces)': text(JSON.stringify(record.claims).slice(1, -1)),
    'userAgent, ip': client.length - 1
  }
  return { ...sizes, 'times, graceUses, hashes, bucket id': raw.length - Object.values(sizes).reduce((a, b) => a + b, 0) }
}
