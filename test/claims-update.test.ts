import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { MemoryStore, type TokenAuthOptions, type TokenStore } from '../lib/index.js'
import { RevocationList } from '../lib/revocations.js'
import {
  baseOptions, BOB, BOB_ID, decodePayload, login, me, pollOnly, refresh, refreshCookie, USER_ID, waitFor
} from './helpers.js'

// Claims that change (docs/design.md, «Claims that change»): updateUserClaims refuses the
// access tokens signed with the old claims, here at once and on every instance through the feed,
// and the next refresh signs the new ones.

const CHANGED = 'FST_TOKEN_AUTH_CLAIMS_CHANGED'
const CHANGED_CHALLENGE = 'Bearer error="invalid_token", error_description="the claims of this token have changed; refresh it"'

async function instance (t: Test, store: TokenStore, overrides: Partial<TokenAuthOptions> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(tokenAuth, baseOptions({ store, revocationPollInterval: 100, ...overrides }))
  app.get('/me', { onRequest: app.authenticate }, async (request) => ({ sub: request.user.sub, role: (request.user as { role?: string }).role }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

t.test('a claims change refuses the old access token on both instances; the next refresh carries the new claims and cv', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  // Without push, the second instance learns only through the polled feed.
  const store = pollOnly(memory)
  const a = await instance(t, store)
  const b = await instance(t, store)
  const updated: unknown[] = []
  a.tokenAuth.events.on('claimsUpdated', (event) => updated.push(event))
  const alice = await login(a)
  const sid = decodePayload(alice.accessToken).sid as string
  const bob = await login(a, BOB)
  t.notOk('cv' in decodePayload(alice.accessToken), 'no cv at version 0')
  t.equal((await me(b, alice.accessToken)).statusCode, 200, 'accepted by the other instance at first')

  const sessionIds = await a.tokenAuth.updateUserClaims(USER_ID, { username: 'alice', role: 'viewer' })
  t.same(sessionIds, [sid], 'the ids of the sessions updated')
  t.same(updated, [{ userId: USER_ID, sessionIds: [sid] }], 'one claimsUpdated event')

  const here = await me(a, alice.accessToken)
  t.equal(here.statusCode, 401, 'refused at once on the instance that changed them')
  t.equal(here.json().code, CHANGED)
  t.equal(here.headers['www-authenticate'], CHANGED_CHALLENGE)
  const there = await waitFor(async () => {
    const response = await me(b, alice.accessToken)
    return response.statusCode === 401 ? response : null
  }, { message: 'the second instance never refused the old token' })
  t.equal(there.json().code, CHANGED, 'and on the other instance, through the feed poll')
  t.equal(there.headers['www-authenticate'], CHANGED_CHALLENGE)
  t.equal((await me(a, bob.accessToken)).statusCode, 200, 'another user\'s sessions are untouched')

  const refreshed = await refresh(b, alice.refreshToken)
  t.equal(refreshed.statusCode, 200, 'the refresh token still works')
  const claims = decodePayload(refreshed.json().accessToken)
  t.equal(claims.role, 'viewer', 'the new claims')
  t.equal(claims.cv, 1, 'the new claims version')
  t.same((await me(a, refreshed.json().accessToken)).json(), { sub: USER_ID, role: 'viewer' }, 'accepted everywhere')
  t.equal((await me(b, refreshed.json().accessToken)).statusCode, 200)

  // A second change refuses the cv 1 token too.
  await b.tokenAuth.updateUserClaims(USER_ID, { username: 'alice', role: 'admin' })
  t.equal((await me(b, refreshed.json().accessToken)).json().code, CHANGED, 'cv 1 is below 2')
  const again = await refresh(a, refreshCookie(refreshed)!.value)
  t.equal(decodePayload(again.json().accessToken).cv, 2)
  t.equal(decodePayload(again.json().accessToken).role, 'admin')
})

t.test('a store that pushes: the other instance learns at once', async (t) => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  // A poll interval longer than the test: only the push can tell the second instance.
  const a = await instance(t, store, { revocationPollInterval: 60_000 })
  const b = await instance(t, store, { revocationPollInterval: 60_000 })
  const { accessToken } = await login(a)
  await a.tokenAuth.updateUserClaims(USER_ID, { role: 'viewer' })
  const response = await waitFor(async () => {
    const answer = await me(b, accessToken)
    return answer.statusCode === 401 ? answer : null
  }, { timeout: 2000, message: 'the push never reached the second instance' })
  t.equal(response.json().code, CHANGED)
})

t.test('a user without live sessions: nothing updated, the event says so', async (t) => {
  const app = await instance(t, new MemoryStore())
  const updated: unknown[] = []
  app.tokenAuth.events.on('claimsUpdated', (event) => updated.push(event))
  t.same(await app.tokenAuth.updateUserClaims(BOB_ID, { role: 'x' }), [])
  t.same(updated, [{ userId: BOB_ID, sessionIds: [] }])
})

t.test('claims must be an object', async (t) => {
  const app = await instance(t, new MemoryStore())
  await t.rejects(app.tokenAuth.updateUserClaims(USER_ID, null as never), TypeError)
  await t.rejects(app.tokenAuth.updateUserClaims(USER_ID, ['x'] as never), TypeError)
  await t.rejects(app.tokenAuth.updateUserClaims(USER_ID, 'x' as never), TypeError)
})

t.test('a store failure is a 503 of the store, nothing learned', async (t) => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  const store: TokenStore = { ...pollOnly(memory), updateUserClaims: async () => { throw new Error('down') } }
  const app = await instance(t, store)
  const { accessToken } = await login(app)
  await t.rejects(app.tokenAuth.updateUserClaims(USER_ID, { role: 'x' }), { code: 'FST_TOKEN_AUTH_STORE_UNAVAILABLE' })
  t.equal((await me(app, accessToken)).statusCode, 200)
})

t.test('the revocation list keeps the highest claims version and forgets it with the tokens', async (t) => {
  const list = new RevocationList(1000)
  t.equal(list.isStale('s', undefined), false, 'nothing known: never stale')
  list.addClaimsVersion('s', 2, 0)
  list.addClaimsVersion('s', 1, 500)
  t.equal(list.isStale('s', 1), true, 'a lower version arriving late changes nothing')
  t.equal(list.isStale('s', 2), false)
  t.equal(list.isStale('s', undefined), true, 'absent is 0')
  t.equal(list.isStale('other', undefined), false)
  list.prune(999)
  t.equal(list.isStale('s', 1), true, 'kept while tokens signed before may live')
  list.prune(1000)
  t.equal(list.isStale('s', 1), false, 'forgotten after')
})
