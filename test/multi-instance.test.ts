import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import pg from 'pg'
import { createClient } from 'redis'
import t, { type Test } from 'tap'
import { DATABASE_URL, postgresAvailable, REDIS_URL, redisAvailable } from './services.js'

// Two example-server processes on real ports sharing one store: what a deployment with two
// instances behind a load balancer does. DESIGN R3 (single use across processes), R4 (theft
// detection), R7 (revocation reaches every instance).

const SECRETS = {
  ACCESS_TOKEN_SECRET: randomBytes(32).toString('base64url'),
  REFRESH_TOKEN_SECRET: randomBytes(32).toString('base64url')
}
const CREDENTIALS = JSON.stringify({ username: 'alice', password: 'correct-horse-battery-staple' })
/** The stated bound without push: the plugin's default revocation poll interval, plus slack. */
const REVOCATION_BOUND = 5000 + 1000

interface Instance { base: string, child: ChildProcess }

async function startInstance (t: Test, env: Record<string, string>): Promise<Instance> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/server.ts'], {
    // No coverage from the children (see example.test.ts): lib/ is covered in process.
    env: { ...process.env, ...SECRETS, ...env, _TAPJS_PROCESSINFO_COVERAGE_: '0', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', LOGIN_RATE_LIMIT: '1000', REFRESH_REUSE_GRACE: '0' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
  let output = ''
  child.stdout.setEncoding('utf8')
  for (;;) {
    const [chunk] = await Promise.race([
      once(child.stdout, 'data') as Promise<[string]>,
      once(child, 'exit').then(() => { throw new Error(`instance exited: ${output}`) })
    ])
    output += chunk
    const base = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1]
    if (base !== undefined) return { base, child }
  }
}

async function post (instance: Instance, path: string, init: { cookie?: string, body?: string, bearer?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = {}
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  if (init.cookie !== undefined) headers.cookie = `refresh_token=${init.cookie}`
  if (init.bearer !== undefined) headers.authorization = `Bearer ${init.bearer}`
  return await fetch(`${instance.base}${path}`, { method: 'POST', headers, body: init.body })
}

function refreshTokenOf (response: Response): string {
  return /refresh_token=([^;]*)/.exec(response.headers.get('set-cookie') ?? '')?.[1] ?? ''
}

async function me (instance: Instance, accessToken: string): Promise<Response> {
  return await fetch(`${instance.base}/me`, { headers: { authorization: `Bearer ${accessToken}` } })
}

/** The scenarios of issue #3 item 5, against two instances sharing one store. */
async function twoInstances (t: Test, env: Record<string, string>): Promise<void> {
  const [a, b] = await Promise.all([startInstance(t, env), startInstance(t, env)]) as [Instance, Instance]

  t.test('log in on A, refresh twice on B, replay the first token on A: the session is revoked everywhere', async (t) => {
    const login = await post(a, '/auth/login', { body: CREDENTIALS })
    t.equal(login.status, 200)
    const first = refreshTokenOf(login)
    const { accessToken } = await login.json() as { accessToken: string }
    const rotated = await post(b, '/auth/refresh', { cookie: first })
    t.equal(rotated.status, 200, 'B rotates a token A issued')
    // Using the successor is what makes the first token theft (an unused one is recovered).
    const used = await post(b, '/auth/refresh', { cookie: refreshTokenOf(rotated) })
    t.equal(used.status, 200, 'B rotates its own successor')
    const third = refreshTokenOf(used)
    const { accessToken: secondAccess } = await used.json() as { accessToken: string }
    const replay = await post(a, '/auth/refresh', { cookie: first })
    t.equal(replay.status, 401)
    t.equal((await replay.json() as { code: string }).code, 'FST_TOKEN_AUTH_REFRESH_TOKEN_REUSED')
    const afterTheft = await post(b, '/auth/refresh', { cookie: third })
    t.equal(afterTheft.status, 401, 'the token B issued died with the session')
    for (const [name, instance] of [['A', a], ['B', b]] as const) {
      const started = Date.now()
      let status = 0
      while ((status = (await me(instance, secondAccess)).status) !== 401 && Date.now() - started < REVOCATION_BOUND) {
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      t.equal(status, 401, `${name} refuses the session's access token within ${REVOCATION_BOUND} ms`)
      t.equal((await me(instance, accessToken)).status, 401, `${name} refuses the first access token too`)
    }
  })

  t.test('log out on B: A refuses the access token within the bound', async (t) => {
    const login = await post(a, '/auth/login', { body: CREDENTIALS })
    const { accessToken } = await login.json() as { accessToken: string }
    t.equal((await me(a, accessToken)).status, 200)
    t.equal((await me(b, accessToken)).status, 200)
    const logout = await post(b, '/auth/logout', { cookie: refreshTokenOf(login) })
    t.equal(logout.status, 204)
    t.equal((await me(b, accessToken)).status, 401, 'B at once')
    const started = Date.now()
    let response = await me(a, accessToken)
    while (response.status !== 401 && Date.now() - started < REVOCATION_BOUND) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      response = await me(a, accessToken)
    }
    t.equal(response.status, 401, `A refuses it (after ${Date.now() - started} ms; bound ${REVOCATION_BOUND} ms)`)
    t.equal((await response.json() as { code: string }).code, 'FST_TOKEN_AUTH_SESSION_REVOKED')
  })

  t.test('100 concurrent refreshes of one token split across A and B: no two answers share a token, no theft, no 5xx', async (t) => {
    const login = await post(a, '/auth/login', { body: CREDENTIALS })
    const token = refreshTokenOf(login)
    const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => post(i % 2 === 0 ? a : b, '/auth/refresh', { cookie: token })))
    const statuses = responses.map((response) => response.status)
    const winners = responses.filter((response) => response.status === 200)
    t.ok(winners.length >= 1, `one rotation, then recoveries a millisecond later or more: ${winners.length} × 200`)
    t.equal(new Set(winners.map(refreshTokenOf)).size, winners.length, 'every 200 carries a refresh token of its own')
    t.equal(statuses.filter((status) => status >= 500).length, 0, 'no 5xx')
    const refusals = await Promise.all(responses.filter((response) => response.status !== 200).map(async (response) => (await response.json() as { code: string }).code))
    t.same([...new Set(refusals)].filter((code) => code !== 'FST_TOKEN_AUTH_REFRESH_TOKEN_SUPERSEDED'), [],
      'the rest are superseded (same millisecond), never taken for theft')
    const { accessToken } = await (winners[0] as Response).json() as { accessToken: string }
    t.equal((await me(a, accessToken)).status, 200, 'the session lives on')
  })
}

t.test('two instances on Redis', async (t) => {
  const skip = await redisAvailable()
  if (skip !== undefined) return t.plan(0, skip)
  // A database of its own, emptied before and after, so the instances' fixed key prefix meets nothing else.
  const url = `${REDIS_URL.replace(/\/\d+$/, '')}/9`
  const admin = createClient({ url })
  await admin.connect()
  await admin.flushDb()
  t.teardown(async () => {
    await admin.flushDb()
    admin.destroy()
  })
  await twoInstances(t, { TOKEN_STORE: 'redis', REDIS_URL: url })
})

t.test('two instances on PostgreSQL', async (t) => {
  const skip = await postgresAvailable()
  if (skip !== undefined) return t.plan(0, skip)
  // A database of its own, created and dropped here.
  const name = `fta_multi_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: DATABASE_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  t.teardown(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end()
  })
  const url = new URL(DATABASE_URL)
  url.pathname = `/${name}`
  await twoInstances(t, { TOKEN_STORE: 'postgres', DATABASE_URL: url.toString() })
})
