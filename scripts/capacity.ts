// `npm run capacity -- [flags]`: what a fleet needs for 1 M, 10 M and 100 M sessions (or
// --sessions), from the measured costs in docs/capacity-costs.json (bench/capacity-costs.ts
// writes it) and the workload flags below. The formulas are in scripts/capacity/model.ts and, in
// words, in docs/capacity.md.
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  type Behaviour, costsFromFile, type CostsFile, DEFAULT_BEHAVIOUR, DEFAULT_FLEET, deriveWorkload, type Fleet, minSweepIntervalMs, plan, type Plan,
  type Workload
} from './capacity/model.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

const HELP = `npm run capacity -- [flags]
  --costs <file>             measured costs (default docs/capacity-costs.json)
  --sessions <n,...>         stored sessions, one table each (default 1M,10M,100M; k/M/G suffixes)
  --active <share>           share of sessions active at the peak (default ${DEFAULT_BEHAVIOUR.activeShare})
  --access-ttl <s>           access-token lifetime: an active session refreshes once per it (default ${DEFAULT_BEHAVIOUR.accessTokenTtlSeconds})
  --requests-per-minute <n>  protected requests per active session per minute (default ${DEFAULT_BEHAVIOUR.requestsPerActiveMinute})
  --login-every <s>          a session is replaced by a new login this often (default ${DEFAULT_BEHAVIOUR.loginEverySeconds}, a week)
  --refresh-rate <n/s>       refreshes per second (overrides the derived rate)
  --protected-rate <n/s>     protected requests per second (overrides)
  --login-rate <n/s>         logins per second (overrides)
  --sessions-per-user <1|3>  Redis bytes per session as measured with 1 or 3 sessions per user (default 1, the larger)
  --utilisation <0..1>       target CPU utilisation per instance and per Redis shard (default ${DEFAULT_FLEET.targetUtilisation})
  --cores <n>                cores per Node instance, one process per core (default ${DEFAULT_FLEET.coresPerInstance})
  --hash-ms <ms>             the app's CPU per login for its password hash (default 0: plugin only)
  --redis-memory <bytes>     usable memory per Redis shard (default 16G; k/M/G = 2^10/2^20/2^30)
  --redis-ops <n/s>          commands per second per Redis shard (default ${DEFAULT_FLEET.redisShardOpsPerSecond})
  --redis-headroom <share>   memory on top of the sessions' bytes (default ${DEFAULT_FLEET.redisMemoryHeadroom})
  --poll-interval <ms>       revocationPollInterval (default ${DEFAULT_FLEET.revocationPollIntervalMs})
  --sweep-interval <ms>      sweepInterval (default ${DEFAULT_FLEET.sweepIntervalMs})
  --store-timeout <ms>       storeTimeout (default ${DEFAULT_FLEET.storeTimeoutMs})
  --push-latency <ms>        a pushed revocation's delivery time (default 1; bench/capacity-check.ts measures it)
  --json                     print the plans as JSON`

