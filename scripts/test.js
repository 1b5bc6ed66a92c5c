// Runs the whole tap suite and ends with one plain line, "N passed, N failed", so a run that
// executed nothing is visible. tap's exit code is kept.
import { spawn } from 'node:child_process'

const child = spawn('npx', ['tap', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] })
let summary = ''
let pending = ''
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  pending += chunk.toString()
  const lines = pending.split('\n')
  pending = lines.pop() ?? ''
  for (const line of lines) if (line.startsWith('# { total')) summary = line
})
child.on('close', (code, signal) => {
  if (pending.startsWith('# { total')) summary = pending
  const count = (key) => Number((summary.match(new RegExp(`${key}: (\\d+)`)) ?? [0, 0])[1])
  console.log(`${count('pass')} passed, ${count('fail')} failed`)
  process.exitCode = code ?? (signal ? 1 : 0)
})
