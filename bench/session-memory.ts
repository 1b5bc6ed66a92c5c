// The session-memory step: bytes per stored session, measured by bench/memory.ts in a process of
// its own (it needs `--expose-gc` and a quiet heap), then printed against the target.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { SESSION_BYTES_TARGET } from './config.js'
import { root } from './install.js'
import type { MemoryStoreFigure, RedisFigure, SessionMemory } from './memory.js'
import { children } from './spawn.js'

/** Runs bench/memory.ts in a process of its own (it needs `--expose-gc` and a quiet heap). */
export async function measureSessionMemory (log: (message: string) => void): Promise<SessionMemory | undefined> {
  log('session-memory: measuring bytes per stored session')
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(root, 'bench', 'memory.ts')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit']
  })
  children.add(child)
  let result: SessionMemory | undefined
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line.startsWith('result ')) result = JSON.parse(line.slice('result '.length)) as SessionMemory
  })
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)))
  children.delete(child)
  if (code !== 0) log(`session-memory: bench/memory.ts exited with ${code}`)
  return code === 0 ? result : undefined
}

/** The bytes-per-session table; returns each figure with its verdict for BENCH_OUT. */
export function printSessionMemory (memory: SessionMemory): Array<{ name: string, bytesPerSession: number, target: number, met: boolean }> {
  const figures: Array<{ name: string, sessions: number, bytesPerSession: number, note: string }> = [
    ...memory.memoryStore.map((figure: MemoryStoreFigure) => ({
      name: `MemoryStore heap, ${figure.sessionsPerUser} session(s)/user`,
      sessions: figure.sessions,
      bytesPerSession: figure.bytesPerSession,
      note: ''
    })),
    ...('skipped' in memory.redis
      ? []
      : memory.redis.map((figure: RedisFigure) => ({
        name: `Redis MEMORY USAGE, ${figure.sessionsPerUser} session(s)/user`,
        sessions: figure.sessions,
        bytesPerSession: figure.bytesPerSession,
        note: `record key ${figure.recordKeyBytes.toFixed(0)} (name ${figure.keyNameBytes.toFixed(0)}, value ` +
          `${figure.valueBytes.toFixed(0)}, Redis overhead ${(figure.recordKeyBytes - figure.keyNameBytes - figure.valueBytes).toFixed(0)}) ` +
          `+ user index ${figure.indexBytesPerSession.toFixed(0)}; used_memory growth ${figure.usedMemoryPerSession.toFixed(0)}`
      })))
  ]
  const verdicts = figures.map(({ name, bytesPerSession }) => ({ name, bytesPerSession, target: SESSION_BYTES_TARGET, met: bytesPerSession <= SESSION_BYTES_TARGET }))
  console.log(`\nMemory per stored session (a login + one refresh; 111-char User-Agent, IPv4, claims { username }), target <= ${SESSION_BYTES_TARGET} bytes`)
  const width = Math.max(...figures.map(({ name }) => name.length))
  for (const [i, { name, sessions, bytesPerSession, note }] of figures.entries()) {
    const verdict = verdicts[i]!.met ? 'met' : 'BELOW TARGET'
    console.log(`  ${name.padEnd(width)}  ${sessions.toLocaleString('en-US').padStart(7)} sessions  ${bytesPerSession.toFixed(0).padStart(5)} B  ${verdict.padEnd(12)}  ${note}`.trimEnd())
  }
  if ('skipped' in memory.redis) console.log(`  Redis: SKIPPED, ${memory.redis.skipped}`)

  const breakdowns = memory.memoryStore.filter((figure) => figure.breakdown !== null)
  if (breakdowns.length > 0) {
    console.log(`  MemoryStore, where the bytes go (bytes per session; ${breakdowns.map((figure) => `${figure.sessionsPerUser}/user`).join(', ')}):`)
    const parts = [...new Set(breakdowns.flatMap((figure) => figure.breakdown!.map((share) => share.part)))]
    for (const part of parts) {
      const cells = breakdowns.map((figure) => figure.breakdown!.find((share) => share.part === part)?.bytesPerSession ?? 0)
      console.log(`    ${cells.map((bytes) => bytes.toFixed(0).padStart(5)).join(' ')}  ${part}`)
    }
  }
  if (memory.redisRecordFields !== null) {
    const fields = Object.entries(memory.redisRecordFields).map(([field, bytes]) => `${field} ${bytes}`).join(', ')
    console.log(`  Redis record value (packed) by part, bytes: ${fields}`)
  }
  return verdicts
}
