// Starts one scenario's server process (bench/server/main) and talks to it over IPC.
import { type ChildProcess, spawn } from 'node:child_process'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { CPU_PROF, CPU_PROF_INTERVAL, PREFILL_TIMEOUT } from './config.js'
import type { Prepared } from './install.js'
import type { Scenario } from './server/scenarios.js'

export interface Usage {
  cpu: { user: number, system: number }
  elu: { idle: number, active: number }
  gc: { ms: number, major: number }
  store: number | null
}

export interface Server {
  scenario: Scenario
  url: string
  token: string | undefined
  prefilled: { sessions: number, seconds: number } | undefined
  issue (count: number): Promise<string[]>
  usage (): Promise<Usage>
  stop (): Promise<void>
}

export const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** Spawns the server and waits for its `listening <port>` line, or for `skip <reason>`. */
export async function startServer (scenario: Scenario, prepared: Prepared, log: (message: string) => void): Promise<Server | { skipped: string }> {
  const [node, ...args] = prepared.command as [string, ...string[]]
  const profile = CPU_PROF === undefined
    ? []
    // One directory per scenario; Node names each thread's profile (the main thread's is CPU.*.0.*).
    : ['--cpu-prof', `--cpu-prof-dir=${join(resolve(CPU_PROF), scenario)}`, `--cpu-prof-interval=${CPU_PROF_INTERVAL}`]
  const prefills = scenario.endsWith('-1m')
  // A prefilled server settles its heap with a full GC before listening.
  const gc = prefills ? ['--expose-gc'] : []
  const child = spawn(node, [...profile, ...gc, ...args, scenario], { cwd: prepared.cwd, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  children.add(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    children.delete(child)
    resolve()
  }))
  let token: string | undefined
  let prefilled: Server['prefilled']
  let skipped: string | undefined
  // Loading a million sessions takes a while (Redis: up to BENCH_PREFILL_TIMEOUT, then clean-up).
  const startTimeout = prefills ? 120 + PREFILL_TIMEOUT * 2 : 30
  const port = await new Promise<number | undefined>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${scenario}: the server did not print "listening <port>" within ${startTimeout} s`)), startTimeout * 1000)
    exited.then(() => {
      clearTimeout(timer)
      if (skipped !== undefined) resolve(undefined)
      else reject(new Error(`${scenario}: the server exited (${child.exitCode ?? child.signalCode}) before listening`))
    }, reject)
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('token ')) token = line.slice('token '.length)
      if (line.startsWith('skip ')) skipped = line.slice('skip '.length)
      if (line.startsWith('prefilled ')) {
        const [sessions, seconds] = line.slice('prefilled '.length).split(' ').map(Number) as [number, number]
        prefilled = { sessions, seconds }
        log(`${scenario}: ${sessions} sessions prefilled in ${seconds.toFixed(1)} s`)
      }
      if (line.startsWith('listening ')) {
        clearTimeout(timer)
        resolve(Number(line.slice('listening '.length)))
      }
    })
  })
  if (port === undefined) return { skipped: skipped! }
  // Deleting a million Redis keys (or a schema) takes longer than closing a server.
  const stopTimeout = scenario.startsWith('refresh-') ? 120 : 10

  let requestId = 0
  async function ask<T> (message: object, reply: string, pick: (message: Record<string, unknown>) => T): Promise<T> {
    const id = ++requestId
    return await new Promise<T>((resolve, reject) => {
      const onMessage = (message: Record<string, unknown>) => {
        if (message.type !== reply || message.id !== id) return
        child.off('message', onMessage)
        resolve(pick(message))
      }
      child.on('message', onMessage)
      exited.then(() => reject(new Error(`${scenario}: the server exited before answering ${JSON.stringify(message)}`)), reject)
      child.send({ ...message, id })
    })
  }
  return {
    scenario,
    url: `http://127.0.0.1:${port}`,
    token,
    prefilled,
    issue: async (count) => await ask({ type: 'issue', count }, 'tokens', (message) => message.tokens as string[]),
    usage: async () => await ask({ type: 'usage' }, 'usage', (message) => message as unknown as Usage),
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeout * 1000)
        await exited
        clearTimeout(timer)
      }
    }
  }
}
