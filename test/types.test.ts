import { execFile } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

// The type tests (test/types/*.tst.ts) run under tstyche, in its own process; this file makes
// their result part of the tap run.
const root = join(import.meta.dirname, '..')
const typeTests = readdirSync(join(root, 'test', 'types')).filter((name) => name.endsWith('.tst.ts'))

t.test('tstyche: every type test passes', async (t) => {
  t.ok(typeTests.length >= 3, `found the type test files: ${typeTests.join(', ')}`)
  const { code, output } = await new Promise<{ code: number | null, output: string }>((resolve) => {
    execFile(join(root, 'node_modules', '.bin', 'tstyche'), ['test/types'], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', _TAPJS_PROCESSINFO_COVERAGE_: '0' },
      maxBuffer: 16 * 1024 * 1024
    }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : (typeof error.code === 'number' ? error.code : null), output: stdout + stderr })
    })
  })
  if (code !== 0) t.comment(output)
  t.equal(code, 0, 'tstyche exits 0')
  // Exit 0 with nothing run would prove nothing: every file must have been found and passed.
  t.match(output, new RegExp(`Test files:\\s+${typeTests.length} passed, ${typeTests.length} total`), 'every type test file ran and passed')
  t.notMatch(output, /\bfailed\b/, 'no failed file, test or assertion')
  const assertions = Number(/Assertions:\s+(\d+) passed/.exec(output)?.[1] ?? 0)
  t.ok(assertions >= 100, `ran ${assertions} type assertions`)
  // The lines that must not compile: each `// @ts-expect-error <fragment>` matched its error.
  const suppressed = /Suppressed:\s+(\d+) matched, (\d+) total/.exec(output)
  t.ok(Number(suppressed?.[1] ?? 0) >= 25, `${suppressed?.[1] ?? 0} expected errors raised with the expected message`)
  t.equal(suppressed?.[1], suppressed?.[2], 'every @ts-expect-error matched')
})