/** 1M, 10k, 2.5G, 1e6 → numbers; binary multiples for bytes. */
function parseAmount (text: string, binary = false): number {
  const match = /^([\d.]+(?:e\d+)?)\s*([kmgt]?)b?$/i.exec(text.trim())
  if (match === null) throw new Error(`not a number: "${text}"`)
  const power = ' kmgt'.indexOf(match[2]!.toLowerCase() || ' ')
  return Number(match[1]) * (binary ? 1024 : 1000) ** power
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      costs: { type: 'string' },
      sessions: { type: 'string' },
      active: { type: 'string' },
      'access-ttl': { type: 'string' },
      'requests-per-minute': { type: 'string' },
      'login-every': { type: 'string' },
      'refresh-rate': { type: 'string' },
      'protected-rate': { type: 'string' },
      'login-rate': { type: 'string' },
      'sessions-per-user': { type: 'string' },
      utilisation: { type: 'string' },
      cores: { type: 'string' },
      'hash-ms': { type: 'string' },
      'redis-memory': { type: 'string' },
      'redis-ops': { type: 'string' },
      'redis-headroom': { type: 'string' },
      'poll-interval': { type: 'string' },
      'sweep-interval': { type: 'string' },
      'store-timeout': { type: 'string' },
      'push-latency': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' }
    }
  })
  if (values.help === true) {
    console.log(HELP)
    return
  }
  const num = (text: string | undefined, fallback: number, binary = false) => text === undefined ? fallback : parseAmount(text, binary)
  const costsPath = values.costs ?? join(root, 'docs', 'capacity-costs.json')
  const file = JSON.parse(await readFile(costsPath, 'utf8')) as CostsFile
  const costs = costsFromFile(file)
  const behaviour: Behaviour = {
    activeShare: num(values.active, DEFAULT_BEHAVIOUR.activeShare),
    accessTokenTtlSeconds: num(values['access-ttl'], DEFAULT_BEHAVIOUR.accessTokenTtlSeconds),
    requestsPerActiveMinute: num(values['requests-per-minute'], DEFAULT_BEHAVIOUR.requestsPerActiveMinute),
    loginEverySeconds: num(values['login-every'], DEFAULT_BEHAVIOUR.loginEverySeconds)
  }
  const perUser = num(values['sessions-per-user'], 1)
  if (perUser !== 1 && perUser !== 3) throw new Error('--sessions-per-user must be 1 or 3 (the figures measured)')
  const fleet: Fleet = {
    ...DEFAULT_FLEET,
    targetUtilisation: num(values.utilisation, DEFAULT_FLEET.targetUtilisation),
    coresPerInstance: num(values.cores, DEFAULT_FLEET.coresPerInstance),
    passwordHashMs: num(values['hash-ms'], DEFAULT_FLEET.passwordHashMs),
    redisShardMemoryBytes: num(values['redis-memory'], DEFAULT_FLEET.redisShardMemoryBytes, true),
    redisShardOpsPerSecond: num(values['redis-ops'], DEFAULT_FLEET.redisShardOpsPerSecond),
    redisMemoryHeadroom: num(values['redis-headroom'], DEFAULT_FLEET.redisMemoryHeadroom),
    revocationPollIntervalMs: num(values['poll-interval'], DEFAULT_FLEET.revocationPollIntervalMs),
    sweepIntervalMs: num(values['sweep-interval'], DEFAULT_FLEET.sweepIntervalMs),
    storeTimeoutMs: num(values['store-timeout'], DEFAULT_FLEET.storeTimeoutMs)
  }
  const pushLatency = num(values['push-latency'], 1)
  const sessionCounts = (values.sessions ?? '1M,10M,100M').split(',').map((text) => parseAmount(text))
  const plans = sessionCounts.map((sessions) => {
    const derived = deriveWorkload(sessions, behaviour, perUser)
    const workload: Workload = {
      ...derived,
      refreshesPerSecond: num(values['refresh-rate'], derived.refreshesPerSecond),
      protectedPerSecond: num(values['protected-rate'], derived.protectedPerSecond),
      loginsPerSecond: num(values['login-rate'], derived.loginsPerSecond)
    }
    let redis = plan(costs, workload, { ...fleet, store: 'redis' }, pushLatency)
    // Every instance sweeps every session each sweepInterval: past a few million sessions that alone
    // fills an instance at the default interval. Plan again at the shortest interval that keeps the
    // sweep to a tenth of an instance, and say so.
    let sweepRaised: { from: number, to: number, coresPerInstance: number } | undefined
    if (!Number.isFinite(redis.node.instances)) {
      const to = Math.ceil(minSweepIntervalMs(costs, sessions, fleet) / 60_000) * 60_000
      sweepRaised = { from: fleet.sweepIntervalMs, to, coresPerInstance: redis.node.sweepCoresPerInstance }
      redis = plan(costs, workload, { ...fleet, store: 'redis', sweepIntervalMs: to }, pushLatency)
    }
    return { redis, postgres: plan(costs, workload, { ...fleet, store: 'postgres' }, pushLatency), sweepRaised }
  })
  if (values.json === true) {
    console.log(JSON.stringify({ costs: costsPath, behaviour, fleet, plans }, null, 2))
    return
  }
  const dates = [...new Set(Object.values(file.figures).map((figure) => figure.date.slice(0, 10)))].join(', ')
  console.log(`Costs: ${costsPath} (measured ${dates}). Rates derived from sessions unless given: ${(behaviour.activeShare * 100).toFixed(0)} % active, ` +
    `each refreshing once per ${behaviour.accessTokenTtlSeconds} s and making ${behaviour.requestsPerActiveMinute} protected requests/min; ` +
    `a login per session every ${(behaviour.loginEverySeconds / 86400).toFixed(1)} days.`)
  console.log(`Fleet: ${fleet.coresPerInstance} cores/instance at ${fleet.targetUtilisation * 100} %, password hash ${fleet.passwordHashMs} ms/login; ` +
    `Redis shards of ${bytes(fleet.redisShardMemoryBytes)}, ${si(fleet.redisShardOpsPerSecond)} commands/s, +${fleet.redisMemoryHeadroom * 100} % memory headroom; ` +
    `poll ${fleet.revocationPollIntervalMs} ms, sweep ${fleet.sweepIntervalMs} ms.`)
  for (const { redis, postgres, sweepRaised } of plans) print(redis, postgres, sweepRaised)
}

