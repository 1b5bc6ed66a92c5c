// Checklist group G: the login route: enumeration (message, status, headers, timing), brute
// force and spraying, hostile bodies and Content-Types (CVE-2025-32442, CVE-2026-25223,
// GHSA-573f-x89g-hqp9, CVE-2022-41919), long passwords, credentials in the URL. Real HTTP
// against the example app, whose users are checked with the plugin's createVerifyCredentials.
import t from 'tap'
import {
  alive, BOB, BOB_PASSWORD, cookieOf, eventsSince, login, loginRequest, noIncidents, PASSWORD, type Reply, refused, send, sleep,
  startExample
} from './harness.js'

const example = await startExample(t)
const INVALID_CREDENTIALS = 'FST_TOKEN_AUTH_INVALID_CREDENTIALS'
const THROTTLED = 'FST_TOKEN_AUTH_LOGIN_THROTTLED'

/** Headers that differ between any two answers whatever they say. */
const VOLATILE = new Set(['date', 'x-ratelimit-reset'])
function headerSet (reply: Reply): Record<string, string> {
  return Object.fromEntries(Object.entries(reply.headers).filter(([name]) => !VOLATILE.has(name)))
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return ((sorted[14] as number) + (sorted[15] as number)) / 2
}

t.test('G1 unknown user and wrong password: same status, body and headers, and the same time', async (t) => {
  const unknown = await loginRequest(example, 'mallory', 'wrong-password-1')
  const wrong = await loginRequest(example, 'alice', 'wrong-password-1')
  await refused(t, example, unknown, { status: 401, code: INVALID_CREDENTIALS })
  await refused(t, example, wrong, { status: 401, code: INVALID_CREDENTIALS })
  t.equal(unknown.text, wrong.text, 'identical bodies')
  t.same(headerSet(unknown), headerSet(wrong), 'identical headers')
  t.same(unknown.setCookies, wrong.setCookies)

  // A security property, not a benchmark: the dummy-hash check makes both paths one scrypt long.
  // Interleaved so machine load hits both series alike; medians resist stragglers.
  const timings: Record<'unknown' | 'wrong', number[]> = { unknown: [], wrong: [] }
  for (let i = 0; i < 30; i++) {
    for (const kind of ['unknown', 'wrong'] as const) {
      const startedAt = performance.now()
      const reply = await loginRequest(example, kind === 'unknown' ? `nobody-${i}` : 'alice', `wrong-password-${i}`)
      timings[kind].push(performance.now() - startedAt)
      t.equal(reply.status, 401)
    }
  }
  const delta = median(timings.unknown) - median(timings.wrong)
  t.comment(`median unknown ${median(timings.unknown).toFixed(1)} ms, wrong password ${median(timings.wrong).toFixed(1)} ms`)
  t.ok(Math.abs(delta) < 50, `|Δ median| = ${Math.abs(delta).toFixed(1)} ms < 50 ms`)
})

t.test('G2 brute force and spraying: 429 with Retry-After per account and per IP; the right password is still 429; it expires', async (t) => {
  // 4 attempts per account name and 8 per IP within 2 s.
  const limited = await startExample(t, { ACCOUNT_RATE_LIMIT: '4', LOGIN_RATE_LIMIT: '8', RATE_LIMIT_WINDOW: '2' })
  const startedAt = Date.now()
  for (let i = 0; i < 4; i++) {
    t.equal((await loginRequest(limited, 'alice', `guess-${i}`)).status, 401, `guess ${i + 1}: 401`)
  }
  // The account is locked: the right password, in any case or width of the name, learns nothing.
  for (const name of ['alice', 'ALICE']) {
    const locked = await loginRequest(limited, name, PASSWORD)
    await refused(t, limited, locked, { status: 429, code: THROTTLED })
    t.match(locked.headers['retry-after'], /^\d+$/, 'Retry-After in seconds')
  }
  // Another account from the same address is not locked out by it (no collateral lockout).
  t.equal((await loginRequest(limited, BOB)).status, 200, 'bob still logs in')
  // Spraying: one attempt per name, many names; the per-IP limit stops it.
  const sprayed: number[] = []
  for (let i = 0; i < 3; i++) sprayed.push((await loginRequest(limited, `user-${i}`, 'Summer2026!')).status)
  t.ok(sprayed.includes(429), `spraying from one IP meets 429 (${sprayed.join(',')})`)
  const ipLocked = await loginRequest(limited, BOB)
  await refused(t, limited, ipLocked, { status: 429, code: THROTTLED })
  t.match(ipLocked.headers['retry-after'], /^\d+$/)
  // Both limits answer alike: a client cannot tell which one it met.
  const accountLocked = await loginRequest(limited, 'alice', PASSWORD)
  t.match(accountLocked.json, { statusCode: 429, code: THROTTLED, error: ipLocked.json.error })

  await sleep(Math.max(0, startedAt + 2500 - Date.now()))
  const after = await loginRequest(limited, 'alice', PASSWORD)
  t.equal(after.status, 200, 'the lock expires with its window')
  limited.secrets.push(after.json?.accessToken ?? '', cookieOf(after)?.value ?? '')
  await limited.close()
})

