import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { PASSWORD, USERNAME, waitFor } from '../helpers.js'
import { freePort, onExit, waitForExit } from '../private-servers/process.js'
import type { StoreKind } from './faults.js'
import type { ExampleClient } from './http.js'

/*
 * The example server (examples/server.ts) in a child process, as it runs in production, on the
 * run's private store; its JSON log lines counted by level, the warn/error ones by message.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }

interface ExampleSettings {
  store: StoreKind
  /** REDIS_URL or DATABASE_URL, as `store` says. */
  storeUrl: string
  port: number
  storeTimeoutMs: number
  /** Clients that log in: the login rate limits are raised above it. */
  sessions: number
  /** REFRESH_REUSE_GRACE, seconds; undefined: the example's default. */
  reuseGrace: number | undefined
}

export interface ExampleReport {
  pid: number | undefined
  /** The example exited before the harness stopped it. */
  crashed: boolean
  exitCode: number | null
  signal: string | null
  /** Seconds after the load start it exited, when it crashed. */
  exitedAt: number | null
  /** How the SIGTERM at the end went: exit code (0: clean), or "killed" after 10 s. */
  shutdown: string
  /** Its stderr: the first 1500 characters (where an uncaught error starts), '…', the last 500. */
  stderr: string
}

export interface LogReport {
  byLevel: Record<string, number>
  /** Lines at level >= 50 (error, fatal). */
  errors: number
  /** Of those, lines carrying err.stack. */
  errorsWithStack: number
  /** The most frequent error/warn lines: "level msg | err.type: err.message" -> count. */
  top: Record<string, number>
  unparsed: number
}

function exampleEnv (settings: ExampleSettings): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // No coverage and no tap hooks in the child: the server as it runs in production.
    _TAPJS_PROCESSINFO_COVERAGE_: '0',
    TOKEN_STORE: settings.store,
    PORT: String(settings.port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    STORE_TIMEOUT_MS: String(settings.storeTimeoutMs),
    LOGIN_RATE_LIMIT: String(settings.sessions * 2 + 100),
    ACCOUNT_RATE_LIMIT: String(settings.sessions * 2 + 100),
    ACCESS_TOKEN_SECRET: randomBytes(32).toString('base64url'),
    REFRESH_TOKEN_SECRET: randomBytes(32).toString('base64url'),
    DEMO_USERNAME: USERNAME,
    DEMO_PASSWORD: PASSWORD
  }
  if (process.env.TAP === '1') delete env.NODE_OPTIONS
  delete env.REDIS_URL
  delete env.DATABASE_URL
  delete env.REFRESH_REUSE_GRACE
  env[settings.store === 'redis' ? 'REDIS_URL' : 'DATABASE_URL'] = settings.storeUrl
  if (settings.reuseGrace !== undefined) env.REFRESH_REUSE_GRACE = String(settings.reuseGrace)
  return env
}

interface Exit { code: number | null, signal: string | null, at: number }

export class Example {
  readonly #child: ChildProcess
  readonly inspectPort: number
  /** The server process itself (see serverPid), once it is up. */
  pid: number | undefined
  #stopping = false
  #exit: Exit | undefined
  /** When the process began to exit on its own while an inspector session was attached. */
  #dying: number | undefined
  readonly #exited: Promise<void>
  readonly #byLevel: Record<string, number> = {}
  readonly #top = new Map<string, number>()
  #errors = 0
  #errorsWithStack = 0
  #unparsed = 0
  #stderr = ''

  /** Spawns the example; `waitUntilUp` says when it answers. */
  static async start (settings: ExampleSettings): Promise<Example> {
    return new Example(exampleEnv(settings), await freePort())
  }

