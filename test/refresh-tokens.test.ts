import { randomBytes } from 'node:crypto'
import t from 'tap'
import { InvalidRefreshTokenError } from '../lib/errors.js'
import { RefreshTokens } from '../lib/refresh-tokens.js'
import { REFRESH_SECRET } from './helpers.js'

// The refresh-token format (docs/design.md, «Refresh tokens»), on its own: what it mints, what it
// reads back, and the ids it refuses to put in a token.

const tokens = new RefreshTokens(REFRESH_SECRET)
const jti = randomBytes(16).toString('base64url')

t.test('a minted token reads back as its user, session and id; a token of another secret does not', async (t) => {
  const token = tokens.mint('user é/1', 'session_1-A', jti)
  t.same(tokens.read(token), { sub: 'user é/1', sid: 'session_1-A', jti })
  t.throws(() => new RefreshTokens(randomBytes(32)).read(token), InvalidRefreshTokenError)
  t.throws(() => tokens.read(`${token.slice(0, 3)}x${token.slice(4)}`), InvalidRefreshTokenError, 'an edited session id')
})

t.test('ids a token cannot carry are refused when minting, as the app\'s or the store\'s bug', async (t) => {
  for (const sessionId of ['', 'a.b', 'with space', '{tag}id', 'x'.repeat(129)]) {
    t.throws(() => tokens.mint('user-1', sessionId, jti), TypeError, `session id ${JSON.stringify(sessionId.slice(0, 20))}`)
  }
  t.ok(tokens.mint('user-1', 'x'.repeat(128), jti), 'a session id of 128 characters')
  t.throws(() => tokens.mint('é'.repeat(257), 'session', jti), TypeError, 'a user id over 512 bytes')
  const longest = tokens.mint('u'.repeat(512), 'session', jti)
  t.same(tokens.read(longest), { sub: 'u'.repeat(512), sid: 'session', jti }, 'a user id of 512 bytes')
})

t.test('without an earlier format, a JWT is just not a token', async (t) => {
  t.throws(() => tokens.read('eyJhbGciOiJIUzI1NiJ9.e30.c2ln'), InvalidRefreshTokenError)
})
