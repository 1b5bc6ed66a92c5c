// The session-memory step: bytes per stored session, measured by bench/memory.ts in a process of
// its own (it needs `--expose-gc` and a quiet heap), then printed against the target.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { SESSION_BYTES_TARGET } from './config.js'
import { root } from './install.js'
import type { MemoryStoreFigure, RedisFigure, SessionMemory } from './memory.js'
import { userAgent } from './server/records.js'
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
  // The target counts what a session costs beyond its User-Agent string (issue 11): in the heap,
  // the same sessions with one shared string; in Redis, the bytes less the string's length.
  const agentBytes = Buffer.byteLength(userAgent(0))
  const figures: Array<{ name: string, sessions: number, bytesPerSession: number, beyondAgent: number, note: string }> = [
    ...memory.memoryStore.map((figure: MemoryStoreFigure) => ({
      name: `MemoryStore heap, ${figure.sessionsPerUser} session(s)/user`,
      sessions: figure.sessions,
      bytesPerSession: figure.bytesPerSession,
      beyondAgent: figure.internedBytesPerSession,
      note: `the same sessions sharing one User-Agent string: ${figure.internedBytesPerSession.toFixed(0)}`
    })),
    ...('skipped' in memory.redis
      ? []
      : memory.redis.map((figure: RedisFigure) => ({
        name: `Redis MEMORY USAGE, ${figure.sessionsPerUser} session(s)/user`,
        sessions: figure.sessions,
        bytesPerSession: figure.bytesPerSession,
        beyondAgent: figure.bytesPerSession - agentBytes,
        note: `record key ${figure.recordKeyBytes.toFixed(0)} (name ${figure.keyNameBytes.toFixed(0)}, value ` +
          `${figure.valueBytes.toFixed(0)}, Redis overhead ${(figure.recordKeyBytes - figure.keyNameBytes - figure.valueBytes).toFixed(0)}) ` +
          `+ user index ${figure.indexBytesPerSession.toFixed(0)}; used_memory growth ${figure.usedMemoryPerSession.toFixed(0)}`
      })))
  ]
  if (!('skipped' in memory.redis)) {
    figures.push(...memory.redis.map((figure: RedisFigure) => ({
      name: `Redis used_memory growth, ${figure.sessionsPerUser} session(s)/user`,
      sessions: figure.sessions,
      bytesPerSession: figure.usedMemoryPerSession,
      beyondAgent: figure.usedMemoryPerSession - agentBytes,
      note: 'with each key\'s expiry entry and hash-table slots'
    })))
  }
  const verdicts = figures.map(({ name, beyondAgent }) => ({ name, bytesPerSession: beyondAgent, target: SESSION_BYTES_TARGET, met: beyondAgent <= SESSION_BYTES_TARGET }))
  console.log(`\nMemory per stored session (a login + one refresh; a distinct ${agentBytes}-byte User-Agent each, IPv4, claims { username }), ` +
    `target <= ${SESSION_BYTES_TARGET} bytes beyond the User-Agent`)
  const width = Math.max(...figures.map(({ name }) => name.length))
  for (const [i, { name, sessions, bytesPerSession, beyondAgent, note }] of figures.entries()) {
    const verdict = verdicts[i]!.met ? 'met' : 'OVER TARGET'
    console.log(`  ${name.padEnd(width)}  ${sessions.toLocaleString('en-US').padStart(7)} sessions  ${bytesPerSession.toFixed(0).padStart(5)} B, ` +
      `${beyondAgent.toFixed(0).padStart(4)} B beyond the User-Agent  ${verdict.padEnd(11)}  ${note}`.trimEnd())
  }
  if ('skipped' in memory.redis) console.log(`  Redis: SKIPPED, ${memory.redis.skipped}`)
  for (const figure of memory.memoryStore) {
    console.log('  Interning User-Agent strings (not done, reported only) would save the MemoryStore ' +
      `${(figure.bytesPerSession - figure.internedBytesPerSession).toFixed(0)} B a session at ${figure.sessionsPerUser}/user`)
  }

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
