// The capacity model (scripts/capacity/model.ts) on made-up round costs, so every expected value
// can be worked out by hand; no timing is measured here (the measured costs live in
// docs/capacity-costs.json and only the file's shape is checked).
import { readFile } from 'node:fs/promises'
import t from 'tap'
import {
  type Costs, costsFromFile, type CostsFile, DEFAULT_BEHAVIOUR, DEFAULT_FLEET, deriveWorkload, FEED_OVERLAP_MS, FIGURE_NAMES, type Fleet,
  instancesFor, minSweepIntervalMs, nodePlan, plan, postgresPlan, redisPlan, revocationBound, type Workload
} from '../scripts/capacity/model.js'

const COSTS: Costs = {
  nodeCpuUsPerLogin: 100,
  nodeCpuUsPerRefresh: { memory: 50, redis: 100, postgres: 200 },
  nodeCpuUsPerProtected: 10,
  redisCommandsPerLogin: 4,
  redisCommandsPerRefresh: 5,
  redisCpuUsPerLogin: 20,
  redisCpuUsPerRefresh: 25,
  redisBytesPerSession: { onePerUser: 400, threePerUser: 300 },
  nodeSweepCpuUsPerSession: 0,
  redisSweepCommandsPerSession: 0,
  redisSweepCpuUsPerSession: 0,
  postgresRowsPerLogin: 1,
  postgresRowsPerRefresh: 1,
  postgresWalBytesPerLogin: 500,
  postgresWalBytesPerRefresh: 600
}

const FLEET: Fleet = { ...DEFAULT_FLEET, store: 'redis', coresPerInstance: 2, targetUtilisation: 0.5, redisShardMemoryBytes: 1e9, redisMemoryHeadroom: 0.5 }

function workload (overrides: Partial<Workload> = {}): Workload {
  return { sessions: 1_000_000, refreshesPerSecond: 1000, protectedPerSecond: 10_000, loginsPerSecond: 10, sessionsPerUser: 1, ...overrides }
}

t.test('rates derived from sessions: active share / access-token lifetime, requests per active minute, a login per session per period', async (t) => {
  const derived = deriveWorkload(9_000_000, { activeShare: 0.1, accessTokenTtlSeconds: 900, requestsPerActiveMinute: 6, loginEverySeconds: 90_000 })
  t.equal(derived.refreshesPerSecond, 1000) // 900 000 active / 900 s
  t.equal(derived.protectedPerSecond, 90_000) // 900 000 × 6 / 60
  t.equal(derived.loginsPerSecond, 100) // 9 M / 90 000 s
  t.equal(DEFAULT_BEHAVIOUR.accessTokenTtlSeconds, 15 * 60, 'the default refresh period is the plugin\'s default access-token lifetime')
})

t.test('instances = ceil(cpu demand / (cores × utilisation)), at least one', async (t) => {
  t.equal(instancesFor(3, 2, 0.5), 3)
  t.equal(instancesFor(3.01, 2, 0.5), 4)
  t.equal(instancesFor(0, 2, 0.5), 1)
  t.equal(instancesFor(2.4, 4, 0.6), 1, 'exactly full is enough, despite floating point')
  t.equal(instancesFor(3, 2, 0.5, 0.5), 6, 'cores every instance spends on its own (its sweep) come off its room')
  t.equal(instancesFor(3, 2, 0.5, 1), Infinity, 'a sweep that fills an instance cannot be outgrown')
})

t.test('Node CPU: rate × µs per operation, summed', async (t) => {
  const node = nodePlan(COSTS, workload(), FLEET)
  // 1000 × 100 µs + 10 000 × 10 µs + 10 × 100 µs = 0.1 + 0.1 + 0.001 cores
  t.equal(node.cpuCores.toFixed(6), '0.201000')
  t.equal(node.instances, 1)
  const big = nodePlan(COSTS, workload({ refreshesPerSecond: 20_000, protectedPerSecond: 0, loginsPerSecond: 0 }), FLEET)
  t.equal(big.cpuCores, 2) // 20 000 × 100 µs
  t.equal(big.instances, 2) // ceil(2 / (2 × 0.5))
  t.equal(nodePlan(COSTS, workload({ refreshesPerSecond: 20_000, protectedPerSecond: 0, loginsPerSecond: 0 }), { ...FLEET, store: 'postgres' }).cpuCores, 4,
    'the store\'s own refresh cost is used')
  const hashed = nodePlan(COSTS, workload({ refreshesPerSecond: 0, protectedPerSecond: 0, loginsPerSecond: 100 }), { ...FLEET, passwordHashMs: 50 })
  t.equal(hashed.byOperation.passwordHash, 5, '100 logins/s × 50 ms of password hash = 5 cores')
  t.equal(hashed.instances, 6) // (5 + 0.01) / 1
})

t.test('Redis memory: bytes per session × sessions × (1 + headroom); doubling sessions doubles it', async (t) => {
  const one = redisPlan(COSTS, workload({ sessions: 1_000_000 }), FLEET, 1)
  const two = redisPlan(COSTS, workload({ sessions: 2_000_000 }), FLEET, 1)
  t.equal(one.sessionBytes, 400_000_000)
  t.equal(one.memoryBytes, 600_000_000)
  t.equal(two.memoryBytes, 2 * one.memoryBytes)
  t.equal(redisPlan(COSTS, workload({ sessionsPerUser: 3 }), FLEET, 1).sessionBytes, 300_000_000, 'the 3-per-user figure when asked')
  const many = redisPlan(COSTS, workload({ sessions: 10_000_000 }), FLEET, 1)
  t.equal(many.shardsBy.memory, 6) // 6 GB / 1 GB
  t.equal(many.shards, 6)
  t.equal(many.shardsBoundBy, 'memory')
})

