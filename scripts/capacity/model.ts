// The capacity model: measured per-operation costs (docs/capacity-costs.json, written by
// bench/capacity-costs.ts) and a workload in, what a fleet needs out. Pure functions and no
// dependencies, so test/capacity.test.ts can call them and scripts/capacity.ts only parses flags
// and prints. docs/capacity.md explains every formula in words.

/** One measured figure as the costs file keeps it: the value and where it came from. */
export interface Figure {
  value: number
  unit: string
  /** The command that produced it, to re-measure after a code change. */
  command: string
  /** ISO date of the measurement. */
  date: string
  /** The runs the value is the median of, when there were several. */
  samples?: number[]
  note?: string
}

/** The names the costs file must have under `figures`. */
export const FIGURE_NAMES = [
  'node.cpuUsPerLogin',
  'node.cpuUsPerRefresh.memory',
  'node.cpuUsPerRefresh.redis',
  'node.cpuUsPerRefresh.postgres',
  'node.cpuUsPerProtected',
  'redis.commandsPerLogin',
  'redis.commandsPerRefresh',
  'redis.cpuUsPerLogin',
  'redis.cpuUsPerRefresh',
  'redis.bytesPerSession.1PerUser',
  'redis.bytesPerSession.3PerUser',
  'node.sweepCpuUsPerSession',
  'redis.sweepCommandsPerSession',
  'redis.sweepCpuUsPerSession',
  'postgres.rowsPerLogin',
  'postgres.rowsPerRefresh',
  'postgres.walBytesPerLogin',
  'postgres.walBytesPerRefresh'
] as const
export type FigureName = typeof FIGURE_NAMES[number]

export interface CostsFile {
  about?: string
  machine?: Record<string, unknown>
  figures: Record<FigureName, Figure>
}

/** The costs the model uses, in plain numbers (µs are CPU microseconds, user + system). */
export interface Costs {
  /** Plugin CPU per login, on the Redis store, password hashing excluded. */
  nodeCpuUsPerLogin: number
  nodeCpuUsPerRefresh: Record<'memory' | 'redis' | 'postgres', number>
  nodeCpuUsPerProtected: number
  redisCommandsPerLogin: number
  redisCommandsPerRefresh: number
  redisCpuUsPerLogin: number
  redisCpuUsPerRefresh: number
  /** Redis used_memory per stored session, by sessions per user (1 is the worst case). */
  redisBytesPerSession: { onePerUser: number, threePerUser: number }
  /** One instance's sweep (store.sweep), per stored session: its own CPU, and Redis commands and CPU. */
  nodeSweepCpuUsPerSession: number
  redisSweepCommandsPerSession: number
  redisSweepCpuUsPerSession: number
  postgresRowsPerLogin: number
  postgresRowsPerRefresh: number
  postgresWalBytesPerLogin: number
  postgresWalBytesPerRefresh: number
}

/** The costs file's figures as the model's numbers; throws naming every missing or bad figure. */
export function costsFromFile (file: CostsFile): Costs {
  const bad = FIGURE_NAMES.filter((name) => typeof file.figures?.[name]?.value !== 'number' || !Number.isFinite(file.figures[name].value))
  if (bad.length > 0) throw new Error(`the costs file lacks a numeric value for: ${bad.join(', ')}`)
  const v = (name: FigureName) => file.figures[name].value
  return {
    nodeCpuUsPerLogin: v('node.cpuUsPerLogin'),
    nodeCpuUsPerRefresh: { memory: v('node.cpuUsPerRefresh.memory'), redis: v('node.cpuUsPerRefresh.redis'), postgres: v('node.cpuUsPerRefresh.postgres') },
    nodeCpuUsPerProtected: v('node.cpuUsPerProtected'),
    redisCommandsPerLogin: v('redis.commandsPerLogin'),
    redisCommandsPerRefresh: v('redis.commandsPerRefresh'),
    redisCpuUsPerLogin: v('redis.cpuUsPerLogin'),
    redisCpuUsPerRefresh: v('redis.cpuUsPerRefresh'),
    redisBytesPerSession: { onePerUser: v('redis.bytesPerSession.1PerUser'), threePerUser: v('redis.bytesPerSession.3PerUser') },
    nodeSweepCpuUsPerSession: v('node.sweepCpuUsPerSession'),
    redisSweepCommandsPerSession: v('redis.sweepCommandsPerSession'),
    redisSweepCpuUsPerSession: v('redis.sweepCpuUsPerSession'),
    postgresRowsPerLogin: v('postgres.rowsPerLogin'),
    postgresRowsPerRefresh: v('postgres.rowsPerRefresh'),
    postgresWalBytesPerLogin: v('postgres.walBytesPerLogin'),
    postgresWalBytesPerRefresh: v('postgres.walBytesPerRefresh')
  }
}

