import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { migrate } from '../../lib/stores/postgres/index.js'
import { sleep } from '../helpers.js'
import { skipOrFail } from '../services.js'
import { freePort, onExit } from './process.js'

/*
 * A PostgreSQL cluster of the test's own, which it may hurt (lock, terminate its backends, stop
 * it immediately) without touching the shared server on 5432. Used by the chaos run (test/chaos/).
 */

/** Why a private PostgreSQL cannot run here (undefined: it can); under CI=true, a throw. */
export function privatePostgresUnavailable (): string | undefined {
  if (postgresBin() === undefined) return skipOrFail('initdb/pg_ctl not found under /usr/lib/postgresql/*/bin or PATH; install postgresql to run the tests on a private PostgreSQL')
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) return skipOrFail('running as root without a "postgres" OS user: initdb refuses to run as root')
  return undefined
}

/** The directory holding initdb and pg_ctl: the newest /usr/lib/postgresql/<v>/bin, else PATH. */
function postgresBin (): string | undefined {
  const root = '/usr/lib/postgresql'
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a))
    for (const version of versions) {
      const bin = join(root, version, 'bin')
      if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin
    }
  }
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' })
  const found = which.status === 0 ? which.stdout.trim() : ''
  return found === '' ? undefined : join(found, '..')
}

/** The sessions table of the PostgresStore with default naming (see lib/stores/postgres/schema.ts). */
const SESSIONS_TABLE = '"public"."token_auth_sessions"'

/**
 * A private PostgreSQL cluster (initdb in a temporary directory, trust authentication) on a
 * free loopback port, its socket in that directory. Run as the `postgres` OS user when this
 * process is root (initdb refuses root). fsync is off: an immediate stop is a crash of the
 * server, not of the machine, so committed data (written to the OS at commit) survives it.
 */
export class PrivatePostgres {
  readonly port: number
  readonly dir: string
  readonly #bin: string
  #cancelExit: () => void
  #running = false

  private constructor (port: number, dir: string, bin: string) {
    this.port = port
    this.dir = dir
    this.#bin = bin
    this.#cancelExit = onExit(() => {
      if (this.#running) this.#pgCtlSync(['stop', '-m', 'immediate', '-w', '-t', '10'])
      rmSync(this.dir, { recursive: true, force: true })
    })
  }

  static async start (): Promise<PrivatePostgres> {
    const bin = postgresBin()
    if (bin === undefined) throw new Error('initdb not found')
    const dir = mkdtempSync(join(tmpdir(), 'fta-private-pg-'))
    const server = new PrivatePostgres(await freePort(), dir, bin)
    try {
      mkdirSync(server.#socketDir)
      if (process.getuid?.() === 0) {
        for (const path of [dir, server.#socketDir]) chownSync(path, uid('postgres'), gid('postgres'))
      }
      await server.#run(join(bin, 'initdb'), ['-D', server.#dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions'])
      await server.#start()
      await withPool(server.url, (pool) => pool.query('CREATE DATABASE app'))
      await withPool(server.databaseUrl, (pool) => migrate(pool))
    } catch (error) {
      await server.stop()
      throw error
    }
    return server
  }

  get #dataDir (): string {
    return join(this.dir, 'data')
  }

  get #socketDir (): string {
    return join(this.dir, 'sock')
  }

  /** The maintenance database `postgres`. */
  get url (): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`
  }

  /** The database the app uses (`app`, migrated). */
  get databaseUrl (): string {
    return `postgres://postgres@127.0.0.1:${this.port}/app`
  }

  #asPostgres (command: string, args: string[]): [string, string[]] {
    return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]
  }

  async #run (command: string, args: string[]): Promise<void> {
    const [file, argv] = this.#asPostgres(command, args)
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += String(chunk) })
    child.stderr.on('data', (chunk: Buffer) => { output += String(chunk) })
    const [code] = await once(child, 'exit') as [number | null]
    if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${code}: ${output}`)
  }

  #pgCtlSync (args: string[]): void {
    const [file, argv] = this.#asPostgres(join(this.#bin, 'pg_ctl'), ['-D', this.#dataDir, ...args])
    spawnSync(file, argv, { stdio: 'ignore', cwd: this.dir, timeout: 20_000 })
  }

  async #start (): Promise<void> {
    this.#running = true
    await this.#run(join(this.#bin, 'pg_ctl'), [
      '-D', this.#dataDir, '-l', join(this.dir, 'postgres.log'), '-w', '-t', '30',
      '-o', `-p ${this.port} -k ${this.#socketDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
      'start'
    ])
  }

  async #stopImmediately (): Promise<void> {
    if (!this.#running) return
    await this.#run(join(this.#bin, 'pg_ctl'), ['-D', this.#dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'])
    this.#running = false
  }

  async #client (): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.databaseUrl, connectionTimeoutMillis: 5000 })
    client.on('error', () => {})
    await client.connect()
    return client
  }

  /**
   * Every query on the sessions table waits, for `ms`: a separate connection holds
   * `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` in an open transaction, then rolls back.
   */
  async stall (ms: number): Promise<void> {
    const client = await this.#client()
    try {
      await client.query('BEGIN')
      await client.query(`LOCK TABLE ${SESSIONS_TABLE} IN ACCESS EXCLUSIVE MODE`)
      await sleep(ms)
      await client.query('ROLLBACK')
    } finally {
      await client.end().catch(() => {})
    }
  }

  /** Terminates every other client backend of the database; resolves with how many. */
  async terminateConnections (): Promise<number> {
    const client = await this.#client()
    try {
      const result = await client.query(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
      return result.rowCount ?? 0
    } finally {
      await client.end().catch(() => {})
    }
  }

  /** `pg_ctl stop -m immediate` (a crash: no checkpoint), `downMs` down, then started again on the same data. */
  async killAndRestart (downMs = 0): Promise<void> {
    await this.#stopImmediately()
    if (downMs > 0) await sleep(downMs)
    await this.#start()
  }

  /** Stops the cluster (immediately) and removes its directory. */
  async stop (): Promise<void> {
    await this.#stopImmediately().catch(() => { this.#pgCtlSync(['stop', '-m', 'immediate']) })
    rmSync(this.dir, { recursive: true, force: true })
    this.#cancelExit()
  }
}

/** Runs `use` on a one-connection pool to `url`, ended afterwards. */
async function withPool (url: string, use: (pool: pg.Pool) => Promise<unknown>): Promise<void> {
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  pool.on('error', () => {})
  try {
    await use(pool)
  } finally {
    await pool.end()
  }
}

function uid (user: string): number {
  return Number(spawnSync('id', ['-u', user], { encoding: 'utf8' }).stdout.trim())
}

function gid (user: string): number {
  return Number(spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim())
}
