// Attacks on the RFC 7009 revocation endpoint (docs/design.md, «Token revocation endpoint»; what a
// refresh token ends from «Logout and revoke all»; no-store from «Rules shared by the plugin
// routes»). Real HTTP against the example app.
//
// What the design documents and these cases hold it to: the token is the proof. There is no
// client authentication (the plugin's clients are public, RFC 7009 §2.1), so whoever holds a token
// may end its session, which is no more than the holder could do with it anyway; but without the
// token itself (a session id, a forgery, the victim's cookie riding along, one's own bearer)
// nothing ends. `token_type_hint` is accepted and not consulted, whatever its value (§2.1: the
// server may search every type; the plugin supports both, so never `unsupported_token_type`).
// Whatever names no live session answers the same empty 200 (§2.2).
import t, { type Test } from 'tap'
import {
  ACCESS_SECRET, ALICE_ID, BOB, BOB_ID, COOKIE, decodePayload, eventsSince, forge, get, INVALID_TOKEN, login,
  noIncidents, noLeak, REFRESH_SECRET, refresh, refreshRequest, refused, type Reply, send, startExample, type Tokens
} from './harness.js'
import { claimsOf, encode, headerOf, nowSeconds, randomId } from './forge.js'

const example = await startExample(t)
const PATH = '/auth/revoke'
const INVALID_REFRESH = 'FST_TOKEN_AUTH_INVALID_REFRESH_TOKEN'
const REVOKED = 'FST_TOKEN_AUTH_SESSION_REVOKED'

/** `POST /auth/revoke` with a JSON body (an object) or a form (a string). */
function revoke (body: Record<string, unknown> | string, headers: Record<string, string> = {}): Promise<Reply> {
  return typeof body === 'string'
    ? send(example, 'POST', PATH, { headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body })
    : send(example, 'POST', PATH, { headers, body })
}

/** RFC 7009 §2.2: 200, an empty body, never cached, no cookie touched, no challenge, nothing echoed. */
function answered (t: Test, reply: Reply, sent: string[] = []): void {
  t.equal(reply.status, 200, 'answers 200')
  t.equal(reply.text, '', 'empty body')
  t.equal(reply.headers['cache-control'], 'no-store', 'Cache-Control: no-store')
  t.equal(reply.headers.pragma, 'no-cache', 'Pragma: no-cache')
  t.same(reply.setCookies, [], 'no cookie set or cleared')
  t.notOk('www-authenticate' in reply.headers, 'no challenge')
  noLeak(t, example, reply, sent)
}

/** The session is over: its refresh token and its access token are refused with their stable codes. */
async function ended (t: Test, tokens: Tokens): Promise<void> {
  await refused(t, example, await refreshRequest(example, tokens.refreshToken), { status: 401, code: INVALID_REFRESH, sent: [tokens.refreshToken] })
  await refused(t, example, await get(example, '/me', tokens.accessToken), { status: 401, code: REVOKED, challenge: INVALID_TOKEN, sent: [tokens.accessToken] })
}

/** The session lives: its access token is accepted (its refresh token is tried by `stillRefreshes`). */
async function lives (t: Test, tokens: Tokens, label: string): Promise<void> {
  t.equal((await get(example, '/me', tokens.accessToken)).status, 200, `${label}: the access token still works`)
}

/** The refresh token still rotates: the last word on a session that must have survived. */
async function stillRefreshes (t: Test, tokens: Tokens, label: string): Promise<void> {
  t.equal((await refreshRequest(example, tokens.refreshToken)).status, 200, `${label}: the refresh token still rotates`)
}

/** The sessionRevoked events since `mark`, as { userId, sessionId, reason }. */
function revokedSince (mark: number): Array<Record<string, unknown>> {
  return example.events.slice(mark).filter((event) => event.name === 'sessionRevoked').map((event) => event.payload)
}

const sidOf = (tokens: Tokens): string => decodePayload(tokens.accessToken).sid as string

t.test('R1 the hint is only a hint: alice\'s refresh token sent as an access_token ends her session', async (t) => {
  const alice = await login(example)
  const aliceElsewhere = await login(example)
  const bob = await login(example, BOB)
  const mark = example.events.length
  // Sent by someone else (bob's bearer rides along and changes nothing), hinted as the wrong type.
  answered(t, await revoke({ token: alice.refreshToken, token_type_hint: 'access_token' }, { authorization: `Bearer ${bob.accessToken}` }), [alice.refreshToken])
  t.same(revokedSince(mark), [{ userId: ALICE_ID, sessionId: sidOf(alice), reason: 'logout' }], 'alice\'s session, and only it, ended as by a logout')
  t.notOk(eventsSince(example, mark).includes('reuseDetected'), 'no theft detection: a revocation is not a replay')
  await ended(t, alice)
  await lives(t, aliceElsewhere, 'alice\'s other session')
  await lives(t, bob, 'bob')

  // And the other way round: an access token hinted as a refresh token.
  const second = await login(example)
  answered(t, await revoke({ token: second.accessToken, token_type_hint: 'refresh_token' }), [second.accessToken])
  await ended(t, second)
  await stillRefreshes(t, aliceElsewhere, 'alice\'s other session')
  await stillRefreshes(t, bob, 'bob')
})

