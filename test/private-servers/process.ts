import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'

/*
 * What the private servers (redis.ts, postgres.ts) and the processes the chaos run starts share:
 * a free port, a look at a child's exit, and a synchronous cleanup at process exit. A test that
 * fails or is interrupted (SIGINT, tap's timeout SIGTERM) still leaves no process or temporary
 * directory behind.
 */

const exitSteps = new Map<symbol, () => void>()
let hooked = false

/**
 * Runs `step` (synchronous) at process exit or on a fatal signal, unless the returned function
 * is called first (the normal, asynchronous cleanup did the work).
 */
export function onExit (step: () => void): () => void {
  if (!hooked) {
    hooked = true
    process.once('exit', runExitSteps)
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => {
        runExitSteps()
        // Nobody else handles it: die of the signal, as without this handler.
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
      })
    }
  }
  const key = Symbol('exit step')
  exitSteps.set(key, step)
  return () => { exitSteps.delete(key) }
}

function runExitSteps (): void {
  for (const step of [...exitSteps.values()].reverse()) {
    try {
      step()
    } catch {}
  }
  exitSteps.clear()
}

const handedOut = new Set<number>()

/**
 * A TCP port nobody listens on right now, on 127.0.0.1, and never one this process handed out
 * before (runs in parallel each take several before listening on any).
 */
export async function freePort (): Promise<number> {
  for (;;) {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as net.AddressInfo
    await new Promise((resolve) => server.close(resolve))
    if (handedOut.has(port)) continue
    handedOut.add(port)
    return port
  }
}

export function stillRunning (child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null
}

/** Resolves true once `child` has exited, false after `ms` if it has not. */
export async function waitForExit (child: ChildProcess, ms: number): Promise<boolean> {
  if (!stillRunning(child)) return true
  // The timer is unref'd: left pending after the exit, it must not hold the test process for `ms`.
  return await Promise.race([once(child, 'exit').then(() => true), delay(ms, false, { ref: false })])
}