function print (redis: Plan, postgres: Plan, sweepRaised: { from: number, to: number, coresPerInstance: number } | undefined): void {
  const w = redis.workload
  const r = redis.redis!
  const p = postgres.postgres!
  const rows: Array<[string, string, string]> = [
    ['refreshes / protected / logins per s', `${si(w.refreshesPerSecond)} / ${si(w.protectedPerSecond)} / ${si(w.loginsPerSecond)}`, ''],
    ['Node CPU (cores), Redis store', fixed(redis.node.cpuCores), `refresh ${fixed(redis.node.byOperation.refresh)}, protected ${fixed(redis.node.byOperation.protected)}, ` +
      `login ${fixed(redis.node.byOperation.login)}${redis.node.byOperation.passwordHash > 0 ? `, password hash ${fixed(redis.node.byOperation.passwordHash)}` : ''}`],
    ['Node instances, Redis store', count(redis.node.instances), `ceil(cores / (cores per instance × utilisation − sweep ${fixed(redis.node.sweepCoresPerInstance)} cores))`],
    ['Redis memory', bytes(r.memoryBytes), `${bytes(r.sessionBytes)} of sessions + headroom`],
    ['Redis commands/s', si(r.commandsPerSecond), `refresh ${si(r.commandsBySource.refresh)}, login ${si(r.commandsBySource.login)}, ` +
      `poll ${si(r.commandsBySource.poll)}, sweep ${si(r.commandsBySource.sweep)}`],
    ['Redis CPU (cores)', fixed(r.cpuCores), `refresh ${fixed(r.cpuBySource.refresh)}, login ${fixed(r.cpuBySource.login)}, sweep ${fixed(r.cpuBySource.sweep)}`],
    ['Redis Cluster shards', count(r.shards), `bound by ${r.shardsBoundBy} (memory ${r.shardsBy.memory}, commands ${r.shardsBy.commands}, CPU ${r.shardsBy.cpu})`],
    ['Node CPU (cores), PostgreSQL store', fixed(postgres.node.cpuCores), `refresh ${fixed(postgres.node.byOperation.refresh)}`],
    ['Node instances, PostgreSQL store', count(postgres.node.instances), ''],
    ['PostgreSQL rows written/s', si(p.rowsWrittenPerSecond), ''],
    ['PostgreSQL WAL/s', `${bytes(p.walBytesPerSecond)}/s`, `${bytes(p.walBytesPerSecond * 86400)}/day`],
    ['revocation reaches all instances', `~${redis.revocation.typicalMs} ms, ≤ ${redis.revocation.boundMs} ms`, redis.revocation.boundedBy]
  ]
  console.log(`\n${si(w.sessions)} sessions`)
  if (sweepRaised !== undefined) {
    console.log(`  (at sweepInterval ${sweepRaised.from / 1000} s every instance's sweep alone needs ${fixed(sweepRaised.coresPerInstance)} cores: ` +
      `no fleet size fits. Planned at sweepInterval ${sweepRaised.to / 60_000} min, the shortest keeping the sweep to a tenth of an instance.)`)
  }
  const width = Math.max(...rows.map(([name]) => name.length))
  const valueWidth = Math.max(...rows.map(([, value]) => value.length))
  for (const [name, value, note] of rows) console.log(`  ${name.padEnd(width)}  ${value.padStart(valueWidth)}  ${note}`.trimEnd())
}

function count (value: number): string {
  return Number.isFinite(value) ? String(value) : '∞'
}

function si (value: number): string {
  if (!Number.isFinite(value)) return '∞'
  if (value >= 1e6) return `${(value / 1e6).toPrecision(3)} M`
  if (value >= 1e3) return `${(value / 1e3).toPrecision(3)} k`
  return value >= 10 ? value.toFixed(0) : value.toPrecision(2)
}

function fixed (value: number): string {
  if (!Number.isFinite(value)) return '∞'
  return value >= 10 ? value.toFixed(1) : value.toFixed(2)
}

function bytes (value: number): string {
  if (!Number.isFinite(value)) return '∞'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return `${value.toPrecision(3)} ${units[unit]}`
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