/** What the fleet serves. Rates are per second, at the moment planned for (the peak). */
export interface Workload {
  sessions: number
  refreshesPerSecond: number
  protectedPerSecond: number
  loginsPerSecond: number
  /** Sessions per user: 1 (worst case for Redis memory) or 3. */
  sessionsPerUser: 1 | 3
}

/** How the sessions behave, when the rates are derived from the session count. */
export interface Behaviour {
  /** Share of sessions active at the peak (0..1). */
  activeShare: number
  /** Access-token lifetime (s): an active session refreshes once per lifetime. */
  accessTokenTtlSeconds: number
  /** Protected requests per active session per minute. */
  requestsPerActiveMinute: number
  /** Mean time between logins of a session's user (s): each session is replaced by a new login this often. */
  loginEverySeconds: number
}

export const DEFAULT_BEHAVIOUR: Behaviour = {
  activeShare: 0.1,
  accessTokenTtlSeconds: 15 * 60,
  requestsPerActiveMinute: 6,
  loginEverySeconds: 7 * 24 * 60 * 60
}

/** Rates from a session count: active sessions refresh once per access-token lifetime, etc. */
export function deriveWorkload (sessions: number, behaviour: Behaviour = DEFAULT_BEHAVIOUR, sessionsPerUser: 1 | 3 = 1): Workload {
  const active = sessions * behaviour.activeShare
  return {
    sessions,
    refreshesPerSecond: active / behaviour.accessTokenTtlSeconds,
    protectedPerSecond: active * behaviour.requestsPerActiveMinute / 60,
    loginsPerSecond: sessions / behaviour.loginEverySeconds,
    sessionsPerUser
  }
}

/** The fleet's shape and limits. */
export interface Fleet {
  store: 'redis' | 'postgres'
  /** Share of an instance's cores the plan may use (0..1]. */
  targetUtilisation: number
  /** Cores per instance; one Node process per core (Node runs JavaScript on one thread). */
  coresPerInstance: number
  /** The app's own CPU per login, ms (its password hash: scrypt is tens of ms); 0 = plugin only. */
  passwordHashMs: number
  /** Usable memory per Redis shard (maxmemory), bytes. */
  redisShardMemoryBytes: number
  /** Commands per second one shard may take. */
  redisShardOpsPerSecond: number
  /** Extra memory on top of the sessions' bytes (0.5 = +50 %): fragmentation, feed, buffers, fork copy-on-write. */
  redisMemoryHeadroom: number
  /** Milliseconds between revocation-feed polls (revocationPollInterval). */
  revocationPollIntervalMs: number
  /** Milliseconds between sweeps (sweepInterval); every instance sweeps. */
  sweepIntervalMs: number
  /** storeTimeout: the longest a poll can take before it is abandoned. */
  storeTimeoutMs: number
}

export const DEFAULT_FLEET: Fleet = {
  store: 'redis',
  targetUtilisation: 0.6,
  coresPerInstance: 2,
  passwordHashMs: 0,
  redisShardMemoryBytes: 16 * 2 ** 30,
  redisShardOpsPerSecond: 100_000,
  redisMemoryHeadroom: 0.5,
  revocationPollIntervalMs: 5000,
  sweepIntervalMs: 60_000,
  storeTimeoutMs: 5000
}

export interface NodePlan {
  /** Cores of CPU the requests need, fleet-wide: the plugin (and the app's password hash, if given). */
  cpuCores: number
  byOperation: { login: number, refresh: number, protected: number, passwordHash: number }
  /**
   * Cores each instance spends sweeping (Redis store): every instance walks every session once per
   * sweepInterval, so this does not shrink as instances are added; it is taken off each one's room.
   */
  sweepCoresPerInstance: number
  /** Infinity when the sweep alone fills an instance (lengthen sweepInterval). */
  instances: number
}

/**
 * The shortest sweepInterval (ms) that keeps each instance's sweep to `share` of its room
 * (cores × utilisation): one sweep's CPU (sessions × µs per session) spread over the interval.
 */
