import { createHash, createHmac, randomBytes } from 'node:crypto'
import t from 'tap'
import { InvalidRefreshTokenError } from '../lib/errors.js'
import { RefreshTokens } from '../lib/refresh-tokens.js'
import { REFRESH_SECRET } from './helpers.js'

// The refresh-token format (docs/design.md, «Refresh tokens»), on its own: what it mints, what it
// reads back, and the ids it refuses to put in a token.

const tokens = new RefreshTokens(REFRESH_SECRET)
const jti = randomBytes(16).toString('base64url')

t.test('a minted token reads back as its user, session and id, with the hash minted with it; a token of another secret does not', async (t) => {
  const minted = tokens.mint('user é/1', 'session_1-A', jti)
  const token = minted.token
  t.same(tokens.read(token), { sub: 'user é/1', sid: 'session_1-A', jti, hash: minted.hash })
  t.throws(() => new RefreshTokens(randomBytes(32)).read(token), InvalidRefreshTokenError)
  t.throws(() => tokens.read(`${token.slice(0, 3)}x${token.slice(4)}`), InvalidRefreshTokenError, 'an edited session id')
})

t.test('the stored hash (docs/design.md, «Hashed at rest»): the last 128 bits of the tag\'s HMAC, keyed, and nothing of the token', async (t) => {
  const { token, hash } = tokens.mint('user-1', 'session', jti)
  const mac = createHmac('sha256', createHmac('sha256', REFRESH_SECRET).update('fastify-token-auth:refresh-token-tag').digest())
    .update(token.slice(0, -22)).digest()
  t.equal(hash, mac.toString('base64url', 16), 'HMAC bytes 16-31, 22 base64url characters')
  t.equal(token.slice(-22), mac.toString('base64url').slice(0, 22), 'the tag is the same HMAC\'s first 132 bits')
  t.equal(hash.length, 22)
  t.notOk(token.includes(hash), 'the hash is not part of the token')
  t.not(hash, createHash('sha256').update(jti).digest().toString('base64url', 0, 16), 'not an unkeyed hash of the id')
  t.not(new RefreshTokens(randomBytes(32)).mint('user-1', 'session', jti).hash, hash, 'another secret, another hash')
  t.not(tokens.mint('user-1', 'session', tokens.successorId(jti, 1)).hash, hash, 'another id, another hash')
  t.not(tokens.mint('user-2', 'session', jti).hash, hash, 'another user, another hash')
})

t.test('ids a token cannot carry are refused when minting, as the app\'s or the store\'s bug', async (t) => {
  for (const sessionId of ['', 'a.b', 'with space', '{tag}id', 'x'.repeat(129)]) {
    t.throws(() => tokens.mint('user-1', sessionId, jti), TypeError, `session id ${JSON.stringify(sessionId.slice(0, 20))}`)
  }
  t.ok(tokens.mint('user-1', 'x'.repeat(128), jti).token, 'a session id of 128 characters')
  t.throws(() => tokens.mint('é'.repeat(257), 'session', jti), TypeError, 'a user id over 512 bytes')
  const longest = tokens.mint('u'.repeat(512), 'session', jti)
  t.same(tokens.read(longest.token), { sub: 'u'.repeat(512), sid: 'session', jti, hash: longest.hash }, 'a user id of 512 bytes')
})

t.test('a token bound to a DPoP key names its thumbprint, read only where DPoP is on; a thumbprint of another shape is a bug', async (t) => {
  const jkt = createHash('sha256').update('a key').digest('base64url')
  for (const bad of ['', 'short', `${jkt}x`, `${jkt.slice(0, 42)}.`]) {
    t.throws(() => tokens.mint('user-1', 'session', jti, { jkt: bad }), TypeError, `thumbprint ${JSON.stringify(bad)}`)
    t.throws(() => tokens.mint('user-1', 'session', jti, { dbsc: bad }), TypeError, `DBSC thumbprint ${JSON.stringify(bad)}`)
  }
  t.throws(() => tokens.mint('user-1', 'session', jti, { jkt, dbsc: jkt }), TypeError, 'one key, not two')
  const bound = new RefreshTokens(REFRESH_SECRET, undefined, { dpop: true, dbsc: false })
  const minted = bound.mint('user-1', 'session', jti, { jkt })
  t.equal(minted.token.split('.')[2], jkt)
  t.same(bound.read(minted.token), { sub: 'user-1', sid: 'session', jti, hash: minted.hash, jkt })
  t.throws(() => tokens.read(minted.token), InvalidRefreshTokenError, 'DPoP off: a bound token is not read')
  const [sid, user, , rest] = minted.token.split('.')
  const otherKey = createHash('sha256').update('another key').digest('base64url')
  t.throws(() => bound.read(`${sid}.${user}.${otherKey}.${rest}`), InvalidRefreshTokenError, 'the thumbprint is covered by the tag')
  t.throws(() => bound.read(`${sid}.${user}.${rest}`), InvalidRefreshTokenError, 'and cannot be dropped')
  t.throws(() => bound.read(`${sid}.${user}.dbsc-${jkt}.${rest}`), InvalidRefreshTokenError, 'nor turned into a DBSC binding')
})

t.test('a token bound to a DBSC key names its thumbprint after dbsc-, read only where DBSC is on', async (t) => {
  const key = createHash('sha256').update('a browser key').digest('base64url')
  const devices = new RefreshTokens(REFRESH_SECRET, undefined, { dpop: false, dbsc: true })
  const minted = devices.mint('user-1', 'session', jti, { dbsc: key })
  t.equal(minted.token.split('.')[2], `dbsc-${key}`)
  t.same(devices.read(minted.token), { sub: 'user-1', sid: 'session', jti, hash: minted.hash, dbsc: key })
  t.throws(() => tokens.read(minted.token), InvalidRefreshTokenError, 'DBSC off: a DBSC-bound token is not read')
  t.throws(() => new RefreshTokens(REFRESH_SECRET, undefined, { dpop: true, dbsc: false }).read(minted.token), InvalidRefreshTokenError, 'nor with DPoP alone')
  const [sid, user, , rest] = minted.token.split('.')
  t.throws(() => devices.read(`${sid}.${user}.${key}.${rest}`), InvalidRefreshTokenError, 'the mark is covered by the tag')
  t.throws(() => devices.read(`${sid}.${user}.${rest}`), InvalidRefreshTokenError, 'and cannot be dropped')
  t.not(devices.mint('user-1', 'session', jti).hash, minted.hash, 'the bearer spelling of the same id has another hash')
})

t.test('without an earlier format, a JWT is just not a token', async (t) => {
  t.throws(() => tokens.read('eyJhbGciOiJIUzI1NiJ9.e30.c2ln'), InvalidRefreshTokenError)
})
