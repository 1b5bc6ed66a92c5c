import { execFile } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import {
  chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync
} from 'node:fs'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, posix, relative } from 'node:path'
import { parseEnv } from 'node:util'
import t from 'tap'
import ts from 'typescript'

// The package as npm publishes it: the tarball's contents, its types under attw and publint,
// two consumer projects (ESM and CommonJS) compiled against it and run, and the keygen CLI
// from a fresh install. Nothing is installed from a registry: the tarball is unpacked into a
// temporary node_modules and the packages it needs are linked from this repo's node_modules.

const root = join(import.meta.dirname, '..')
const bin = (name: string) => join(root, 'node_modules', '.bin', name)
const ALGORITHMS = ['HS256', 'EdDSA', 'ES256', 'RS256'] as const
const TOP_LEVEL = ['LICENSE', 'README.md', 'dist', 'package.json']
const FORMATS = ['esm', 'cjs'] as const

interface Result { code: number | null, stdout: string, stderr: string }

function run (file: string, args: string[], options: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, {
      cwd: options.cwd ?? root,
      env: { ...process.env, ...options.env, NO_COLOR: '1', _TAPJS_PROCESSINFO_COVERAGE_: '0' },
      maxBuffer: 32 * 1024 * 1024
    }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr })
    })
  })
}

const show = (result: Result) => `exit ${result.code}\n${result.stdout}\n${result.stderr}`

/** Every file under `dir`, as paths relative to it with forward slashes. */
function walk (dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? walk(path, base) : [relative(base, path).split('\\').join('/')]
  })
}

function newest (paths: string[]): number {
  return Math.max(...paths.flatMap((path) => {
    const stat = statSync(path)
    return stat.isDirectory() ? [stat.mtimeMs, newest(readdirSync(path).map((name) => join(path, name)))] : [stat.mtimeMs]
  }))
}

// CI runs `npm run build` first. Locally, build when dist/ is missing or older than its sources,
// so the test never checks a stale build. dist/cjs/package.json is what the build writes last.
const buildStamp = join(root, 'dist', 'cjs', 'package.json')
const sources = [join(root, 'lib'), ...['package.json', 'tsconfig.json', 'tsconfig.build.json', 'tsconfig.cjs.json'].map((name) => join(root, name))]
if (!existsSync(buildStamp) || statSync(buildStamp).mtimeMs < newest(sources)) {
  const build = await run('npm', ['run', 'build'])
  if (build.code !== 0) throw new Error(`npm run build failed:\n${show(build)}`)
}

const work = mkdtempSync(join(tmpdir(), 'fastify-token-auth-package-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

// The scripts are skipped: prepack would build again.
const packed = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work])
if (packed.code !== 0) throw new Error(`npm pack failed:\n${show(packed)}`)
const [packResult] = JSON.parse(packed.stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
if (packResult === undefined) throw new Error(`npm pack printed no result:\n${show(packed)}`)
const tarball = join(work, packResult.filename)
const packedFiles = packResult.files.map((file) => file.path).sort()

// What `npm install <tarball>` leaves: the package in node_modules, its bin links, its
// dependencies and peers next to it (linked from this repo), and the consumers' own @types.
const modules = join(work, 'node_modules')
const installed = join(modules, 'fastify-token-auth')
mkdirSync(installed, { recursive: true })
const unpacked = await run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1'])
if (unpacked.code !== 0) throw new Error(`tar failed:\n${show(unpacked)}`)
const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
  main: string
  types: string
  bin: Record<string, string>
  exports: unknown
  typesVersions: Record<string, Record<string, string[]>>
  dependencies: Record<string, string>
  peerDependencies: Record<string, string>
}
for (const name of [...Object.keys(manifest.dependencies), ...Object.keys(manifest.peerDependencies), '@types/node', '@types/pg']) {
  mkdirSync(dirname(join(modules, name)), { recursive: true })
  symlinkSync(join(root, 'node_modules', name), join(modules, name), 'dir')
}
// As npm links a bin: a relative symlink in node_modules/.bin, the target made executable.
mkdirSync(join(modules, '.bin'))
for (const [name, target] of Object.entries(manifest.bin)) {
  symlinkSync(posix.join('..', 'fastify-token-auth', target), join(modules, '.bin', name))
  chmodSync(join(installed, target), 0o755)
}