t.test('G2 the password-change route is no guessing oracle: 5 tries per user, then 429 even for the right password', async (t) => {
  const alice = await login(example)
  const change = (currentPassword: string) => send(example, 'POST', '/me/password', {
    headers: { authorization: `Bearer ${alice.accessToken}` },
    body: { currentPassword, newPassword: 'a-new-password-for-alice' }
  })
  for (let i = 0; i < 5; i++) await refused(t, example, await change(`guess-${i}`), { status: 403, code: 'WRONG_PASSWORD' })
  const throttled = await change(PASSWORD)
  await refused(t, example, throttled, { status: 429, code: 'PASSWORD_CHANGE_THROTTLED' })
  t.match(throttled.headers['retry-after'], /^\d+$/)
  t.equal((await loginRequest(example)).status, 200, 'the password did not change')
})

t.test('G3 hostile bodies and Content-Types (CVE-2022-41919, CVE-2025-32442, CVE-2026-25223, GHSA-573f-x89g-hqp9): 400/413/415, never a login, never a cookie', async (t) => {
  const mark = example.events.length
  const json = 'application/json'
  const invalid = JSON.stringify({ username: { $ne: null }, password: 'x' })
  const cases: Array<[string, string | undefined, string | Buffer, number, string]> = [
    ['malformed JSON', json, '{"username":', 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['empty body', json, '', 400, 'FST_ERR_CTP_EMPTY_JSON_BODY'],
    ['an array', json, '[]', 400, 'FST_ERR_VALIDATION'],
    ['null', json, 'null', 400, 'FST_ERR_VALIDATION'],
    ['operator object as username', json, invalid, 400, 'FST_ERR_VALIDATION'],
    ['operator object as password', json, JSON.stringify({ username: 'alice', password: { $gt: '' } }), 400, 'FST_ERR_VALIDATION'],
    ['password as a number', json, JSON.stringify({ username: 'alice', password: 1234 }), 400, 'FST_ERR_VALIDATION'],
    ['username as an array', json, JSON.stringify({ username: ['alice'], password: PASSWORD }), 400, 'FST_ERR_VALIDATION'],
    ['missing password', json, JSON.stringify({ username: 'alice' }), 400, 'FST_ERR_VALIDATION'],
    ['an extra field', json, JSON.stringify({ username: 'alice', password: PASSWORD, admin: true }), 400, 'FST_ERR_VALIDATION'],
    ['__proto__ key', json, `{"username":"alice","password":${JSON.stringify(PASSWORD)},"__proto__":{"admin":true}}`, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['constructor.prototype', json, `{"username":"alice","password":${JSON.stringify(PASSWORD)},"constructor":{"prototype":{"admin":true}}}`, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['2 MB', json, JSON.stringify({ username: 'alice', password: 'x'.repeat(2 * 1024 * 1024) }), 413, 'FST_ERR_CTP_BODY_TOO_LARGE'],
    ['text/plain holding JSON', 'text/plain', JSON.stringify({ username: 'alice', password: PASSWORD }), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['form-urlencoded', 'application/x-www-form-urlencoded', `username=alice&password=${PASSWORD}`, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['no Content-Type', undefined, JSON.stringify({ username: 'alice', password: PASSWORD }), 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE']
  ]
  for (const [name, type, body, status, code] of cases) {
    t.comment(name)
    const reply = await send(example, 'POST', '/auth/login', { headers: type === undefined ? {} : { 'content-type': type }, body })
    await refused(t, example, reply, { status, code, sent: [PASSWORD] })
  }
  // Odd spellings of JSON once skipped body validation (CVE-2025-32442: case and whitespace;
  // CVE-2026-25223: a tab; GHSA-573f-x89g-hqp9: a bare ";"). With a schema-invalid body, each is
  // refused: 415 for a spelling the routes do not take, 400 when validation ran. Never 200 or 401.
  for (const type of ['application/json\t', 'application/json\t;', ' Application/JSON ;', 'application/json;', 'APPLICATION/JSON', 'application/json ; charset=utf-8',
    'application/json; charset=utf-16', 'application/jsonx', 'application/json, text/plain', 'application/json;\tcharset=utf-8']) {
    const reply = await send(example, 'POST', '/auth/login', { headers: [['content-type', type]], body: invalid })
    t.comment(JSON.stringify(type))
    t.ok([400, 415].includes(reply.status), `${JSON.stringify(type)}: ${reply.status} ${reply.json?.code}`)
    await refused(t, example, reply, { status: reply.status, code: reply.status === 415 ? 'FST_ERR_CTP_INVALID_MEDIA_TYPE' : 'FST_ERR_VALIDATION' })
  }
  // A control character in the header: Node's parser refuses the request before the app runs.
  const control = await send(example, 'POST', '/auth/login', { headers: [['content-type', 'application/json\u000b']], body: invalid })
  await refused(t, example, control, { status: 400, code: undefined })
  t.same(eventsSince(example, mark), [], 'no login and no failed-login event: nothing reached the credential check')
})

t.test('G4 long passwords are accepted whole: 64 and 1000 characters, no truncation at 72 bytes', async (t) => {
  for (const length of [64, 1000, 1024]) {
    await refused(t, example, await loginRequest(example, 'alice', 'x'.repeat(length)), { status: 401, code: INVALID_CREDENTIALS })
  }
  await refused(t, example, await loginRequest(example, 'alice', 'x'.repeat(1025)), { status: 400, code: 'FST_ERR_VALIDATION' })

  // Bob sets an 80-byte password; another one sharing its first 72 bytes must not log in.
  const bob = await login(example, BOB)
  const common = 'p'.repeat(72)
  const [chosen, lookalike, long] = [`${common}-chosen`, `${common}-lookal`, `${'q'.repeat(999)}!`]
  t.equal(Buffer.byteLength(chosen), 79)
  example.secrets.push(chosen, lookalike, long)
  const set = await send(example, 'POST', '/me/password', { headers: { authorization: `Bearer ${bob.accessToken}` }, body: { currentPassword: BOB_PASSWORD, newPassword: chosen } })
  t.equal(set.status, 204)
  await refused(t, example, await loginRequest(example, BOB, lookalike), { status: 401, code: INVALID_CREDENTIALS, sent: [lookalike] })
  t.equal((await loginRequest(example, BOB, chosen)).status, 200, 'the exact password logs in')
  // 1000 characters work end to end, and only all of them.
  t.equal((await send(example, 'POST', '/me/password', { headers: { authorization: `Bearer ${bob.accessToken}` }, body: { currentPassword: chosen, newPassword: long } })).status, 204)
  t.equal((await loginRequest(example, BOB, long)).status, 200)
  await refused(t, example, await loginRequest(example, BOB, long.slice(0, -1)), { status: 401, code: INVALID_CREDENTIALS })
  t.equal((await send(example, 'POST', '/me/password', { headers: { authorization: `Bearer ${bob.accessToken}` }, body: { currentPassword: long, newPassword: BOB_PASSWORD } })).status, 204)
})

t.test('G5 credentials are never read from the query string', async (t) => {
  const mark = example.events.length
  const query = `username=alice&password=${encodeURIComponent(PASSWORD)}`
  // The example's 404 echoes nothing of the URL (Fastify's default would repeat the password).
  await refused(t, example, await send(example, 'GET', `/auth/login?${query}`), { status: 404, code: 'NOT_FOUND', sent: [PASSWORD] })
  await refused(t, example, await send(example, 'POST', `/auth/login?${query}`), { status: 400, code: 'FST_ERR_VALIDATION', sent: [PASSWORD] })
  await refused(t, example, await send(example, 'POST', `/auth/login?${query}`, { body: {} }), { status: 400, code: 'FST_ERR_VALIDATION', sent: [PASSWORD] })
  t.same(eventsSince(example, mark), [], 'no login was attempted')
  await alive(t, example)
})

t.test('H6 no unhandled rejection during the login cases', async (t) => {
  noIncidents(t, example)
})
