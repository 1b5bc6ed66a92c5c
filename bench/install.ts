// How the bench servers get the plugin. By default as a user does: `npm run build` and `npm pack`,
// in a temporary snapshot of the package's sources (lib/, package.json, the tsconfigs, the
// top-level documents; node_modules linked), so neither the build nor a concurrent edit touches
// the checkout's dist/ or mixes with it; then that tarball installed into a temporary consumer project
// together with the baselines' packages (each at the version this repository has installed,
// from the npm cache, `--prefer-offline --ignore-scripts`: nothing is built or downloaded as a
// binary). bench/server/*.ts is compiled (TypeScript's transpileModule) into
// <consumer>/server/*.js, so the server runs on plain `node` and `import 'fastify-token-auth'`
// resolves to the installed package. One install per run; removed at exit.
// BENCH_SOURCE=lib: no build, the servers run `node --import tsx bench/server/main.ts` on lib/.
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import ts from 'typescript'

const run = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))
export const root = join(here, '..')

/** What the bench servers import besides the plugin, at the versions installed here. */
const SERVER_PACKAGES = ['fastify', '@fastify/cookie', '@fastify/jwt', 'fast-jwt', 'express', 'jsonwebtoken', 'redis', 'pg']

export interface Prepared {
  /** The server command without its scenario argument: node's flags come after element 0. */
  command: string[]
  cwd: string
  /** What the servers run, for the report. */
  description: string
  /** Removes the temporary directory. */
  dispose: () => Promise<void>
}

export async function prepare (source: 'package' | 'lib', log: (message: string) => void): Promise<Prepared> {
  if (source === 'lib') {
    return {
      command: [process.execPath, '--import', 'tsx', join(here, 'server', 'main.ts')],
      cwd: root,
      description: 'BENCH_SOURCE=lib: the working tree\'s lib/ through tsx (not what a user gets)',
      dispose: async () => {}
    }
  }
  const started = performance.now()
  const dir = await mkdtemp(join(tmpdir(), 'fta-bench-'))
  try {
    const source = join(dir, 'package')
    await snapshot(source)
    log(`install: npm run build, npm pack (in ${source})`)
    await npm(['run', 'build'], source)
    const packed = JSON.parse(await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], source)) as Array<{ filename: string }>
    const tarball = packed[0]!.filename.replace(/^@[^/]+\//, '').replace('/', '-')
    const consumer = join(dir, 'consumer')
    await mkdir(join(consumer, 'server'), { recursive: true })
    const dependencies: Record<string, string> = { 'fastify-token-auth': `file:../${tarball}` }
    for (const name of SERVER_PACKAGES) dependencies[name] = await installedVersion(name)
    await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'fta-bench-consumer', private: true, type: 'module', dependencies }, null, 2))
    log(`install: ${tarball} into ${consumer}`)
    await npm(['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock'], consumer)
    await compileServer(join(consumer, 'server'))
    log(`install: done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    return {
      command: [process.execPath, join(consumer, 'server', 'main.js')],
      cwd: consumer,
      description: `the packed package (${tarball}) installed into a consumer project; servers compiled to JavaScript, plain node`,
      dispose: async () => await rm(dir, { recursive: true, force: true })
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

/** What `npm run build` and `npm pack` read, copied from the working tree; node_modules linked. */
async function snapshot (to: string): Promise<void> {
  await mkdir(to)
  const top = (await readdir(root)).filter((name) => /^(package\.json|tsconfig.*\.json|LICEN[CS]E.*|.*\.md)$/i.test(name))
  for (const name of [...top, 'lib']) await cp(join(root, name), join(to, name), { recursive: true })
  await symlink(join(root, 'node_modules'), join(to, 'node_modules'), 'dir')
}

async function npm (args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run('npm', args, { cwd, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, npm_config_update_notifier: 'false' } })
    return stdout
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string, stderr?: string }
    throw new Error(`npm ${args.join(' ')} failed in ${cwd}:\n${stdout ?? ''}${stderr ?? ''}`)
  }
}

async function installedVersion (name: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }
  return manifest.version
}

/** bench/server/*.ts to `out`/*.js; refuses output that would still reach into lib/. */
async function compileServer (out: string): Promise<void> {
  const sources = join(here, 'server')
  for (const file of (await readdir(sources)).filter((name) => name.endsWith('.ts'))) {
    const { outputText } = ts.transpileModule(await readFile(join(sources, file), 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false }
    })
    if (/from ['"]\.\.\/|import\(['"]\.\.\//.test(outputText)) throw new Error(`bench/server/${file}: the compiled server imports outside bench/server`)
    await writeFile(join(out, file.replace(/\.ts$/, '.js')), outputText)
  }
}