export function minSweepIntervalMs (costs: Costs, sessions: number, fleet: Fleet, share = 0.1): number {
  return sessions * costs.nodeSweepCpuUsPerSession / 1000 / (share * fleet.coresPerInstance * fleet.targetUtilisation)
}

export interface RedisPlan {
  /** Bytes the sessions take, without headroom. */
  sessionBytes: number
  /** With headroom: what the cluster must hold. */
  memoryBytes: number
  commandsPerSecond: number
  commandsBySource: { login: number, refresh: number, poll: number, sweep: number }
  /** Cores of Redis CPU (main threads), all shards together. */
  cpuCores: number
  cpuBySource: { login: number, refresh: number, sweep: number }
  shards: number
  /** Which limit set the shard count. */
  shardsBoundBy: 'memory' | 'commands' | 'cpu'
  shardsBy: { memory: number, commands: number, cpu: number }
}

export interface PostgresPlan {
  rowsWrittenPerSecond: number
  walBytesPerSecond: number
}

export interface Plan {
  workload: Workload
  node: NodePlan
  redis: RedisPlan | null
  postgres: PostgresPlan | null
  revocation: RevocationBound
}

/**
 * Instances for a CPU demand: ceil(demand / (cores × utilisation − reserved)), at least one;
 * `reserved`: cores each instance spends whatever the fleet's size (its sweep). Infinity when
 * nothing is left.
 */
export function instancesFor (cpuCores: number, coresPerInstance: number, targetUtilisation: number, reserved = 0): number {
  const room = coresPerInstance * targetUtilisation - reserved
  if (room <= 0) return Infinity
  return Math.max(1, Math.ceil(cpuCores / room - 1e-9))
}

export function nodePlan (costs: Costs, workload: Workload, fleet: Fleet): NodePlan {
  const byOperation = {
    login: workload.loginsPerSecond * costs.nodeCpuUsPerLogin / 1e6,
    refresh: workload.refreshesPerSecond * costs.nodeCpuUsPerRefresh[fleet.store] / 1e6,
    protected: workload.protectedPerSecond * costs.nodeCpuUsPerProtected / 1e6,
    passwordHash: workload.loginsPerSecond * fleet.passwordHashMs / 1e3
  }
  const cpuCores = byOperation.login + byOperation.refresh + byOperation.protected + byOperation.passwordHash
  const sweepCoresPerInstance = fleet.store === 'redis' ? workload.sessions * costs.nodeSweepCpuUsPerSession / 1e6 / (fleet.sweepIntervalMs / 1000) : 0
  return { cpuCores, byOperation, sweepCoresPerInstance, instances: instancesFor(cpuCores, fleet.coresPerInstance, fleet.targetUtilisation, sweepCoresPerInstance) }
}

/**
 * Redis for `instances` Node instances (each polls the feed once per poll interval and sweeps
 * every key once per sweep interval). Shards: the most any one limit needs, each shard's main
 * thread at most `targetUtilisation` of a core.
 */
export function redisPlan (costs: Costs, workload: Workload, fleet: Fleet, instances: number): RedisPlan {
  const perSession = workload.sessionsPerUser === 3 ? costs.redisBytesPerSession.threePerUser : costs.redisBytesPerSession.onePerUser
  const sessionBytes = workload.sessions * perSession
  const memoryBytes = sessionBytes * (1 + fleet.redisMemoryHeadroom)
  const sweepsPerSecond = instances / (fleet.sweepIntervalMs / 1000)
  const commandsBySource = {
    login: workload.loginsPerSecond * costs.redisCommandsPerLogin,
    refresh: workload.refreshesPerSecond * costs.redisCommandsPerRefresh,
    // One feed read (a script) per instance per poll.
    poll: instances / (fleet.revocationPollIntervalMs / 1000),
    sweep: sweepsPerSecond * workload.sessions * costs.redisSweepCommandsPerSession
  }
  const cpuBySource = {
    login: workload.loginsPerSecond * costs.redisCpuUsPerLogin / 1e6,
    refresh: workload.refreshesPerSecond * costs.redisCpuUsPerRefresh / 1e6,
    sweep: sweepsPerSecond * workload.sessions * costs.redisSweepCpuUsPerSession / 1e6
  }
  const commandsPerSecond = commandsBySource.login + commandsBySource.refresh + commandsBySource.poll + commandsBySource.sweep
  const cpuCores = cpuBySource.login + cpuBySource.refresh + cpuBySource.sweep
  const shardsBy = {
    memory: Math.ceil(memoryBytes / fleet.redisShardMemoryBytes - 1e-9),
    commands: Math.ceil(commandsPerSecond / fleet.redisShardOpsPerSecond - 1e-9),
    cpu: Math.ceil(cpuCores / fleet.targetUtilisation - 1e-9)
  }
  const shards = Math.max(1, shardsBy.memory, shardsBy.commands, shardsBy.cpu)
  const shardsBoundBy = shards === shardsBy.memory ? 'memory' : shards === shardsBy.commands ? 'commands' : 'cpu'
  return { sessionBytes, memoryBytes, commandsPerSecond, commandsBySource, cpuCores, cpuBySource, shards, shardsBoundBy, shardsBy }
}

