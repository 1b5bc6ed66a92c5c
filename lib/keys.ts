import {
  createHash, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, KeyObject, randomBytes
} from 'node:crypto'
import { InvalidOptionError } from './errors.js'

/** Algorithms an access token can be signed with; refresh tokens are always HS256. */
export const ACCESS_TOKEN_ALGORITHMS = ['HS256', 'EdDSA', 'ES256', 'RS256'] as const
export type AccessTokenAlgorithm = typeof ACCESS_TOKEN_ALGORITHMS[number]

/** RFC 8725 §3.5 / OWASP: an HS256 key must be at least as long as the hash output. */
export const MIN_SECRET_BYTES = 32
const MIN_SECRET_DISTINCT_BYTES = 8
const MIN_RSA_BITS = 2048
const KID_FORMAT = /^[\w.-]{1,64}$/

/** One access-token key. The first of `accessTokenKeys` signs; the others only verify. */
export interface AccessTokenKey {
  algorithm: AccessTokenAlgorithm
  /** Key id put in the `kid` header. Default: the RFC 7638 thumbprint (asymmetric) or an id derived from the secret (HS256). */
  kid?: string
  /** HS256 only: the HMAC key, at least 32 random bytes. */
  secret?: string | Buffer
  /** EdDSA/ES256/RS256: the private key as PEM, JWK or KeyObject; needed by the signing key only. */
  privateKey?: string | Buffer | JsonWebKey | KeyObject
  /** EdDSA/ES256/RS256: the public key as PEM, JWK or KeyObject; derived from `privateKey` when absent. */
  publicKey?: string | Buffer | JsonWebKey | KeyObject
}

/** A validated key, in the forms @fastify/jwt and the JWKS route take. */
export interface ResolvedKey {
  kid: string
  algorithm: AccessTokenAlgorithm
  /** The HMAC secret or the private key (PEM); absent on verify-only keys. */
  signingKey: string | Buffer | undefined
  /** The HMAC secret or the public key (PEM). */
  verificationKey: string | Buffer
  /** The public JWK published by the JWKS route; absent for HMAC keys, which are never published. */
  publicJwk: JsonWebKey | undefined
}

/**
 * Validates an HMAC secret: long enough, not trivially repetitive, and not a key pasted where a
 * secret belongs (a public key used as an HMAC secret is the RS/ES->HS confusion attack).
 */
export function validateSecret (value: unknown, name: string): string | Buffer {
  if (value === undefined || value === null || value === '') {
    throw new InvalidOptionError(name, `a secret of at least ${MIN_SECRET_BYTES} random bytes is required (generate one with: npx fastify-token-auth keygen)`)
  }
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) throw new InvalidOptionError(name, 'must be a string or a Buffer')
  const bytes = Buffer.from(value)
  if (bytes.length < MIN_SECRET_BYTES) throw new InvalidOptionError(name, `must be at least ${MIN_SECRET_BYTES} bytes, got ${bytes.length}`)
  if (new Set(bytes).size < MIN_SECRET_DISTINCT_BYTES) throw new InvalidOptionError(name, 'is too repetitive to be random; generate one with: npx fastify-token-auth keygen')
  const text = bytes.toString('latin1').trim()
  if (text.includes('-----BEGIN') || isJwk(text)) {
    throw new InvalidOptionError(name, 'looks like a PEM or JWK key, not an HMAC secret; pass asymmetric keys through accessTokenKeys')
  }
  return value
}

/**
 * Whether a secret's text is a JWK: a JSON object naming its key type. Only that, not any text
 * starting with `{`: one random Buffer in 256 does.
 */
function isJwk (text: string): boolean {
  if (!text.startsWith('{')) return false
  try {
    // JSON text that starts with `{` and parses is an object.
    return 'kty' in (JSON.parse(text) as object)
  } catch {
    return false
  }
}