t.test('Redis commands and CPU: per refresh and login, plus one feed read per instance per poll', async (t) => {
  const redis = redisPlan(COSTS, workload(), { ...FLEET, revocationPollIntervalMs: 5000 }, 10)
  t.same(redis.commandsBySource, { login: 40, refresh: 5000, poll: 2, sweep: 0 })
  t.equal(redis.commandsPerSecond, 5042)
  t.equal(redis.cpuCores.toFixed(6), '0.025200') // 1000 × 25 µs + 10 × 20 µs
  const busy = redisPlan(COSTS, workload({ refreshesPerSecond: 100_000, loginsPerSecond: 0 }), { ...FLEET, redisShardOpsPerSecond: 100_000 }, 1)
  t.equal(busy.shardsBy.commands, 6) // 500 000.2 commands/s over 100 000 per shard
  t.equal(busy.shardsBy.cpu, 5) // 2.5 cores at 0.5 per shard
  t.equal(busy.shardsBoundBy, 'commands')
})

t.test('the sweep: every instance walks every session, so its Redis load grows with instances × sessions', async (t) => {
  const costs: Costs = { ...COSTS, nodeSweepCpuUsPerSession: 10, redisSweepCommandsPerSession: 2, redisSweepCpuUsPerSession: 8 }
  const fleet: Fleet = { ...FLEET, sweepIntervalMs: 60_000 }
  const a = redisPlan(costs, workload({ sessions: 6_000_000 }), fleet, 1)
  const b = redisPlan(costs, workload({ sessions: 6_000_000 }), fleet, 2)
  t.equal(a.commandsBySource.sweep, 200_000) // 6 M × 2 / 60 s
  t.equal(b.commandsBySource.sweep, 400_000)
  t.equal(a.cpuBySource.sweep, 0.8) // 6 M × 8 µs / 60 s
  const node = nodePlan(costs, workload({ sessions: 6_000_000 }), fleet)
  t.equal(node.sweepCoresPerInstance, 1) // 6 M × 10 µs / 60 s, on every instance
  t.equal(node.instances, Infinity, 'one core of sweep fills a 2-core instance at 50 %')
  t.equal(nodePlan(costs, workload({ sessions: 6_000_000 }), { ...fleet, sweepIntervalMs: 600_000 }).sweepCoresPerInstance, 0.1)
  // 6 M × 10 µs = 60 s of CPU per sweep; a tenth of an instance's room (2 × 0.5 cores) is 0.1 core: 600 s.
  t.equal(minSweepIntervalMs(costs, 6_000_000, fleet), 600_000)
  t.equal(nodePlan(costs, workload({ sessions: 6_000_000 }), { ...fleet, sweepIntervalMs: 600_000 }).instances, 1)
})

t.test('PostgreSQL rows and WAL per second', async (t) => {
  t.same(postgresPlan(COSTS, workload()), { rowsWrittenPerSecond: 1010, walBytesPerSecond: 605_000 })
  const doubled = postgresPlan(COSTS, workload({ refreshesPerSecond: 2000, loginsPerSecond: 20 }))
  t.equal(doubled.walBytesPerSecond, 1_210_000, 'linear in the rates')
})

t.test('revocation bound: pushed is one hop typically; either way the poll interval plus a read bounds it', async (t) => {
  const pushed = revocationBound({ push: true, pollIntervalMs: 5000, storeTimeoutMs: 5000, pushLatencyMs: 2 })
  t.equal(pushed.typicalMs, 2)
  t.equal(pushed.boundMs, 10_000)
  t.equal(pushed.fallbackMs, 900_000, 'past the feed, only the access token\'s expiry (15 min) bounds it')
  const polled = revocationBound({ push: false, pollIntervalMs: 1000, storeTimeoutMs: 5000, accessTokenLifetimeSeconds: 300 })
  t.equal(polled.typicalMs, 500)
  t.equal(polled.boundMs, 6000)
  t.equal(polled.fallbackMs, 300_000)
  t.match(polled.boundedBy, /polled only/)
  t.equal(FEED_OVERLAP_MS, 10_000, 'the overlap lib/revocation-feed.ts reads back; it keeps the bound valid, it does not add to it')
})

t.test('plan: the store picks the parts', async (t) => {
  const onRedis = plan(COSTS, workload(), FLEET)
  t.ok(onRedis.redis)
  t.equal(onRedis.postgres, null)
  const onPostgres = plan(COSTS, workload(), { ...FLEET, store: 'postgres' })
  t.equal(onPostgres.redis, null)
  t.equal(onPostgres.postgres?.rowsWrittenPerSecond, 1010)
})

t.test('the costs file: every figure the model reads, each with its command and date', async (t) => {
  const file = JSON.parse(await readFile(new URL('../docs/capacity-costs.json', import.meta.url), 'utf8')) as CostsFile
  for (const name of FIGURE_NAMES) {
    const figure = file.figures[name]
    t.ok(Number.isFinite(figure?.value) && figure.value > 0, `${name} is a positive number`)
    t.match(figure, { command: /^node /, date: /^\d{4}-\d\d-\d\dT/ }, `${name} says how and when it was measured`)
  }
  const costs = costsFromFile(file)
  t.equal(costs.redisBytesPerSession.onePerUser, file.figures['redis.bytesPerSession.1PerUser'].value)
  t.throws(() => costsFromFile({ figures: {} } as CostsFile), /lacks a numeric value for: node.cpuUsPerLogin/)
})
