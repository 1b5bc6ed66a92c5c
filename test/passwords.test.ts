// hashPassword / verifyPassword (scrypt, self-describing) and createVerifyCredentials, which runs
// exactly one password check per attempt so unknown users and wrong passwords cost the same.
import t, { type Test } from 'tap'
import { type AuthUser, createVerifyCredentials, hashPassword, verifyPassword, type VerifyCredentialsOptions } from '../lib/index.js'
import { build, login, PASSWORD, USER_ID, USERNAME } from './helpers.js'

const HASH = /^scrypt\$32768\$8\$1\$([\w-]{22})\$([\w-]{43})$/
const NOT_A_HASH = { name: 'TypeError', message: 'verifyPassword: the stored hash is not a hashPassword() string' }

interface User { id: string, name: string, hash: string, disabled: boolean }

// One scrypt hash costs tens of milliseconds: the hashes are made once, in parallel.
const [aliceHash, otherHash] = await Promise.all([hashPassword(PASSWORD), hashPassword(PASSWORD)])

function assertInvalidOption (t: Test, make: () => unknown, option: string, label = option): void {
  t.throws(make, { code: 'FST_TOKEN_AUTH_INVALID_OPTION', message: new RegExp(`^Invalid option "${option}": `) }, `${label}: names ${option}`)
}

t.test('hashPassword: scrypt$N$r$p$salt$hash with a fresh salt, never the password', async (t) => {
  const [, salt, hash] = HASH.exec(aliceHash) ?? []
  t.ok(salt, `${aliceHash} has the format`)
  t.equal(Buffer.from(salt as string, 'base64url').length, 16, '16-byte salt')
  t.equal(Buffer.from(hash as string, 'base64url').length, 32, '32-byte key')
  t.match(otherHash, HASH)
  t.not(otherHash, aliceHash, 'the same password hashes differently each time')
  t.not(HASH.exec(otherHash)?.[1], salt, 'a different salt')
  t.notOk(aliceHash.includes(PASSWORD))
  t.equal(await verifyPassword(PASSWORD, otherHash), true, 'either hash verifies')
})

t.test('verifyPassword: the right password only', async (t) => {
  const results = await Promise.all([PASSWORD, `${PASSWORD} `, PASSWORD.toUpperCase(), '', PASSWORD.slice(0, -1)].map((p) => verifyPassword(p, aliceHash)))
  t.strictSame(results, [true, false, false, false, false], 'right, trailing space, case, empty, one character short')
})

t.test('unicode: NFC and NFD spellings are one password; compatibility forms are not folded', async (t) => {
  const nfc = 'caf\u00e9-pa\u00dfwort-\u00c5ngstr\u00f6m'
  const nfd = nfc.normalize('NFD')
  t.not(nfc, nfd, 'two different strings')
  const [fromNfc, fromNfd] = await Promise.all([hashPassword(nfc), hashPassword(nfd)])
  const results = await Promise.all([
    verifyPassword(nfd, fromNfc), verifyPassword(nfc, fromNfd), verifyPassword(nfc, fromNfc),
    // U+FB01 (the "fi" ligature) is only NFKC-equal to "fi": a different password.
    verifyPassword('\ufb01le-secret-123', await hashPassword('file-secret-123'))
  ])
  t.strictSame(results, [true, true, true, false])
})

t.test('long passwords count in full: 1000 characters, and 80 bytes differing after byte 72', async (t) => {
  const long = 'Tr0ub4dor&3-'.repeat(84).slice(0, 1000)
  const prefix = 'correct horse battery staple, seventy-two bytes of passphrase here: 0123'
  t.equal(Buffer.byteLength(prefix), 72)
  const [a, b] = [`${prefix}suffix-A`, `${prefix}suffix-B`]
  t.equal(Buffer.byteLength(a), 80)
  const [longHash, aHash] = await Promise.all([hashPassword(long), hashPassword(a)])
  const results = await Promise.all([
    verifyPassword(long, longHash), verifyPassword(`${long.slice(0, -1)}X`, longHash), verifyPassword(long.slice(0, 999), longHash),
    verifyPassword(a, aHash), verifyPassword(b, aHash)
  ])
  t.strictSame(results, [true, false, false, true, false], 'bcrypt would have accepted b for a (it reads 72 bytes)')
})

t.test('a malformed stored hash rejects, never verifies', async (t) => {
  const [, salt, hash] = HASH.exec(aliceHash) as RegExpExecArray
  const malformed = [
    '', 'scrypt', '$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy', `scrypt$32768$8$1$${salt}`,
    `scrypt$32768$8$1$${salt}$${hash}$extra`, `scrypt$N$8$1$${salt}$${hash}`, `scrypt$32768$8$1$${salt}$${hash}=`,
    `scrypt$32768$8$1$${salt}$${(hash as string).replace(/[-_]/g, '+')}/`, ` ${aliceHash}`, `${aliceHash}\n`,
    // Cut short, as by a narrow column: an empty key would equal the empty key derived for any password.
    `scrypt$32768$8$1$${salt}$A`, `scrypt$32768$8$1$${salt}$${(hash as string).slice(0, 20)}`
  ]
  for (const stored of malformed) await t.rejects(verifyPassword(PASSWORD, stored), NOT_A_HASH, JSON.stringify(stored))
  // Well-formed, but parameters scrypt refuses: a cost that is not a power of two, or beyond the memory cap.
  for (const cost of [3, 2 ** 20]) {
    await t.rejects(verifyPassword(PASSWORD, `scrypt$${cost}$8$1$${salt}$${hash}`), { code: 'ERR_CRYPTO_INVALID_SCRYPT_PARAMS' }, `N = ${cost}`)
  }
})