/** Validates `accessTokenKeys` (or the shorthand `accessTokenSecret`) into signing and verifying keys. */
export function resolveAccessKeys (keys: unknown, secret: unknown): ResolvedKey[] {
  if (keys === undefined) {
    const validated = validateSecret(secret, 'accessTokenSecret')
    return [hmacKey(validated, undefined)]
  }
  if (secret !== undefined) throw new InvalidOptionError('accessTokenSecret', 'give either accessTokenSecret or accessTokenKeys, not both')
  if (!Array.isArray(keys) || keys.length === 0) throw new InvalidOptionError('accessTokenKeys', 'must be a non-empty array of keys; the first one signs')
  const resolved = keys.map((key, index) => resolveKey(key, `accessTokenKeys[${index}]`, index === 0))
  const kids = new Set<string>()
  for (const [index, key] of resolved.entries()) {
    if (kids.has(key.kid)) throw new InvalidOptionError(`accessTokenKeys[${index}].kid`, `duplicate kid "${key.kid}"`)
    kids.add(key.kid)
  }
  return resolved
}

function resolveKey (key: unknown, name: string, signs: boolean): ResolvedKey {
  if (key === null || typeof key !== 'object') throw new InvalidOptionError(name, 'must be an object { algorithm, secret | privateKey | publicKey, kid? }')
  const { algorithm, kid, secret, privateKey, publicKey } = key as AccessTokenKey
  if (!(ACCESS_TOKEN_ALGORITHMS as readonly unknown[]).includes(algorithm)) {
    throw new InvalidOptionError(`${name}.algorithm`, `must be one of ${ACCESS_TOKEN_ALGORITHMS.join(', ')}, got ${JSON.stringify(algorithm)}`)
  }
  if (kid !== undefined && (typeof kid !== 'string' || !KID_FORMAT.test(kid))) {
    throw new InvalidOptionError(`${name}.kid`, 'must be 1 to 64 letters, digits, ".", "_" or "-"')
  }
  if (algorithm === 'HS256') {
    if (privateKey !== undefined || publicKey !== undefined) throw new InvalidOptionError(name, 'an HS256 key takes a secret, not privateKey/publicKey')
    const validated = validateSecret(secret, `${name}.secret`)
    return hmacKey(validated, kid)
  }
  if (secret !== undefined) throw new InvalidOptionError(`${name}.secret`, `an ${algorithm} key takes privateKey/publicKey, not a secret`)
  if (signs && privateKey === undefined) throw new InvalidOptionError(`${name}.privateKey`, 'is required: the first key signs new tokens')
  const privateObject = privateKey === undefined ? undefined : parseKey(privateKey, `${name}.privateKey`, 'private')
  const publicObject = publicKey === undefined ? undefined : parseKey(publicKey, `${name}.publicKey`, 'public')
  if (privateObject === undefined && publicObject === undefined) throw new InvalidOptionError(name, 'needs a privateKey or a publicKey')
  const verifier = publicObject ?? createPublicKey(privateObject!)
  if (privateObject !== undefined && publicObject !== undefined &&
    !createPublicKey(privateObject).export({ type: 'spki', format: 'der' }).equals(publicObject.export({ type: 'spki', format: 'der' }))) {
    throw new InvalidOptionError(`${name}.publicKey`, 'does not belong to the privateKey')
  }
  checkKeyType(verifier, algorithm, name)
  const jwk = verifier.export({ format: 'jwk' })
  return {
    kid: kid ?? thumbprint(jwk),
    algorithm,
    signingKey: privateObject?.export({ type: 'pkcs8', format: 'pem' }) as string | undefined,
    verificationKey: verifier.export({ type: 'spki', format: 'pem' }) as string,
    publicJwk: jwk
  }
}

/** An HS256 key: the secret both signs and verifies, and is never published. */
function hmacKey (secret: string | Buffer, kid: string | undefined): ResolvedKey {
  return { kid: kid ?? secretKid(secret), algorithm: 'HS256', signingKey: secret, verificationKey: secret, publicJwk: undefined }
}