// The slow steps start now and run side by side; each subtest awaits the ones it checks.
const consumers = Object.fromEntries(FORMATS.map((format) => {
  const dir = join(work, format)
  cpSync(join(root, 'test', 'consumer', format), dir, { recursive: true })
  mkdirSync(join(dir, 'src'))
  cpSync(join(root, 'test', 'consumer', 'app.ts.txt'), join(dir, 'src', 'app.ts'))
  return [format, { dir, compiled: run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir]) }]
})) as Record<typeof FORMATS[number], { dir: string, compiled: Promise<Result> }>
const attw = run(bin('attw'), [tarball, '--format', 'json'])
const publint = run(bin('publint'), ['run', tarball, '--strict'])
const keygenBin = join(modules, '.bin', 'fastify-token-auth')
// A second install with the dependencies only: pg and redis are optional peers.
const bare = join(work, 'bare')
mkdirSync(join(bare, 'node_modules', 'fastify-token-auth'), { recursive: true })
const bareUnpacked = run('tar', ['-xzf', tarball, '-C', join(bare, 'node_modules', 'fastify-token-auth'), '--strip-components=1']).then((result) => {
  for (const name of Object.keys(manifest.dependencies)) {
    mkdirSync(dirname(join(bare, 'node_modules', name)), { recursive: true })
    symlinkSync(join(root, 'node_modules', name), join(bare, 'node_modules', name), 'dir')
  }
  return result
})
const keygen = Object.fromEntries(ALGORITHMS.map((alg) => [alg, run(keygenBin, ['keygen', '--alg', alg], { cwd: consumers.esm.dir })])) as
  Record<typeof ALGORITHMS[number], Promise<Result>>