export function postgresPlan (costs: Costs, workload: Workload): PostgresPlan {
  return {
    rowsWrittenPerSecond: workload.refreshesPerSecond * costs.postgresRowsPerRefresh + workload.loginsPerSecond * costs.postgresRowsPerLogin,
    walBytesPerSecond: workload.refreshesPerSecond * costs.postgresWalBytesPerRefresh + workload.loginsPerSecond * costs.postgresWalBytesPerLogin
  }
}

/** lib/revocation-feed.ts FEED_OVERLAP: each poll reads from 10 s before the previous one started. */
export const FEED_OVERLAP_MS = 10_000

export interface RevocationInput {
  /** Whether the store pushes revocations (Redis pub/sub, PostgreSQL LISTEN/NOTIFY). */
  push: boolean
  pollIntervalMs: number
  /** The longest a feed read may take (storeTimeout). */
  storeTimeoutMs: number
  /** The push's delivery time, measured (one hop through the store); 0 if unknown. */
  pushLatencyMs?: number
  /** Access-token lifetime + clockTolerance, s: the bound when the feed never reaches an instance. */
  accessTokenLifetimeSeconds?: number
}

export interface RevocationBound {
  /** What a revocation usually takes to reach every instance, ms. */
  typicalMs: number
  /** The most it can take while the feed works, ms: the polling guarantee. */
  boundMs: number
  /** When polling cannot catch it (clock skew plus write visibility beyond the overlap, or the feed write failed): the access token's expiry, ms. */
  fallbackMs: number
  boundedBy: string
}

/**
 * How long until a revocation on one instance makes the session's access tokens fail on all.
 * Pushed: one store hop (pushLatencyMs) typically; a lost push (subscriber reconnecting) is caught
 * by the next poll, so the bound is always the poll's: the poll interval (the revocation lands just
 * after a poll started reading) plus the longest the next read takes (storeTimeout). The feed
 * overlap adds nothing to that bound; it is what keeps it valid while clock skew + write
 * visibility stay under 10 s. Past that, only the token's expiry bounds it.
 */
export function revocationBound (input: RevocationInput): RevocationBound {
  const boundMs = input.pollIntervalMs + input.storeTimeoutMs
  const fallbackMs = (input.accessTokenLifetimeSeconds ?? 15 * 60) * 1000
  if (input.push) {
    return {
      typicalMs: input.pushLatencyMs ?? 0,
      boundMs,
      fallbackMs,
      boundedBy: 'pushed (pub/sub or LISTEN/NOTIFY): one store hop; a lost push is caught by the next poll: ' +
        `poll interval ${input.pollIntervalMs} ms + the read's time (at most storeTimeout ${input.storeTimeoutMs} ms)`
    }
  }
  return {
    // Uniformly placed between two polls: half an interval on average, plus a quick read.
    typicalMs: input.pollIntervalMs / 2,
    boundMs,
    fallbackMs,
    boundedBy: `polled only: poll interval ${input.pollIntervalMs} ms + the read's time (at most storeTimeout ${input.storeTimeoutMs} ms)`
  }
}

export function plan (costs: Costs, workload: Workload, fleet: Fleet, pushLatencyMs = 1): Plan {
  const node = nodePlan(costs, workload, fleet)
  return {
    workload,
    node,
    redis: fleet.store === 'redis' ? redisPlan(costs, workload, fleet, node.instances) : null,
    postgres: fleet.store === 'postgres' ? postgresPlan(costs, workload) : null,
    revocation: revocationBound({ push: true, pollIntervalMs: fleet.revocationPollIntervalMs, storeTimeoutMs: fleet.storeTimeoutMs, pushLatencyMs })
  }
}