t.test('R2 an unknown token_type_hint is ignored, not unsupported_token_type; an oversized one is a 400 that ends nothing', async (t) => {
  const hints = ['something_else', '', 'urn:ietf:params:oauth:token-type:id_token', 'REFRESH_TOKEN', 'x'.repeat(64)]
  for (const hint of hints) {
    t.comment(`hint ${JSON.stringify(hint.length > 20 ? `${hint.slice(0, 20)}…` : hint)}`)
    const tokens = await login(example)
    const reply = await revoke({ token: tokens.refreshToken, token_type_hint: hint })
    answered(t, reply, [tokens.refreshToken])
    t.notMatch(reply.text, /unsupported_token_type/)
    await ended(t, tokens)
  }
  // In a form too, as RFC 7009 §2.1 sends it.
  const form = await login(example, BOB)
  answered(t, await revoke(`token=${encodeURIComponent(form.accessToken)}&token_type_hint=something_else`), [form.accessToken])
  await ended(t, form)
  // A garbage token with an unknown hint: the same empty 200.
  answered(t, await revoke({ token: 'not-a-token', token_type_hint: 'something_else' }))

  // Not a hint the schema takes: refused before anything is looked up, the session untouched.
  const kept = await login(example)
  const refusals: Array<[string, unknown]> = [['65 characters', 'x'.repeat(65)], ['a number', 1], ['an array', ['refresh_token']], ['null', null]]
  for (const [label, hint] of refusals) {
    t.comment(`hint ${label}`)
    await refused(t, example, await revoke({ token: kept.refreshToken, token_type_hint: hint }), { status: 400, code: 'FST_ERR_VALIDATION', sent: [kept.refreshToken] })
  }
  await lives(t, kept, 'after the refused hints')
  await stillRefreshes(t, kept, 'after the refused hints')
})

t.test('R3 bob cannot end alice\'s session without her token; holding it is the authority, as documented', async (t) => {
  const alice = await login(example)
  const bob = await login(example, BOB)
  const sid = sidOf(alice)
  const aliceUser = Buffer.from(ALICE_ID).toString('base64url')
  const [bobSid, bobUser, bobRest] = bob.refreshToken.split('.') as [string, string, string]
  const header = headerOf(bob.accessToken)
  const bobClaims = claimsOf(bob.accessToken)
  const [, , bobSignature] = bob.accessToken.split('.')
  t.not(sid, bobSid)
  const mark = example.events.length
  // What bob has: his own tokens, alice's ids (a session id is in every access token and in a log
  // line), and alice's browser, whose cookie rides on a cross-site form post.
  const attempts: Array<[string, Record<string, unknown> | string, Record<string, string>?]> = [
    ['alice\'s session id alone, with bob\'s bearer', { token: sid }, { authorization: `Bearer ${bob.accessToken}` }],
    ['alice\'s session id as a hint', { token: bob.refreshToken.replace(/./, '!'), token_type_hint: sid }],
    ['bob\'s refresh token with alice\'s session id and user in front', { token: `${sid}.${aliceUser}.${bobRest}` }],
    ['bob\'s refresh token with only the session id swapped', { token: `${sid}.${bobUser}.${bobRest}` }],
    ['alice\'s session id and user with a made-up id and tag', { token: `${sid}.${aliceUser}.${randomId().slice(0, 22)}${randomId().slice(0, 22)}` }],
    ['bob\'s access token edited to alice\'s sid and sub, signature kept', { token: `${encode(header)}.${encode({ ...bobClaims, sub: ALICE_ID, sid })}.${bobSignature as string}` }],
    ['an access token for alice signed with a key not ours', { token: forge(header, { ...bobClaims, sub: ALICE_ID, sid }, randomId() + randomId()) }],
    ['a legacy JWT refresh token for alice signed with a key not ours', { token: forge({ alg: 'HS256', typ: 'rt+jwt' }, { sub: ALICE_ID, sid, jti: randomId(), iat: nowSeconds(), exp: nowSeconds() + 600 }, randomId() + randomId()) }],
    // A cross-site form post from alice's browser: her refresh cookie is sent, but the route reads no cookie.
    ['alice\'s cookie riding along, garbage in the body', 'token=garbage', { cookie: `${COOKIE}=${alice.refreshToken}`, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }],
    ['alice\'s cookie riding along, bob\'s own token in the body', `token=${encodeURIComponent(bob.accessToken)}`, { cookie: `${COOKIE}=${alice.refreshToken}`, origin: 'https://evil.example' }]
  ]
  for (const [label, body, headers] of attempts) {
    t.comment(label)
    answered(t, await revoke(body, headers), [alice.refreshToken, alice.accessToken])
  }
  t.same(revokedSince(mark).filter((event) => event.userId === ALICE_ID), [], 'no session of alice\'s ended')
  t.same(revokedSince(mark), [{ userId: BOB_ID, sessionId: bobSid, reason: 'logout' }], 'only bob\'s own token, sent in the last body, ended his own session')
  await lives(t, alice, 'alice, after every attempt without her token')
  const aliceNow = await refresh(example, alice.refreshToken)
  t.equal(aliceNow.reply.status, 200, 'alice\'s refresh token still rotates')

  // With alice's token in hand (stolen, say), bob can end her session: the documented authority,
  // and no more than the stolen token already allowed (refreshing with it ends it by theft detection).
  const bobAgain = await login(example, BOB)
  const before = example.events.length
  answered(t, await revoke({ token: aliceNow.accessToken }, { authorization: `Bearer ${bobAgain.accessToken}` }), [aliceNow.accessToken])
  t.same(revokedSince(before), [{ userId: ALICE_ID, sessionId: sid, reason: 'logout' }], 'the session the token names ended')
  await ended(t, aliceNow)
  await lives(t, bobAgain, 'bob, whose bearer was only along for the ride')
})