  private constructor (env: NodeJS.ProcessEnv, inspectPort: number) {
    this.inspectPort = inspectPort
    // The inspector (loopback only) lets the harness force a GC before reading RSS (rss.ts).
    const child = spawn(process.execPath, [`--inspect=127.0.0.1:${inspectPort}`, '--import', 'tsx', 'examples/server.ts'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] })
    this.#child = child
    const cancel = onExit(() => { if (this.#exit === undefined) child.kill('SIGKILL') })
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal, at: Date.now() }
        cancel()
        resolve()
      })
    })
    createInterface({ input: child.stdout! }).on('line', (line) => { this.#countLogLine(line) })
    createInterface({ input: child.stderr! }).on('line', (line) => {
      // Exiting while a debugger session is attached: the process lingers, deaf, until it detaches.
      if (line.startsWith('Waiting for the debugger to disconnect')) this.#dying ??= Date.now()
      // The inspector's own chatter at each forced GC is no news.
      if (/^(Debugger (listening on|attached|ending on)|For help, see: )/.test(line)) return
      if (this.#stderr.length < 200_000) this.#stderr += `${line}\n`
    })
  }

  /** Resolves once /health answers 200 (within 60 s); rejects if the example exits first. */
  async waitUntilUp (http: ExampleClient): Promise<void> {
    await waitFor(async () => {
      if (!this.alive) throw new Error(`the example exited at start (${this.#exit?.code ?? this.#exit?.signal}): ${this.#stderr}`)
      const health = await http.request('GET', '/health').catch(() => undefined)
      return health?.status === 200
    }, { timeout: 60_000, interval: 100, message: () => `the example did not answer /health: ${this.#stderr}` })
    this.pid = serverPid(this.#child.pid as number)
  }

  get alive (): boolean {
    return this.#exit === undefined && this.#dying === undefined
  }

  /** It exited, or began to, before `stop`. */
  get crashed (): boolean {
    return (this.#exit !== undefined && !this.#stopping) || this.#dying !== undefined
  }

  /** SIGTERM (the example closes cleanly), SIGKILL after 10 s; resolves with how it went. */
  async stop (): Promise<string> {
    if (this.#exit !== undefined) return this.#stopping ? String(this.#exit.code ?? this.#exit.signal) : 'already exited'
    this.#stopping = true
    if (this.#dying !== undefined) {
      this.#child.kill('SIGKILL')
      await this.#exited
      return 'crashed (SIGKILL to the lingering process)'
    }
    this.#child.kill('SIGTERM')
    if (await waitForExit(this.#child, 10_000)) {
      const exit = this.#exit as Exit | undefined // set by the 'exit' listener meanwhile
      return String(exit?.code ?? exit?.signal)
    }
    this.#child.kill('SIGKILL')
    await this.#exited
    return 'killed (no exit 10 s after SIGTERM)'
  }

  /** `shutdown`: what `stop` resolved with; `since`: seconds after the load start of a Date.now(). */
  report (shutdown: string, since: (time: number) => number): ExampleReport {
    const crashed = this.crashed
    return {
      pid: this.pid,
      crashed,
      exitCode: crashed ? this.#exit?.code ?? null : null,
      signal: crashed ? this.#exit?.signal ?? null : null,
      exitedAt: crashed ? since(this.#dying ?? this.#exit?.at ?? Date.now()) : null,
      shutdown,
      stderr: this.#stderr.length <= 2000 ? this.#stderr : `${this.#stderr.slice(0, 1500)}\n…\n${this.#stderr.slice(-500)}`
    }
  }

  get logs (): LogReport {
    return {
      byLevel: this.#byLevel,
      errors: this.#errors,
      errorsWithStack: this.#errorsWithStack,
      top: Object.fromEntries([...this.#top].sort((a, b) => b[1] - a[1]).slice(0, 8)),
      unparsed: this.#unparsed
    }
  }

  #countLogLine (line: string): void {
    let entry: { level?: number, msg?: string, err?: { type?: string, message?: string, stack?: string } }
    try {
      entry = JSON.parse(line)
    } catch {
      this.#unparsed++
      return
    }
    const level = LEVELS[entry.level ?? 0] ?? String(entry.level)
    this.#byLevel[level] = (this.#byLevel[level] ?? 0) + 1
    if ((entry.level ?? 0) >= 50) {
      this.#errors++
      if (typeof entry.err?.stack === 'string' && entry.err.stack !== '') this.#errorsWithStack++
    }
    if ((entry.level ?? 0) >= 40) {
      const key = `${level} ${entry.msg ?? ''}${entry.err === undefined ? '' : ` | ${entry.err.type ?? ''}: ${entry.err.message ?? ''}`}`.slice(0, 200)
      this.#top.set(key, (this.#top.get(key) ?? 0) + 1)
    }
  }
}

/**
 * The pid of the server itself: the child when it is node running examples/server.ts, else
 * its descendant that is (a wrapper such as the tsx CLI spawns node).
 */
function serverPid (pid: number): number | undefined {
  const isServer = (candidate: number): boolean => {
    try {
      return readFileSync(`/proc/${candidate}/cmdline`, 'utf8').split('\0').some((arg) => arg.endsWith(join('examples', 'server.ts')))
    } catch {
      return false
    }
  }
  const queue = [pid]
  while (queue.length > 0) {
    const candidate = queue.shift() as number
    if (isServer(candidate) && !childrenOf(candidate).some(isServer)) return candidate
    queue.push(...childrenOf(candidate))
  }
  return undefined
}

function childrenOf (pid: number): number[] {
  const tasks = `/proc/${pid}/task`
  if (!existsSync(tasks)) return []
  return readdirSync(tasks).flatMap((task) => {
    try {
      return readFileSync(join(tasks, task, 'children'), 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
    } catch {
      return []
    }
  })
}
