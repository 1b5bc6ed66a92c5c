import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sleep } from '../helpers.js'
import { skipOrFail } from '../services.js'
import { freePort, onExit, stillRunning, waitForExit } from './process.js'

/*
 * A redis-server of the test's own, which it may hurt (stop, kill, cut its clients) without
 * touching the shared one on 6379. Used by test/outage.test.ts and the chaos run (test/chaos/).
 */

/** Why a private redis-server cannot run here (undefined: it can); under CI=true, a throw. */
export function privateRedisUnavailable (): string | undefined {
  const found = spawnSync('redis-server', ['--version'])
  if (found.error === undefined) return undefined
  return skipOrFail(`redis-server is not installed (${found.error.message}); install redis-server (7.x) to run the tests on a private Redis`)
}

/** Sends commands pipelined over a fresh connection (RESP); resolves with one reply line each. */
async function redisCommands (port: number, commands: string[][], timeoutMs = 30_000): Promise<string[]> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setEncoding('utf8')
  const replies: string[] = []
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis on ${port}: no reply to ${JSON.stringify(commands)} in ${timeoutMs} ms`)), timeoutMs)
      let buffer = ''
      socket.on('error', (error) => { clearTimeout(timer); reject(error) })
      socket.on('data', (chunk: string) => {
        buffer += chunk
        let end: number
        while ((end = buffer.indexOf('\r\n')) !== -1) {
          replies.push(buffer.slice(0, end))
          buffer = buffer.slice(end + 2)
        }
        // Only simple replies are expected (+OK, :n, -ERR): one line each.
        if (replies.length >= commands.length) { clearTimeout(timer); resolve() }
      })
      socket.write(commands.map((args) => `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`).join(''))
    })
  } finally {
    socket.destroy()
  }
  const failed = replies.find((reply) => reply.startsWith('-'))
  if (failed !== undefined) throw new Error(`redis on ${port}: ${failed}`)
  return replies
}

interface PrivateRedisOptions {
  /**
   * true (default): an append-only file fsynced on every write, so SIGKILL loses nothing that
   * was acknowledged. false: no persistence at all, a restart comes back empty.
   */
  persistence?: boolean
}

/**
 * A private redis-server on a free loopback port, its files in a temporary directory removed at
 * stop. DEBUG is enabled (DEBUG SLEEP).
 */
export class PrivateRedis {
  readonly port: number
  readonly dir: string
  readonly #persistence: boolean
  #child: ChildProcess | undefined
  #cancelExit: () => void

  private constructor (port: number, dir: string, persistence: boolean) {
    this.port = port
    this.dir = dir
    this.#persistence = persistence
    this.#cancelExit = onExit(() => {
      if (this.#child?.pid !== undefined && stillRunning(this.#child)) {
        try { process.kill(this.#child.pid, 'SIGKILL') } catch {}
      }
      rmSync(this.dir, { recursive: true, force: true })
    })
  }

  static async start ({ persistence = true }: PrivateRedisOptions = {}): Promise<PrivateRedis> {
    const server = new PrivateRedis(await freePort(), mkdtempSync(join(tmpdir(), 'fta-private-redis-')), persistence)
    try {
      await server.restart()
    } catch (error) {
      await server.stop()
      throw error
    }
    return server
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Starts the server (again) on the same port and directory; resolves once it accepts connections. */
  async restart (): Promise<void> {
    if (stillRunning(this.#child)) throw new Error(`redis-server on port ${this.port} is still running`)
    const persistence = this.#persistence ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--daemonize', 'no',
      '--dir', this.dir, '--save', '', ...persistence, '--enable-debug-command', 'yes'
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.#child = child
    let output = ''
    // Read for as long as it runs: a full pipe would block the server.
    const collect = (chunk: Buffer): void => { output = (output + String(chunk)).slice(-20_000) }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { finish(new Error(`redis-server did not start on port ${this.port}: ${output}`)) }, 15_000)
      const onData = (): void => { if (output.includes('Ready to accept connections')) finish() }
      const onExit = (code: number | null): void => { finish(new Error(`redis-server exited (${code}) on port ${this.port}: ${output}`)) }
      function finish (error?: Error): void {
        clearTimeout(timer)
        child.stdout.removeListener('data', onData)
        child.removeListener('exit', onExit)
        if (error === undefined) resolve()
        else reject(error)
      }
      child.stdout.on('data', onData)
      child.once('exit', onExit)
    })
  }

  /** The server hangs with every connection open (SIGSTOP) until `resume`. */
  pause (): void {
    if (!stillRunning(this.#child)) throw new Error('redis-server is not running')
    this.#child.kill('SIGSTOP')
  }

  resume (): void {
    this.#child?.kill('SIGCONT')
  }

  /** `pause` for `ms`, then `resume`. */
  async stall (ms: number): Promise<void> {
    this.pause()
    try {
      await sleep(ms)
    } finally {
      this.resume()
    }
  }

  /**
   * Cuts every normal client connection (CLIENT KILL TYPE normal: the app's commands in flight
   * fail), then keeps the server busy for `seconds` (DEBUG SLEEP): the reconnecting clients
   * connect and send, and wait. Sent pipelined, so nothing runs in between.
   */
  async killClientsThenBusy (seconds: number): Promise<void> {
    await redisCommands(this.port, [['CLIENT', 'KILL', 'TYPE', 'normal'], ['DEBUG', 'SLEEP', String(seconds)]], seconds * 1000 + 30_000)
  }

  /** SIGKILL; resolves once the server is gone. */
  async kill (): Promise<void> {
    const child = this.#child
    if (!stillRunning(child)) return
    child.kill('SIGCONT') // in case it was paused
    child.kill('SIGKILL')
    await waitForExit(child, 10_000)
  }

  /** `kill`, `downMs` with nothing listening, then `restart` (with persistence: the AOF reloaded). */
  async killAndRestart (downMs = 0): Promise<void> {
    await this.kill()
    if (downMs > 0) await sleep(downMs)
    await this.restart()
  }

  /** Kills the server and removes its directory. */
  async stop (): Promise<void> {
    await this.kill()
    rmSync(this.dir, { recursive: true, force: true })
    this.#cancelExit()
  }
}
