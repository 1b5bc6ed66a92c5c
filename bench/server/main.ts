// One benchmark server per process: `node <consumer>/server/main.js <scenario>` (compiled by
// bench/install.ts against the packed package), or `node --import tsx bench/server/main.ts
// <scenario>` with BENCH_SOURCE=lib. Prints on stdout `token <jwt>` (the GET scenarios but bare),
// `prefilled <sessions> <seconds>` (the *-1m scenarios), then `listening <port>`; or `skip
// <reason>` and exits 0 when the store's server is unreachable (or a prefill would take too long).
// Over IPC it answers, outside HTTP so only the route is measured:
//   { type: 'usage', id }        -> { type: 'usage', id, cpu: process.cpuUsage(), elu: eventLoopUtilization(),
//                                   gc: { ms, major } (time in GC pauses so far, and how many were
//                                   mark-compacts), store: CPU µs the store's server used so far, or null }
//   { type: 'issue', id, count } -> { type: 'tokens', id, tokens } (refresh scenarios: `count`
//                                   refresh tokens of freshly issued sessions)
// On SIGTERM (or when the runner goes) it closes, deletes what it put in Redis or PostgreSQL, exits.
import { performance } from 'node:perf_hooks'
import { countGcPauses } from './gc-pauses.js'
import { bare, diy, diyRefresh, expressJwt } from './baselines.js'
import type { Outcome } from './built.js'
import { protectedServer, refreshScenario } from './plugin-scenarios.js'
import { type Scenario, SCENARIOS } from './scenarios.js'

type Message = { type: 'issue', id: number, count: number } | { type: 'usage', id: number }

async function build (scenario: Scenario): Promise<Outcome> {
  switch (scenario) {
    case 'bare': return await bare()
    case 'diy': return await diy()
    case 'express': return await expressJwt()
    case 'diy-refresh': return await diyRefresh()
    case 'protected':
    case 'protected-eddsa':
    case 'protected-dpop': return await protectedServer(scenario)
    default: return await refreshScenario(scenario)
  }
}

async function main (): Promise<void> {
  const scenario = process.argv[2] as Scenario
  if (!SCENARIOS.includes(scenario)) {
    console.error(`usage: node server/main.js <${SCENARIOS.join('|')}>`)
    process.exit(2)
  }
  const built = await build(scenario)
  if ('skip' in built) {
    process.stdout.write(`skip ${built.skip}\n`)
    process.exit(0)
  }
  const { token, issue, storeCpu, prefilled, cleanup } = built
  // GC pauses from now on (a prefill's are over): a heap of a million sessions costs here if anywhere.
  const gc = countGcPauses()
  async function answer (message: Message): Promise<object> {
    if (message.type === 'usage') {
      const cpu = process.cpuUsage()
      const elu = performance.eventLoopUtilization()
      return { type: 'usage', id: message.id, cpu, elu, gc: { ...gc }, store: storeCpu === undefined ? null : await storeCpu() }
    }
    if (issue === undefined) throw new Error(`the ${scenario} server issues no tokens`)
    return { type: 'tokens', id: message.id, tokens: await issue(message.count) }
  }
  process.on('message', (message: Message) => {
    answer(message).then((reply) => process.send?.(reply), (error: unknown) => {
      console.error(error)
      process.exit(1)
    })
  })
  const port = await built.listen()
  // Close cleanly so `--cpu-prof` gets to write its profile and the store's data is deleted.
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    built.close()
      .then(async () => await cleanup?.())
      .catch((error: unknown) => { console.error(`${scenario}: clean-up failed`, error) })
      .finally(() => process.exit(0))
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  process.once('disconnect', stop)
  if (token !== undefined) process.stdout.write(`token ${token}\n`)
  if (prefilled !== undefined) process.stdout.write(`prefilled ${prefilled.sessions} ${prefilled.seconds.toFixed(1)}\n`)
  process.stdout.write(`listening ${port}\n`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
