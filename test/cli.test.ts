// `fastify-token-auth keygen`: the lines it prints boot the plugin as printed, for every
// algorithm; bad arguments exit 1 with a message on stderr and nothing on stdout.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { run } from '../lib/cli.js'
import { ACCESS_TOKEN_ALGORITHMS, type AccessTokenAlgorithm } from '../lib/index.js'
import { build, decodePayload, login, me, USER_ID } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const USAGE = /^Usage: fastify-token-auth keygen \[--alg HS256\|EdDSA\|ES256\|RS256\]\n/

interface Outcome { code: number, out: string[], err: string[] }

function keygen (args: string[]): Outcome {
  const out: string[] = []
  const err: string[] = []
  const code = run(args, (line) => out.push(line), (line) => err.push(line))
  return { code, out, err }
}

/** Parses `NAME=value` / `NAME="value with \n"` lines as a dotenv loader would. */
function parseEnv (lines: string[]): Record<string, string> {
  return Object.fromEntries(lines.map((line) => {
    const match = /^([A-Z_]+)=(.*)$/.exec(line)
    if (match === null) throw new Error(`not an env line: ${line}`)
    const value = match[2] as string
    return [match[1], value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1).replaceAll('\\n', '\n') : value]
  }))
}

/** The env lines of one keygen run boot the plugin; a login and /me work with the keys they name. */
async function assertBoots (t: Test, env: Record<string, string>, algorithm: AccessTokenAlgorithm): Promise<void> {
  const access = algorithm === 'HS256'
    ? { accessTokenSecret: env.ACCESS_TOKEN_SECRET }
    : { accessTokenSecret: undefined, accessTokenKeys: [{ algorithm, privateKey: env.ACCESS_TOKEN_PRIVATE_KEY as string }] }
  const app = await build(t, { ...access, refreshTokenSecret: env.REFRESH_TOKEN_SECRET as string })
  const { accessToken } = await login(app)
  t.equal(JSON.parse(Buffer.from(accessToken.split('.')[0] as string, 'base64url').toString()).alg, algorithm, `${algorithm}: tokens signed with it`)
  t.equal(decodePayload(accessToken).sub, USER_ID)
  t.equal((await me(app, accessToken)).statusCode, 200, `${algorithm}: /me 200`)
}

t.test('keygen --alg X, for each algorithm: three env lines that boot the plugin', async (t) => {
  for (const algorithm of ACCESS_TOKEN_ALGORITHMS) {
    const { code, out, err } = keygen(['keygen', '--alg', algorithm])
    t.equal(code, 0, `${algorithm}: exit 0`)
    t.strictSame(err, [], `${algorithm}: nothing on stderr`)
    t.equal(out.length, 3, `${algorithm}: three lines`)
    const env = parseEnv(out)
    const keyName = algorithm === 'HS256' ? 'ACCESS_TOKEN_SECRET' : 'ACCESS_TOKEN_PRIVATE_KEY'
    t.strictSame(Object.keys(env), ['ACCESS_TOKEN_ALG', keyName, 'REFRESH_TOKEN_SECRET'], `${algorithm}: names in order`)
    t.equal(env.ACCESS_TOKEN_ALG, algorithm)
    t.match(env.REFRESH_TOKEN_SECRET, /^[\w-]{43}$/, 'refresh secret: 32 bytes, base64url')
    if (algorithm === 'HS256') {
      t.match(env.ACCESS_TOKEN_SECRET, /^[\w-]{43}$/, 'access secret: 32 bytes, base64url')
      t.not(env.ACCESS_TOKEN_SECRET, env.REFRESH_TOKEN_SECRET, 'two different secrets')
    } else {
      t.match(out[1], /^ACCESS_TOKEN_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\\n[^\n]+\\n-----END PRIVATE KEY-----\\n"$/, 'one line, newlines escaped')
    }
    await assertBoots(t, env, algorithm)
  }
})

t.test('--alg=X works too; no --alg means HS256; two runs never print the same keys', async (t) => {
  const equals = keygen(['keygen', '--alg=ES256'])
  t.equal(equals.code, 0)
  t.equal(equals.out[0], 'ACCESS_TOKEN_ALG=ES256')
  await assertBoots(t, parseEnv(equals.out), 'ES256')
  const last = keygen(['keygen', '--alg', 'EdDSA', '--alg=RS256'])
  t.equal(last.out[0], 'ACCESS_TOKEN_ALG=RS256', 'the last --alg wins')

  const [a, b] = [keygen(['keygen']), keygen(['keygen'])]
  t.equal(a.code, 0)
  t.equal(a.out[0], 'ACCESS_TOKEN_ALG=HS256')
  t.not(a.out[1], b.out[1], 'fresh access secret per run')
  t.not(a.out[2], b.out[2], 'fresh refresh secret per run')
})

t.test('bad arguments: exit 1, a message on stderr, nothing on stdout', async (t) => {
  const cases: Array<[label: string, args: string[], message: RegExp]> = [
    ['unknown algorithm', ['keygen', '--alg', 'HS512'], /^Unknown algorithm "HS512": use one of HS256, EdDSA, ES256, RS256\.$/],
    ['unknown algorithm, = form', ['keygen', '--alg=none'], /^Unknown algorithm "none": use one of HS256, EdDSA, ES256, RS256\.$/],
    ['algorithm in the wrong case', ['keygen', '--alg', 'eddsa'], /^Unknown algorithm "eddsa"/],
    ['--alg without a value', ['keygen', '--alg'], /^Unknown algorithm "": use one of/],
    ['--alg= without a value', ['keygen', '--alg='], /^Unknown algorithm "": use one of/],
    ['unknown argument', ['keygen', '--bits', '4096'], /^Unknown argument "--bits"\.\nUsage: fastify-token-auth keygen/],
    ['a bare value', ['keygen', 'EdDSA'], /^Unknown argument "EdDSA"\.\nUsage: /],
    ['unknown command', ['genkey'], /^Unknown command "genkey"\.\nUsage: fastify-token-auth keygen/],
    ['no command', [], USAGE]
  ]
  for (const [label, args, message] of cases) {
    const { code, out, err } = keygen(args)
    t.equal(code, 1, `${label}: exit 1`)
    t.strictSame(out, [], `${label}: nothing on stdout (no half-printed keys)`)
    t.equal(err.length, 1, `${label}: one message`)
    t.match(err[0], message, `${label}: says why`)
  }
})

t.test('--help and -h print the usage on stdout and exit 0, whatever else is given', async (t) => {
  for (const args of [['--help'], ['-h'], ['keygen', '--help'], ['genkey', '-h'], ['keygen', '--alg', 'HS512', '--help']]) {
    const { code, out, err } = keygen(args)
    t.equal(code, 0, `${args.join(' ')}: exit 0`)
    t.strictSame(err, [])
    t.equal(out.length, 1)
    t.match(out[0], USAGE, `${args.join(' ')}: usage`)
    t.match(out[0], /ACCESS_TOKEN_PRIVATE_KEY/, 'names the lines it prints')
  }
})

t.test('the executable: node lib/bin.ts keygen --alg EdDSA prints the lines and exits 0', async (t) => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'lib/bin.ts', 'keygen', '--alg', 'EdDSA'], {
    cwd: root,
    env: { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
  })
  // execFile rejects on a non-zero exit: reaching here is exit code 0.
  t.equal(stderr, '')
  const lines = stdout.trimEnd().split('\n')
  t.equal(lines.length, 3)
  t.equal(lines[0], 'ACCESS_TOKEN_ALG=EdDSA')
  await assertBoots(t, parseEnv(lines), 'EdDSA')
})