function parseKey (value: unknown, name: string, kind: 'private' | 'public'): KeyObject {
  if (value instanceof KeyObject) {
    if (kind === 'private' && value.type !== 'private') throw new InvalidOptionError(name, `is a ${value.type} KeyObject; a private key is needed`)
    if (value.type === 'secret') throw new InvalidOptionError(name, 'is a secret KeyObject; asymmetric keys only (HS256 takes `secret`)')
    return kind === 'public' && value.type === 'private' ? createPublicKey(value) : value
  }
  const isPem = (typeof value === 'string' || Buffer.isBuffer(value)) && Buffer.from(value).toString('latin1').trimStart().startsWith('-----BEGIN')
  const isJwk = value !== null && typeof value === 'object' && !Buffer.isBuffer(value)
  if (!isPem && !isJwk) throw new InvalidOptionError(name, `must be a PEM string or a JWK object (a ${kind} key)`)
  if (kind === 'private' && isJwk && typeof (value as JsonWebKey).d !== 'string') throw new InvalidOptionError(name, 'is a public JWK; a private key is needed')
  try {
    const key = isJwk ? { key: value as JsonWebKey, format: 'jwk' as const } : (value as string | Buffer)
    const parsed = kind === 'private' ? createPrivateKey(key) : createPublicKey(key)
    return parsed
  } catch (error) {
    throw new InvalidOptionError(name, `is not a valid ${kind} key (${(error as Error).message})`)
  }
}

function checkKeyType (key: KeyObject, algorithm: AccessTokenAlgorithm, name: string): void {
  const type = key.asymmetricKeyType
  // Node fills asymmetricKeyDetails for every asymmetric key ({} for Ed25519).
  const details = key.asymmetricKeyDetails as NonNullable<KeyObject['asymmetricKeyDetails']>
  const ok = algorithm === 'EdDSA'
    ? type === 'ed25519'
    : algorithm === 'ES256'
      ? type === 'ec' && details.namedCurve === 'prime256v1'
      : type === 'rsa'
  if (!ok) throw new InvalidOptionError(name, `is a key of type ${type}${details.namedCurve === undefined ? '' : ` (curve ${details.namedCurve})`}; ${algorithm} needs ${EXPECTED_KEY[algorithm]}`)
  if (algorithm === 'RS256' && (details.modulusLength as number) < MIN_RSA_BITS) {
    throw new InvalidOptionError(name, `is a ${details.modulusLength}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`)
  }
}

const EXPECTED_KEY: Record<AccessTokenAlgorithm, string> = {
  HS256: 'a secret',
  EdDSA: 'an Ed25519 key',
  ES256: 'a P-256 key',
  RS256: 'an RSA key of 2048 bits or more'
}

/** RFC 7638: SHA-256 over the required members, in lexicographic order, without whitespace. */
function thumbprint (jwk: JsonWebKey): string {
  const members = jwk.kty === 'RSA' ? ['e', 'kty', 'n'] : jwk.kty === 'EC' ? ['crv', 'kty', 'x', 'y'] : ['crv', 'kty', 'x']
  const canonical = JSON.stringify(Object.fromEntries(members.map((member) => [member, jwk[member]])))
  return createHash('sha256').update(canonical).digest('base64url')
}

/** A kid for an HMAC key that reveals nothing about the secret. */
export function secretKid (secret: string | Buffer): string {
  return createHmac('sha256', secret).update('fastify-token-auth:kid').digest('base64url').slice(0, 16)
}

/** Fresh key material for `algorithm`: an HMAC secret (base64url of 32 random bytes) or a PKCS#8 PEM private key. */
export function generateAccessKey (algorithm: AccessTokenAlgorithm): string {
  if (algorithm === 'HS256') return generateSecret()
  const { privateKey } = algorithm === 'EdDSA'
    ? generateKeyPairSync('ed25519')
    : algorithm === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
}

/** 32 random bytes, base64url: an HMAC secret at the size RFC 8725 asks for. */
export function generateSecret (): string {
  return randomBytes(MIN_SECRET_BYTES).toString('base64url')
}
