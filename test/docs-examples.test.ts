// Every ```ts / ```typescript block of README.md, CONTRIBUTING.md and docs/*.md is a complete
// module that type-checks against the sources in lib/: a renamed option or helper breaks the
// docs here, not in a reader's editor. Each block becomes its own file in a temporary directory,
// named after its source file and line, and all of them are checked in one program (no emit).
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import ts from 'typescript'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DOCS = [
  'README.md',
  'CONTRIBUTING.md',
  ...readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`)
]

/** The package's entry points (package.json "exports"), mapped to their sources. */
const ENTRIES: Record<string, string> = {
  'fastify-token-auth': 'lib/index.ts',
  'fastify-token-auth/redis': 'lib/stores/redis/index.ts',
  'fastify-token-auth/postgres': 'lib/stores/postgres/index.ts',
  'fastify-token-auth/client': 'lib/client.ts',
  'fastify-token-auth/testing': 'lib/testing.ts'
}

/**
 * Packages the migration guide imports from the code it migrates, which this repository does
 * not install: declared with the signatures the examples use, no wider.
 */
const THIRD_PARTY = `
declare module 'bcrypt' {
  export function hash (data: string, saltOrRounds: string | number): Promise<string>
  export function compare (data: string, encrypted: string): Promise<boolean>
  const bcrypt: { hash: typeof hash, compare: typeof compare }
  export default bcrypt
}
declare module 'jsonwebtoken' {
  export interface JwtHeader { alg: string, typ?: string, kid?: string }
  export interface Jwt { header: JwtHeader, payload: string | Record<string, unknown>, signature: string }
  export function decode (token: string, options: { complete: true }): Jwt | null
  export function verify (token: string, secret: string, options?: { algorithms?: string[] }): string | Record<string, unknown>
  const jwt: { decode: typeof decode, verify: typeof verify }
  export default jwt
}
`

interface Block {
  /** `README.md:42`: the file and the line of the block's first code line. */
  where: string
  source: string
  line: number
  code: string
}

/** The ts/typescript fenced blocks of one markdown file (``` and ~~~ fences, any length). */
function extractBlocks (source: string, text: string): Block[] {
  const blocks: Block[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i] ?? '')
    if (open === null) continue
    const fence = open[1] ?? '```'
    const info = (open[2] ?? '').toLowerCase()
    const start = i + 1
    let end = start
    while (end < lines.length && !(lines[end] ?? '').trimStart().startsWith(fence)) end++
    if (info === 'ts' || info === 'typescript') {
      blocks.push({ where: `${source}:${start + 1}`, source, line: start + 1, code: lines.slice(start, end).join('\n') })
    }
    i = end
  }
  return blocks
}

/** The repository's compiler options (tsconfig.json), for checking only. */
function compilerOptions (): ts.CompilerOptions {
  const configPath = join(ROOT, 'tsconfig.json')
  const config = ts.readConfigFile(configPath, (path) => ts.sys.readFile(path))
  if (config.error !== undefined) throw new Error(ts.flattenDiagnosticMessageText(config.error.messageText, '\n'))
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT, undefined, configPath)
  return {
    ...parsed.options,
    noEmit: true,
    skipLibCheck: true,
    declaration: false,
    sourceMap: false,
    // The examples are not part of the project: no rootDir / include applies to them.
    rootDir: undefined,
    paths: Object.fromEntries(Object.entries(ENTRIES).map(([name, file]) => [name, [join(ROOT, file)]]))
  }
}

const blocks = DOCS.flatMap((source) => extractBlocks(source, readFileSync(join(ROOT, source), 'utf8')))
const count = (source: string): number => blocks.filter((block) => block.source === source).length

t.test('the documentation has TypeScript examples to check', async (t) => {
  t.ok(count('README.md') >= 5, `README.md: ${count('README.md')} blocks`)
  for (const source of DOCS) t.comment(`${source}: ${count(source)} TypeScript blocks`)
  for (const source of ['docs/migration.md', 'docs/stores.md']) {
    t.ok(count(source) >= 1, `${source}: ${count(source)} blocks`)
  }
})

t.test('every TypeScript block of the documentation type-checks', async (t) => {
  // A temporary package beside nothing: ESM ("type": "module") and the repository's node_modules.
  const dir = mkdtempSync(join(tmpdir(), 'docs-examples-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }))
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  writeFileSync(join(dir, 'third-party.d.ts'), THIRD_PARTY)

  const byFile = new Map<string, Block>()
  for (const block of blocks) {
    const file = join(dir, `${block.source.replace(/[^A-Za-z0-9]+/g, '-')}-L${block.line}.ts`)
    // `export {}` keeps a block without imports a module; it adds no line before the block's own.
    writeFileSync(file, `${block.code}\nexport {}\n`)
    byFile.set(resolve(file), block)
  }

  const program = ts.createProgram({
    rootNames: [...byFile.keys(), join(dir, 'third-party.d.ts')],
    options: compilerOptions()
  })
  // The blocks' own diagnostics (and the program's): lib/ itself is `npm run typecheck`'s job.
  const stubs = resolve(join(dir, 'third-party.d.ts'))
  const diagnostics = ts.getPreEmitDiagnostics(program).filter((diagnostic) =>
    diagnostic.file === undefined || byFile.has(resolve(diagnostic.file.fileName)) || resolve(diagnostic.file.fileName) === stubs)
  const messages = diagnostics.map((diagnostic) => {
    const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')
    const file = diagnostic.file
    if (file === undefined) return `(program): ${text}`
    const block = byFile.get(resolve(file.fileName))
    const { line } = file.getLineAndCharacterOfPosition(diagnostic.start ?? 0)
    if (block === undefined) return `${relative(ROOT, file.fileName)}:${line + 1}: ${text}`
    return `${block.source}:${block.line + line}: ${text}`
  })
  t.same(messages, [], `${blocks.length} blocks from ${DOCS.length} files type-check without diagnostics`)
  t.equal(program.getRootFileNames().length, blocks.length + 1, 'every block is in the program')
})