t.test('createVerifyCredentials with the default scrypt check', async (t) => {
  const users = new Map<string, User>([
    [USERNAME, { id: USER_ID, name: USERNAME, hash: aliceHash, disabled: false }],
    ['carol', { id: 'user-3', name: 'carol', hash: otherHash, disabled: true }]
  ])
  const verify = createVerifyCredentials<User>({
    findUser: async (name) => users.get(name),
    passwordHash: (user) => user.hash,
    toAuthUser: async (user) => user.disabled ? null : { id: user.id, claims: { username: user.name } }
  })
  const [right, wrong, unknown, disabled] = await Promise.all([
    verify(USERNAME, PASSWORD), verify(USERNAME, 'wrong-password'), verify('mallory', PASSWORD), verify('carol', PASSWORD)
  ])
  t.strictSame(right, { id: USER_ID, claims: { username: USERNAME } }, 'known, right password: the AuthUser')
  t.equal(wrong, null, 'known, wrong password: null')
  t.equal(unknown, null, 'unknown: null (checked against the generated dummy hash)')
  t.equal(disabled, null, 'toAuthUser refusing (a disabled account): null')
})

t.test('createVerifyCredentials runs exactly one password check, against the dummy hash for unknown users', async (t) => {
  const DUMMY = 'dummy-hash-of-the-app-scheme'
  const checks: Array<[password: string, hash: string]> = []
  const toAuthUserCalls: string[] = []
  const found: string[] = []
  const users: Record<string, User> = { alice: { id: USER_ID, name: 'alice', hash: 'alice-hash', disabled: false } }
  const options: VerifyCredentialsOptions<User> = {
    findUser: async (name) => { found.push(name); return name === 'nobody' ? null : users[name] },
    passwordHash: (user) => user.hash,
    toAuthUser: (user) => { toAuthUserCalls.push(user.id); return { id: user.id } },
    verifyPassword: async (password, hash) => { checks.push([password, hash]); return hash === 'alice-hash' && password === PASSWORD },
    dummyHash: DUMMY
  }
  const verify = createVerifyCredentials(options)
  const cases: Array<[username: string, password: string, result: AuthUser | null, check: [string, string]]> = [
    ['Mallory', 'guess-1', null, ['guess-1', DUMMY]],
    ['nobody', 'guess-2', null, ['guess-2', DUMMY]],
    ['alice', 'guess-3', null, ['guess-3', 'alice-hash']],
    ['alice', PASSWORD, { id: USER_ID }, [PASSWORD, 'alice-hash']]
  ]
  for (const [username, password, result, check] of cases) {
    checks.length = 0
    t.strictSame(await verify(username, password), result, `${username}/${password}: ${JSON.stringify(result)}`)
    t.strictSame(checks, [check], `${username}/${password}: exactly one check, against ${check[1]}`)
  }
  t.strictSame(found, ['Mallory', 'nobody', 'alice', 'alice'], 'findUser gets the name as typed (undefined and null both mean unknown)')
  t.strictSame(toAuthUserCalls, [USER_ID], 'toAuthUser only after the right password')
})

t.test('createVerifyCredentials refuses incomplete options', async (t) => {
  const findUser = async (): Promise<User | null> => null
  const passwordHash = (user: User): string => user.hash
  const toAuthUser = (user: User): AuthUser => ({ id: user.id })
  const loose = createVerifyCredentials as (options: unknown) => unknown
  assertInvalidOption(t, () => loose(undefined), 'findUser', 'no options')
  assertInvalidOption(t, () => loose({}), 'findUser', 'empty options')
  assertInvalidOption(t, () => loose({ findUser: 'users', passwordHash, toAuthUser }), 'findUser', 'findUser not a function')
  assertInvalidOption(t, () => loose({ findUser, toAuthUser }), 'passwordHash')
  assertInvalidOption(t, () => loose({ findUser, passwordHash }), 'toAuthUser')
  assertInvalidOption(t, () => loose({ findUser, passwordHash, toAuthUser, verifyPassword: async () => true }), 'dummyHash', 'custom verifyPassword without dummyHash')
  assertInvalidOption(t, () => loose({ findUser, passwordHash, toAuthUser, verifyPassword: async () => true, dummyHash: Buffer.from('x') }), 'dummyHash', 'dummyHash not a string')
  t.type(createVerifyCredentials({ findUser, passwordHash, toAuthUser, verifyPassword: async () => true, dummyHash: 'x' }), 'function', 'complete: a function')
})

t.test('createVerifyCredentials as the plugin\'s verifyCredentials: login 200, unknown and wrong 401 alike', async (t) => {
  const app = await build(t, {
    verifyCredentials: createVerifyCredentials<User>({
      findUser: async (name) => name === USERNAME ? { id: USER_ID, name, hash: aliceHash, disabled: false } : null,
      passwordHash: (user) => user.hash,
      toAuthUser: (user) => ({ id: user.id })
    })
  })
  const { response } = await login(app)
  t.equal(response.statusCode, 200)
  const refused = await Promise.all([
    app.inject({ method: 'POST', url: '/auth/login', payload: { username: 'mallory', password: PASSWORD } }),
    app.inject({ method: 'POST', url: '/auth/login', payload: { username: USERNAME, password: 'wrong-password' } })
  ])
  for (const reply of refused) {
    t.equal(reply.statusCode, 401)
    t.equal(reply.json().code, 'FST_TOKEN_AUTH_INVALID_CREDENTIALS')
    t.equal(reply.headers['set-cookie'], undefined)
  }
  t.equal(refused[0]?.body, refused[1]?.body, 'identical bodies')
})
