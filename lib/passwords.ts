import { randomBytes, scrypt, type ScryptOptions, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import { InvalidOptionError } from './errors.js'
import type { AuthUser } from './sessions.js'

// scrypt with N = 2^15, r = 8, p = 1: 32 MiB and tens of milliseconds per check. Parameters are
// stored in every hash, so raising them later leaves existing hashes verifiable.
const COST = 2 ** 15
const BLOCK_SIZE = 8
const PARALLELISM = 1
const KEY_LENGTH = 32
const SALT_LENGTH = 16
const MIN_KEY_LENGTH = 16
const MAX_MEMORY = 256 * 1024 * 1024
const HASH_FORMAT = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([\w-]+)\$([\w-]+)$/

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, length: number, options: ScryptOptions) => Promise<Buffer>

function derive (password: string, salt: Buffer, cost: number, blockSize: number, parallelism: number, length: number): Promise<Buffer> {
  return scryptAsync(password.normalize('NFC'), salt, length, { N: cost, r: blockSize, p: parallelism, maxmem: MAX_MEMORY })
}

/**
 * Hashes a password with scrypt into a self-describing string
 * (`scrypt$N$r$p$salt$hash`). The whole password counts: nothing is truncated (bcrypt stops
 * at 72 bytes).
 */
export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(SALT_LENGTH)
  const key = await derive(password, salt, COST, BLOCK_SIZE, PARALLELISM, KEY_LENGTH)
  return `scrypt$${COST}$${BLOCK_SIZE}$${PARALLELISM}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

/** Checks a password against a `hashPassword` string in constant time. */
export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const match = HASH_FORMAT.exec(stored)
  if (match === null) throw new TypeError('verifyPassword: the stored hash is not a hashPassword() string')
  const [, cost, blockSize, parallelism, salt, hash] = match as unknown as [string, string, string, string, string, string]
  const expected = Buffer.from(hash, 'base64url')
  // A hash cut short (a narrow column) would match too much: an empty one every password (two empty keys are equal).
  if (expected.length < MIN_KEY_LENGTH) throw new TypeError('verifyPassword: the stored hash is not a hashPassword() string')
  const key = await derive(password, Buffer.from(salt, 'base64url'), Number(cost), Number(blockSize), Number(parallelism), expected.length)
  return timingSafeEqual(key, expected)
}

export interface VerifyCredentialsOptions<User> {
  /** Looks a user up by the name they typed; `null`/`undefined` when there is none. */
  findUser: (username: string) => Promise<User | null | undefined>
  /** The stored password hash of a user. */
  passwordHash: (user: User) => string
  /** The session identity of a user whose password matched; `null` refuses them (a disabled account). */
  toAuthUser: (user: User) => AuthUser | null | Promise<AuthUser | null>
  /**
   * Your own hash check (bcrypt, argon2...). Default: `verifyPassword` (scrypt, `hashPassword`).
   * With your own, also pass `dummyHash`.
   */
  verifyPassword?: (password: string, hash: string) => Promise<boolean>
  /**
   * A hash of a random password in the same format and cost as your users' hashes: unknown
   * users are checked against it. Generated (scrypt) when `verifyPassword` is the default.
   */
  dummyHash?: string
}

/**
 * Builds a `verifyCredentials` that takes the same time whether the user is unknown or the
 * password wrong (no user enumeration by timing, ASVS v5 6.3.8): it always runs exactly one
 * password check, against a dummy hash when there is no such user.
 */
export function createVerifyCredentials<User> (options: VerifyCredentialsOptions<User>): (username: string, password: string) => Promise<AuthUser | null> {
  for (const name of ['findUser', 'passwordHash', 'toAuthUser'] as const) {
    if (typeof options?.[name] !== 'function') throw new InvalidOptionError(name, 'a function is required')
  }
  const check = options.verifyPassword ?? verifyPassword
  if (options.verifyPassword !== undefined && typeof options.dummyHash !== 'string') {
    throw new InvalidOptionError('dummyHash', 'a hash of a random password, made by your verifyPassword\'s scheme at your cost, is required with a custom verifyPassword')
  }
  // Made now, not at the first unknown user, which would otherwise pay for two hashes.
  const dummyHash = options.dummyHash === undefined ? hashPassword(randomBytes(16).toString('base64url')) : Promise.resolve(options.dummyHash)
  return async function verifyCredentials (username, password) {
    const user = await options.findUser(username)
    if (user === null || user === undefined) {
      await check(password, await dummyHash)
      return null
    }
    if (!await check(password, options.passwordHash(user))) return null
    return await options.toAuthUser(user)
  }
}