t.test('R4 unknown, garbage and forged tokens: the same empty 200, nothing ended; malformed requests: coded 4xx, never 500', async (t) => {
  const alice = await login(example)
  const sid = sidOf(alice)
  const header = headerOf(alice.accessToken)
  const claims = claimsOf(alice.accessToken)
  const expiredAccess = forge(header, { ...claims, iat: nowSeconds() - 7200, exp: nowSeconds() - 3600 }, ACCESS_SECRET)
  const expiredRefresh = forge({ alg: 'HS256', typ: 'rt+jwt' }, { sub: ALICE_ID, sid, jti: randomId(), iat: nowSeconds() - 7200, exp: nowSeconds() - 3600 }, REFRESH_SECRET)
  const mark = example.events.length
  const tokens: Array<[string, string]> = [
    ['garbage', 'not-a-token'],
    ['a dot', '.'],
    ['unicode and NUL', '\u{1F4A5}\u0000\uFFFF'],
    ['JSON', '{"sid":"x"}'],
    ['8192 characters, the longest accepted', 'A'.repeat(8192)],
    ['an unknown session, our key', forge(header, { ...claims, sid: randomId(), jti: randomId() }, ACCESS_SECRET)],
    ['alg none', `${encode({ alg: 'none', typ: 'at+jwt' })}.${encode(claims)}.`],
    ['alice\'s refresh token with its tag changed', `${alice.refreshToken.slice(0, -2)}${alice.refreshToken.endsWith('AA') ? 'BB' : 'AA'}`],
    ['alice\'s access token with its signature cut', alice.accessToken.split('.').slice(0, 2).join('.') + '.'],
    // Our own keys, alice's live session, but past `exp`: expiry is checked before anything ends.
    ['an expired access token of alice\'s live session', expiredAccess],
    ['an expired legacy refresh token of alice\'s live session', expiredRefresh]
  ]
  for (const [label, token] of tokens) {
    t.comment(label)
    answered(t, await revoke({ token }), [token])
  }
  t.same(revokedSince(mark), [], 'nothing ended')
  await lives(t, alice, 'alice')

  // The controls: the same forgeries unexpired do end the session, so expiry is what held above.
  const unexpired: Array<[string, (victimSid: string) => string]> = [
    ['access token', (victimSid) => forge(header, { ...claims, sid: victimSid, iat: nowSeconds(), exp: nowSeconds() + 600 }, ACCESS_SECRET)],
    ['legacy refresh token', (victimSid) => forge({ alg: 'HS256', typ: 'rt+jwt' }, { sub: ALICE_ID, sid: victimSid, jti: randomId(), iat: nowSeconds(), exp: nowSeconds() + 600 }, REFRESH_SECRET)]
  ]
  for (const [label, forgeFor] of unexpired) {
    const victim = await login(example)
    const token = forgeFor(sidOf(victim))
    example.secrets.push(token)
    const before = example.events.length
    answered(t, await revoke({ token }), [token])
    t.same(revokedSince(before), [{ userId: ALICE_ID, sessionId: sidOf(victim), reason: 'logout' }], `control: an unexpired ${label} under our key ends the session`)
    await ended(t, victim)
  }
  await stillRefreshes(t, alice, 'alice')

  const oversized = 'A'.repeat(8193)
  const refusals: Array<[string, Record<string, unknown> | string | undefined, number, string, Record<string, string>?]> = [
    ['a token over 8192 characters', { token: oversized }, 400, 'FST_ERR_VALIDATION'],
    ['a body over 16 KiB', { token: 'A'.repeat(20_000) }, 413, 'FST_ERR_CTP_BODY_TOO_LARGE'],
    ['no token parameter', {}, 400, 'FST_ERR_VALIDATION'],
    ['a form without a token', 'token_type_hint=refresh_token', 400, 'FST_ERR_VALIDATION'],
    ['an empty token', { token: '' }, 400, 'FST_ERR_VALIDATION'],
    ['a token that is a number', { token: 42 }, 400, 'FST_ERR_VALIDATION'],
    ['a token that is an array', { token: ['a', 'b'] }, 400, 'FST_ERR_VALIDATION'],
    ['an unknown field', { token: 'x', sid: 'y' }, 400, 'FST_ERR_VALIDATION'],
    ['the token twice in a form', 'token=a&token=b', 400, 'FST_TOKEN_AUTH_INVALID_REQUEST_BODY'],
    ['__proto__ in the body', '{"token":"x","__proto__":{"admin":true}}', 400, 'FST_ERR_CTP_INVALID_JSON_BODY', { 'content-type': 'application/json' }],
    ['malformed JSON', '{"token":', 400, 'FST_ERR_CTP_INVALID_JSON_BODY', { 'content-type': 'application/json' }],
    ['text/plain', 'token=x', 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', { 'content-type': 'text/plain' }],
    ['no body at all', undefined, 400, 'FST_ERR_VALIDATION']
  ]
  for (const [label, body, status, code, headers] of refusals) {
    t.comment(label)
    const reply = body === undefined
      ? await send(example, 'POST', PATH)
      : typeof body === 'string' && headers !== undefined
        ? await send(example, 'POST', PATH, { headers, body })
        : await revoke(body)
    await refused(t, example, reply, { status, code, sent: [oversized] })
    t.equal(reply.headers['cache-control'], 'no-store', `${label}: no-store on a refusal too`)
    t.notMatch(reply.text, /AAAAAAAA/, `${label}: the token is not echoed`)
  }
})

t.test('R5 repeated revocation is 200 each time; revoking a rotated refresh token ends the session, without theft detection', async (t) => {
  const tokens = await login(example)
  const mark = example.events.length
  for (let i = 1; i <= 3; i++) answered(t, await revoke({ token: tokens.refreshToken }), [tokens.refreshToken])
  answered(t, await revoke({ token: tokens.accessToken }), [tokens.accessToken])
  t.same(revokedSince(mark), [{ userId: ALICE_ID, sessionId: sidOf(tokens), reason: 'logout' }], 'one session ended, once: the repeats were no-ops')
  await ended(t, tokens)

  // The predecessor of a rotation names the same session, and «Logout and revoke all» ends the
  // session a verifying refresh token names even when it is no longer the current one.
  const first = await login(example, BOB)
  const second = await refresh(example, first.refreshToken)
  const third = await refresh(example, second.refreshToken)
  const before = example.events.length
  answered(t, await revoke({ token: first.refreshToken }), [first.refreshToken])
  t.same(revokedSince(before), [{ userId: BOB_ID, sessionId: sidOf(first), reason: 'logout' }], 'the session ended, reason logout')
  t.notOk(eventsSince(example, before).includes('reuseDetected'), 'no reuseDetected: a revocation is not a replayed refresh')
  await ended(t, third)
  await refused(t, example, await refreshRequest(example, second.refreshToken), { status: 401, code: INVALID_REFRESH, sent: [second.refreshToken] })
  // And again, every token of the family: 200, nothing more to end.
  const after = example.events.length
  for (const token of [first.refreshToken, second.refreshToken, third.refreshToken, third.accessToken]) answered(t, await revoke({ token }), [token])
  t.same(eventsSince(example, after), [], 'nothing else happened')
})

t.test('H6 no unhandled rejection during the revocation cases', async (t) => {
  noIncidents(t, example)
})