t.test('the tarball holds package.json, README.md, LICENSE and dist/ only', async (t) => {
  const listed = (await run('tar', ['-tzf', tarball])).stdout.split('\n').filter((line) => line !== '' && !line.endsWith('/'))
  t.same(listed.map((path) => path.replace(/^package\//, '')).sort(), packedFiles, 'npm pack --json lists exactly what the tarball holds')
  t.same([...new Set(packedFiles.map((path) => path.split('/')[0]))].sort(), TOP_LEVEL)
  const unexpected = packedFiles.filter((path) => path.startsWith('dist/') &&
    !/\.(js|d\.ts|js\.map)$/.test(path) && path !== 'dist/cjs/package.json')
  t.same(unexpected, [], 'dist holds only .js, .d.ts, .js.map and the CommonJS marker')
  t.same(packedFiles.filter((path) => /(^|\/)(test|examples|bench|scripts|coverage|\.tap|node_modules)\/|\.env|\.tgz$|\.pem$/.test(path)), [])
  t.same(JSON.parse(readFileSync(join(installed, 'dist', 'cjs', 'package.json'), 'utf8')), { type: 'commonjs' })

  // Every module of lib/ is built for both module systems, with its declarations.
  const modulesOfLib = walk(join(root, 'lib')).filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts')).map((path) => path.slice(0, -3))
  t.ok(modulesOfLib.includes('index') && modulesOfLib.includes('bin'), 'found the modules of lib/')
  const missing = modulesOfLib.flatMap((name) => ['esm', 'cjs'].flatMap((format) => [`dist/${format}/${name}.js`, `dist/${format}/${name}.d.ts`]))
    .filter((path) => !packedFiles.includes(path))
  t.same(missing, [], 'every lib module has its .js and .d.ts in dist/esm and dist/cjs')
  const stale = packedFiles.filter((path) => /^dist\/(esm|cjs)\/.*\.js$/.test(path))
    .filter((path) => !modulesOfLib.includes(path.replace(/^dist\/(esm|cjs)\//, '').slice(0, -3)))
  t.same(stale, [], 'no built module without a source')

  // A PEM private key that parses is a leaked key (an elided example, as in docs/keys.md, does not parse).
  const privateKeys = packedFiles.filter((path) => [...readFileSync(join(installed, path), 'utf8')
    .matchAll(/-----BEGIN ([A-Z ]*PRIVATE KEY)-----[\s\S]*?-----END \1-----/g)]
    .some(([pem]) => { try { return createPrivateKey(pem.replaceAll('\\n', '\n')) !== undefined } catch { return false } }))
  t.same(privateKeys, [], 'no private key in the package')
})

t.test('every entry point of package.json is in the tarball', async (t) => {
  const targets: string[] = []
  const collect = (value: unknown): void => {
    if (typeof value === 'string') targets.push(value)
    else if (value !== null && typeof value === 'object') Object.values(value).forEach(collect)
  }
  collect(manifest.exports)
  collect(manifest.typesVersions)
  t.ok(targets.length >= 20, `collected ${targets.length} exports and typesVersions targets`)
  for (const target of [...targets, manifest.main, manifest.types, ...Object.values(manifest.bin)]) {
    t.ok(packedFiles.includes(posix.normalize(target)), `${target} is in the tarball`)
  }
  t.same(Object.keys(manifest.exports as object).sort(), ['.', './client', './package.json', './postgres', './redis', './testing'])
  for (const [name, target] of Object.entries(manifest.bin)) {
    t.match(readFileSync(join(installed, target), 'utf8'), /^#!\/usr\/bin\/env node\n/, `bin ${name} starts with a node shebang`)
  }
})

t.test('source maps resolve within the package', async (t) => {
  const maps = packedFiles.filter((path) => path.endsWith('.map'))
  t.ok(maps.length > 0, 'the package ships source maps')
  for (const path of maps) {
    const map = JSON.parse(readFileSync(join(installed, path), 'utf8')) as { sources: string[], sourcesContent?: Array<string | null>, sourceRoot?: string }
    const unresolved = map.sources.filter((source, i) => typeof map.sourcesContent?.[i] !== 'string' &&
      !packedFiles.includes(posix.join(posix.dirname(path), map.sourceRoot ?? '', source)))
    t.same(unresolved, [], `${path}: every source is embedded or shipped`)
  }
  for (const path of packedFiles.filter((path) => /\.(js|d\.ts)$/.test(path))) {
    const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(installed, path), 'utf8'))?.[1]
    if (url !== undefined && !packedFiles.includes(posix.join(posix.dirname(path), url))) t.fail(`${path} points at a missing map ${url}`)
  }
})

t.test('attw: the types resolve and match the JavaScript under every resolution mode', async (t) => {
  const result = await attw
  t.equal(result.code, 0, 'attw exits 0')
  const report = JSON.parse(result.stdout) as { analysis: { problems: unknown[], entrypoints: Record<string, unknown> } }
  t.same(report.analysis.problems, [], 'no problem')
  t.same(Object.keys(report.analysis.entrypoints).sort(), ['.', './client', './package.json', './postgres', './redis', './testing'])
  if (result.code !== 0) t.comment(show(result))
})

t.test('publint --strict: no error, warning or suggestion', async (t) => {
  const result = await publint
  if (result.code !== 0) t.comment(show(result))
  t.equal(result.code, 0, 'publint exits 0')
  t.match(result.stdout, /All good!/)
})

t.test('ESM and CommonJS consumers compile against the package (strict, skipLibCheck off)', async (t) => {
  for (const format of FORMATS) {
    const result = await consumers[format].compiled
    if (result.code !== 0) t.comment(show(result))
    t.equal(result.code, 0, `${format}: tsc exits 0`)
    t.equal(result.stdout + result.stderr, '', `${format}: no diagnostic`)
  }
  const esm = readFileSync(join(consumers.esm.dir, 'dist', 'app.js'), 'utf8')
  const cjs = readFileSync(join(consumers.cjs.dir, 'dist', 'app.js'), 'utf8')
  t.match(esm, /^import tokenAuth, .* from 'fastify-token-auth';$/m, 'the ESM consumer imports')
  t.match(cjs, /require\("fastify-token-auth"\)/, 'the CommonJS consumer requires')
})

t.test('keygen from a fresh install prints env lines for each algorithm', async (t) => {
  for (const alg of ALGORITHMS) {
    const result = await keygen[alg]
    t.equal(result.code, 0, `${alg}: exit 0`)
    t.equal(result.stderr, '', `${alg}: nothing on stderr`)
    const lines = result.stdout.trimEnd().split('\n')
    t.equal(lines.length, 3, `${alg}: three lines`)
    t.equal(lines[0], `ACCESS_TOKEN_ALG=${alg}`)
    if (alg === 'HS256') t.match(lines[1], /^ACCESS_TOKEN_SECRET=[\w-]{43,}$/)
    else t.match(lines[1], /^ACCESS_TOKEN_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\\n[\w+/=\\]+\\n-----END PRIVATE KEY-----\\n"$/)
    t.match(lines[2], /^REFRESH_TOKEN_SECRET=[\w-]{43}$/)
    // Read back the way a .env loader does (Node's own parser, as `node --env-file`).
    const env = parseEnv(result.stdout)
    t.equal(Buffer.from(env.REFRESH_TOKEN_SECRET ?? '', 'base64url').length, 32, `${alg}: the refresh secret is 32 bytes`)
    if (alg === 'HS256') {
      t.ok(Buffer.from(env.ACCESS_TOKEN_SECRET ?? '', 'base64url').length >= 32, 'the access secret is at least 32 bytes')
    } else {
      const key = createPrivateKey(env.ACCESS_TOKEN_PRIVATE_KEY ?? '')
      const expected = { EdDSA: { type: 'ed25519' }, ES256: { type: 'ec', namedCurve: 'prime256v1' }, RS256: { type: 'rsa', modulusLength: 2048 } }[alg]
      t.match({ type: key.asymmetricKeyType, ...key.asymmetricKeyDetails }, expected, `${alg}: a ${expected.type} private key`)
    }
    writeFileSync(join(work, `${alg}.env`), result.stdout)
  }
})

t.test('keygen refuses an unknown algorithm or command, and prints its usage on --help', async (t) => {
  const [badAlg, badCommand, help] = await Promise.all([
    run(keygenBin, ['keygen', '--alg', 'HS512']),
    run(keygenBin, ['genkey']),
    run(keygenBin, ['--help'])
  ])
  for (const [what, result] of [['--alg HS512', badAlg], ['genkey', badCommand]] as const) {
    t.equal(result.code, 1, `${what}: exit 1`)
    t.equal(result.stdout, '', `${what}: nothing on stdout`)
    t.not(result.stderr.trim(), '', `${what}: a message on stderr`)
  }
  t.match(badAlg.stderr, /HS512/)
  t.equal(help.code, 0)
  t.match(help.stdout, /Usage: fastify-token-auth keygen/)
})

t.test('the compiled consumers run with the generated keys, in both module systems', async (t) => {
  for (const format of FORMATS) {
    if ((await consumers[format].compiled).code !== 0) return t.fail(`the ${format} consumer did not compile`)
  }
  for (const alg of ALGORITHMS) {
    if ((await keygen[alg]).code !== 0) return t.fail(`keygen --alg ${alg} failed`)
  }
  // Each key type once, each module system twice: the entry points do not depend on the key.
  const runs = ALGORITHMS.map((alg, i) => {
    const format = FORMATS[i % FORMATS.length] as typeof FORMATS[number]
    return { format, alg, result: run(process.execPath, [`--env-file=${join(work, `${alg}.env`)}`, join('dist', 'app.js')], { cwd: consumers[format].dir }) }
  })
  for (const { format, alg, result: pending } of runs) {
    const result = await pending
    if (result.code !== 0) t.comment(show(result))
    t.equal(result.code, 0, `${format} ${alg}: exit 0`)
    const report = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}')
    const asymmetric = alg !== 'HS256'
    t.match(report, {
      format: format === 'esm' ? 'module' : 'commonjs',
      alg,
      kid: String,
      me: { status: 200, sub: 'user-1', username: 'alice' },
      refreshed: true,
      rotated: true,
      refusedCode: 'FST_TOKEN_AUTH_INVALID_CREDENTIALS',
      jwks: asymmetric ? { status: 200, cacheControl: 'public, max-age=300', kids: [report.kid] } : { status: 404 },
      logins: ['user-1'],
      helpers: { username: 'bob', listed: 1, revoked: true, invalidCode: 'FST_TOKEN_AUTH_INVALID_TOKEN' },
      stores: { postgres: true, redis: true, migrationSql: true, record: 'string' }
    }, `${format} ${alg}: login, /me, refresh, JWKS, helpers and every entry point work`)
    t.ok(report.stores?.conformanceTests > 10, `${format} ${alg}: the conformance kit registers its tests`)
  }
})

t.test('pg and redis stay optional: only the postgres entry names pg, and every entry loads without them', async (t) => {
  // Type level: the bare imports of every declaration file reachable from each entry point.
  const isBuiltin = (name: string) => name.startsWith('node:') || builtinModules.includes(name)
  const bareImports = (entry: string): Set<string> => {
    const seen = new Set<string>()
    const found = new Set<string>()
    const visit = (path: string): void => {
      if (seen.has(path)) return
      seen.add(path)
      for (const { fileName } of ts.preProcessFile(readFileSync(join(installed, path), 'utf8'), true, true).importedFiles) {
        if (fileName.startsWith('.')) visit(posix.join(posix.dirname(path), fileName.replace(/\.js$/, '.d.ts')))
        else if (!isBuiltin(fileName)) found.add(fileName)
      }
    }
    visit(posix.normalize(entry))
    return found
  }
  const dependencies = Object.keys(manifest.dependencies)
  for (const [subpath, conditions] of Object.entries(manifest.exports as Record<string, string | Record<string, { types: string }>>)) {
    if (typeof conditions === 'string') continue
    for (const [condition, { types }] of Object.entries(conditions)) {
      const allowed = subpath === './postgres' ? [...dependencies, 'pg'] : dependencies
      const imports = [...bareImports(types)]
      t.same(imports.filter((name) => !allowed.includes(name)), [], `${subpath} (${condition}): the declarations import only ${subpath === './postgres' ? 'dependencies and pg' : 'dependencies'}`)
      // The walk finds what is there: the plugin's types name fastify, the postgres store's pg.
      if (subpath === '.') t.ok(imports.includes('fastify'), `${condition}: the plugin's declarations import fastify`)
      if (subpath === './postgres') t.ok(imports.includes('pg'), `${condition}: the postgres declarations import pg`)
    }
  }

  // Runtime: every entry point loads in both module systems with neither pg nor redis installed.
  t.equal((await bareUnpacked).code, 0, 'unpacked')
  const entries = Object.keys(manifest.exports as object).filter((subpath) => subpath !== './package.json')
    .map((subpath) => `fastify-token-auth${subpath.slice(1)}`)
  const [esm, cjs] = await Promise.all([
    run(process.execPath, ['--input-type=module', '-e', `for (const name of ${JSON.stringify(entries)}) console.log(name, Object.keys(await import(name)).length)`], { cwd: bare }),
    run(process.execPath, ['-e', `for (const name of ${JSON.stringify(entries)}) console.log(name, Object.keys(require(name)).length)`], { cwd: bare })
  ])
  for (const [format, result] of [['esm', esm], ['cjs', cjs]] as const) {
    if (result.code !== 0) t.comment(show(result))
    t.equal(result.code, 0, `${format}: exit 0`)
    t.same(result.stdout.trim().split('\n').map((line) => line.split(' ')[0]), entries, `${format}: loaded ${entries.join(', ')}`)
    t.notOk(/ 0$/m.test(result.stdout), `${format}: every entry point exports something`)
  }
  t.notOk(existsSync(join(bare, 'node_modules', 'pg')) || existsSync(join(bare, 'node_modules', 'redis')), 'neither pg nor redis is installed there')
})
