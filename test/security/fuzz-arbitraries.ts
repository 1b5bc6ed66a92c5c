import fc from 'fast-check'

// Generators for test/security/fuzz.test.ts. Requests are generated symbolically (a token is a
// reference plus mutations) and resolved against the tokens of each run, so one generator
// serves every run, and a counterexample reads as "the refresh token with its last character
// replaced by X", not as a dead token string.

export const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Characters a mutation puts into a token: its own alphabet mostly, then everything that is not. */
const tokenChar = fc.oneof(
  { arbitrary: fc.constantFrom(...BASE64URL), weight: 6 },
  { arbitrary: fc.constantFrom('.', '=', '+', '/', ' ', '%', '\t', '"', ';', ',', '\\', '\u0000', 'é', '\u2028', '\uFEFF'), weight: 2 },
  { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), weight: 1 }
)

/** A JSON value a claim or body field may take: plausible ones first, then any. */
const claimValue = fc.oneof(
  fc.constantFrom('none', 'None', 'HS256', 'HS512', 'RS256', 'ES256', 'EdDSA', 'at+jwt', 'rt+jwt', 'JWT', '', 'user-1', 'user-2'),
  fc.constantFrom(0, -1, 1e300, 2 ** 53, 4102444800, null, true, [], {}),
  fc.integer(),
  fc.string({ maxLength: 40 }),
  fc.jsonValue({ maxDepth: 2 })
)

const CLAIM_KEYS = ['alg', 'typ', 'kid', 'crit', 'b64', 'jku', 'jwk', 'x5u', 'sub', 'sid', 'jti', 'iat', 'exp', 'nbf', 'iss', 'aud', 'role', 'username', '__proto__']

/** A change to the decoded header or payload JSON, re-encoded under the old signature. */
export type ClaimEdit =
  | { set: string, value: unknown }
  | { remove: string }
  | { reserialize: 'spaced' | 'reordered' }

const claimEdit: fc.Arbitrary<ClaimEdit> = fc.oneof(
  fc.record({ set: fc.oneof(fc.constantFrom(...CLAIM_KEYS), fc.string({ maxLength: 8 })), value: claimValue }),
  fc.record({ remove: fc.constantFrom(...CLAIM_KEYS) }),
  fc.record({ reserialize: fc.constantFrom('spaced' as const, 'reordered' as const) })
)

const segment = fc.constantFrom(0, 1, 2)

/**
 * One edit of a token's text. Positions are taken modulo the length at the time they apply,
 * so any sequence of mutations applies to any token.
 */
export type Mutation =
  | { op: 'replace', at: number, char: string }
  | { op: 'insert', at: number, char: string }
  | { op: 'delete', at: number, count: number }
  | { op: 'segmentEnd', segment: number, char: string }
  | { op: 'case', at: number }
  | { op: 'truncate', keep: number }
  | { op: 'swapSegments', a: number, b: number }
  | { op: 'duplicateSegment', segment: number }
  | { op: 'dropSegment', segment: number }
  | { op: 'emptySegment', segment: number }
  | { op: 'splice', segment: number, donor: number }
  | { op: 'pad', padding: string }
  | { op: 'reencode', segment: 0 | 1, edit: ClaimEdit }
  | { op: 'highS' }
  | { op: 'lowBits', bits: number }

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), char: tokenChar }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), char: tokenChar }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }) }),
  // The last character of a segment carries padding bits: where base64url is malleable.
  fc.record({ op: fc.constant('segmentEnd' as const), segment, char: fc.constantFrom(...BASE64URL) }),
  fc.record({ op: fc.constant('case' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ op: fc.constant('swapSegments' as const), a: segment, b: segment }),
  fc.record({ op: fc.constant('duplicateSegment' as const), segment }),
  fc.record({ op: fc.constant('dropSegment' as const), segment }),
  fc.record({ op: fc.constant('emptySegment' as const), segment }),
  fc.record({ op: fc.constant('splice' as const), segment, donor: fc.nat() }),
  fc.record({ op: fc.constant('pad' as const), padding: fc.constantFrom('=', '==', '.', '\n', ' ') }),
  fc.record({ op: fc.constant('reencode' as const), segment: fc.constantFrom(0 as const, 1 as const), edit: claimEdit }),
  fc.constant({ op: 'highS' as const }),
  // Flips bits of the signature's last character that may be padding: its base64url siblings.
  fc.record({ op: fc.constant('lowBits' as const), bits: fc.integer({ min: 1, max: 15 }) })
)

/** Order of the P-256 group: an ECDSA signature (r, s) also verifies as (r, n - s). */
const P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551n

/** Mutations of a token; a few runs get none, and must then see the token accepted. */
export const mutations = fc.oneof(
  { arbitrary: fc.constant([] as Mutation[]), weight: 1 },
  { arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }), weight: 12 }
)

function decodeJson (part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString())
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

function reencode (part: string, edit: ClaimEdit): string {
  const json = decodeJson(part)
  if (json === undefined) return part
  let text: string
  if ('set' in edit) {
    // Built as text, so a `__proto__` key lands in the JSON as an own key.
    const entries = Object.entries(json).filter(([key]) => key !== edit.set)
    entries.push([edit.set, edit.value])
    text = `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value) ?? 'null'}`).join(',')}}`
  } else if ('remove' in edit) {
    const { [edit.remove]: _removed, ...rest } = json
    text = JSON.stringify(rest)
  } else {
    text = edit.reserialize === 'spaced' ? JSON.stringify(json, null, 1) : JSON.stringify(Object.fromEntries(Object.entries(json).reverse()))
  }
  return Buffer.from(text).toString('base64url')
}

/** Applies the mutations in order; `donors` are other valid tokens to splice segments from. */
export function mutate (token: string, list: readonly Mutation[], donors: readonly string[]): string {
  let text = token
  for (const m of list) {
    const parts = text.split('.')
    const seg = (index: number): number => index % parts.length
    switch (m.op) {
      case 'replace': {
        const at = m.at % Math.max(text.length, 1)
        text = text.slice(0, at) + m.char + text.slice(at + 1)
        break
      }
      case 'insert': {
        const at = m.at % (text.length + 1)
        text = text.slice(0, at) + m.char + text.slice(at)
        break
      }
      case 'delete': {
        const at = m.at % Math.max(text.length, 1)
        text = text.slice(0, at) + text.slice(at + m.count)
        break
      }
      case 'segmentEnd': {
        const i = seg(m.segment)
        const part = parts[i] as string
        parts[i] = part.slice(0, -1) + m.char
        text = parts.join('.')
        break
      }
      case 'case': {
        const at = m.at % Math.max(text.length, 1)
        const c = text.charAt(at)
        const swapped = c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()
        text = text.slice(0, at) + swapped + text.slice(at + 1)
        break
      }
      case 'truncate':
        text = text.slice(0, m.keep % Math.max(text.length, 1))
        break
      case 'swapSegments': {
        const a = seg(m.a)
        const b = seg(m.b)
        ;[parts[a], parts[b]] = [parts[b] as string, parts[a] as string]
        text = parts.join('.')
        break
      }
      case 'duplicateSegment': {
        const i = seg(m.segment)
        parts.splice(i, 0, parts[i] as string)
        text = parts.join('.')
        break
      }
      case 'dropSegment':
        parts.splice(seg(m.segment), 1)
        text = parts.join('.')
        break
      case 'emptySegment':
        parts[seg(m.segment)] = ''
        text = parts.join('.')
        break
      case 'splice': {
        const donor = donors.length === 0 ? undefined : donors[m.donor % donors.length]?.split('.')
        if (donor === undefined) break
        const i = seg(m.segment)
        parts[i] = donor[i % donor.length] as string
        text = parts.join('.')
        break
      }
      case 'pad':
        text += m.padding
        break
      case 'highS': {
        // The other ECDSA solution of a 64-byte (r, s) signature; garbles an EdDSA one.
        const signature = Buffer.from(parts.at(-1) as string, 'base64url')
        if (signature.length !== 64) break
        const sValue = BigInt(`0x${signature.toString('hex', 32)}`)
        if (sValue === 0n || sValue >= P256_ORDER) break
        Buffer.from((P256_ORDER - sValue).toString(16).padStart(64, '0'), 'hex').copy(signature, 32)
        parts[parts.length - 1] = signature.toString('base64url')
        text = parts.join('.')
        break
      }
      case 'lowBits': {
        const index = BASE64URL.indexOf(text.at(-1) ?? '')
        if (index !== -1) text = text.slice(0, -1) + (BASE64URL[index ^ m.bits] as string)
        break
      }
      case 'reencode': {
        if (parts.length < 2) break
        parts[m.segment] = reencode(parts[m.segment] as string, m.edit)
        text = parts.join('.')
        break
      }
    }
  }
  return text
}

// ---- Requests to the routes -------------------------------------------------------------------

export type Route = 'login' | 'refresh' | 'logout' | 'sessions' | 'deleteSession' | 'me' | 'jwks'

/** A reference to a token of the run (its first or latest generation), with mutations. */
export interface TokenRef { token: 'access' | 'refresh', generation: 'first' | 'latest', mutations: Mutation[] }

/** A value in a request: literal text, a token of the run, or a known credential. */
export type Value =
  | { text: string }
  | { ref: TokenRef }
  | { credential: 'username' | 'password' | 'otherUsername' | 'otherPassword' }
  | { json: unknown }

/** Body shapes: none, raw text, random JSON, fields written pair by pair (duplicates and `__proto__` keep), deep nesting, huge. */
export type Body =
  | { kind: 'none' }
  | { kind: 'text', text: string }
  | { kind: 'json', value: unknown }
  | { kind: 'fields', pairs: Array<[string, Value]> }
  | { kind: 'nested', depth: number, open: 'array' | 'object' }
  | { kind: 'huge', field: string, length: number }

export interface FuzzRequest {
  route: Route
  query: Array<[string, string]>
  /** The `:id` of DELETE /sessions/:id. */
  sessionId: { own: true } | { other: true } | { text: string, encode: boolean }
  contentType: string | undefined
  authorization: { scheme: string, separator: string, token: Value } | { raw: string } | undefined
  cookies: Array<{ name: string, value: Value, encode: boolean }>
  body: Body
  origin: string | undefined
  secFetchSite: string | undefined
  userAgent: string | undefined
  /** Over real HTTP only: pads a header past Node's limit, so its parser answers. */
  hugeHeader: number
}

const tokenRef = (token: TokenRef['token']): fc.Arbitrary<TokenRef> =>
  fc.record({ token: fc.constant(token), generation: fc.constantFrom('first' as const, 'latest' as const), mutations })

const anyText = fc.oneof(
  { arbitrary: fc.string({ maxLength: 30 }), weight: 4 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 12 }), weight: 1 },
  // Past the schema's maxLength (username 256, password 1024, refreshToken 8192) or the body limit.
  { arbitrary: fc.tuple(fc.constantFrom('a', 'é', '\u0000', '"'), fc.constantFrom(256, 257, 1024, 1025, 8192, 8193, 17000)).map(([c, n]) => c.repeat(n)), weight: 1 }
)

const wrongType = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }))

const value = (ref: fc.Arbitrary<TokenRef>): fc.Arbitrary<Value> => fc.oneof(
  { arbitrary: ref.map((r) => ({ ref: r })), weight: 4 },
  { arbitrary: anyText.map((text) => ({ text })), weight: 2 },
  { arbitrary: wrongType.map((json) => ({ json })), weight: 1 }
)

const credentialValue = (which: 'username' | 'password'): fc.Arbitrary<Value> => fc.oneof(
  { arbitrary: fc.constant({ credential: which }), weight: 4 },
  { arbitrary: fc.constant({ credential: which === 'username' ? 'otherUsername' as const : 'otherPassword' as const }), weight: 1 },
  { arbitrary: anyText.map((text) => ({ text })), weight: 2 },
  { arbitrary: wrongType.map((json) => ({ json })), weight: 1 }
)

const EXTRA_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'refreshToken', 'username', 'admin', 'sub']

const extraPair = fc.tuple(
  fc.oneof(fc.constantFrom(...EXTRA_KEYS), fc.string({ maxLength: 10 })),
  fc.oneof(
    wrongType.map((json): Value => ({ json })),
    fc.constant<Value>({ json: { isAdmin: true, polluted: 'yes' } }),
    fc.constant<Value>({ json: { prototype: { polluted: 'yes' } } })
  )
)

function fieldsBody (fields: fc.Arbitrary<Array<[string, Value]>>): fc.Arbitrary<Body> {
  // Mostly without extras, so values get past `additionalProperties: false` to the checks behind it.
  const extras = fc.oneof({ arbitrary: fc.constant<Array<[string, Value]>>([]), weight: 2 }, { arbitrary: fc.array(extraPair, { minLength: 1, maxLength: 2 }), weight: 1 })
  return fc.tuple(fields, extras, fc.boolean()).map(([own, extra, extraFirst]) =>
    ({ kind: 'fields' as const, pairs: extraFirst ? [...extra, ...own] : [...own, ...extra] }))
}

const optionalPair = (key: string, v: fc.Arbitrary<Value>, weight = 4): fc.Arbitrary<Array<[string, Value]>> =>
  fc.oneof({ arbitrary: fc.constant<Array<[string, Value]>>([]), weight: 1 }, { arbitrary: v.map((x): Array<[string, Value]> => [[key, x]]), weight })

const loginFields = fc.tuple(
  optionalPair('username', credentialValue('username'), 8),
  optionalPair('password', credentialValue('password'), 8),
  optionalPair('refreshTokenTransport', fc.oneof(fc.constantFrom('cookie', 'body', 'both', 'BODY').map((text): Value => ({ text })), wrongType.map((json): Value => ({ json }))), 1)
).map((groups) => groups.flat())

const refreshFields = optionalPair('refreshToken', value(tokenRef('refresh')), 6)

const otherBodies: Array<fc.WeightedArbitrary<Body>> = [
  { arbitrary: fc.constant({ kind: 'none' as const }), weight: 3 },
  {
    arbitrary: fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', 'null', '{', '[]', '"x"', '{"a":1,}', '\uFEFF{}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}'))
      .map((text) => ({ kind: 'text' as const, text })),
    weight: 2
  },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => ({ kind: 'json' as const, value: v })), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('nested' as const), depth: fc.integer({ min: 50, max: 5000 }), open: fc.constantFrom('array' as const, 'object' as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('huge' as const), field: fc.constantFrom('username', 'password', 'refreshToken'), length: fc.integer({ min: 1000, max: 40_000 }) }), weight: 1 }
]

function bodyFor (route: Route): fc.Arbitrary<Body> {
  if (route === 'login') return fc.oneof({ arbitrary: fieldsBody(loginFields), weight: 12 }, ...otherBodies)
  if (route === 'refresh' || route === 'logout') return fc.oneof({ arbitrary: fieldsBody(refreshFields), weight: 6 }, ...otherBodies)
  return fc.oneof({ arbitrary: fc.constant({ kind: 'none' as const }), weight: 8 }, ...otherBodies)
}

const CONTENT_TYPES = [
  'application/json', 'application/json; charset=utf-8', 'application/json;charset=utf-8', 'APPLICATION/JSON',
  'application/json; charset=UTF-8', 'application/json ; charset=utf-8', 'application/json; charset=latin1',
  'application/json, text/plain', ' application/json', 'application/jsonx', 'application/vnd.api+json', 'application/x-json',
  'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
  'text/json', 'application/json;', 'application/json; charset=utf-8; charset=latin1', 'application/json\t', '', '*/*'
]

const contentType = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 8 },
  { arbitrary: fc.constant(undefined), weight: 1 },
  { arbitrary: fc.constantFrom(...CONTENT_TYPES), weight: 3 },
  { arbitrary: fc.string({ maxLength: 30 }), weight: 1 }
)

const authorization = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 2 },
  {
    arbitrary: fc.record({
      scheme: fc.oneof({ arbitrary: fc.constant('Bearer'), weight: 8 }, { arbitrary: fc.constantFrom('bearer', 'BEARER', 'Basic', 'Token', 'Bearer:', 'Bearer,', ''), weight: 2 }),
      separator: fc.oneof({ arbitrary: fc.constant(' '), weight: 8 }, { arbitrary: fc.constantFrom('', '  ', '\t', ' \t'), weight: 1 }),
      token: fc.oneof({ arbitrary: tokenRef('access').map((ref): Value => ({ ref })), weight: 6 }, { arbitrary: tokenRef('refresh').map((ref): Value => ({ ref })), weight: 1 }, { arbitrary: anyText.map((text): Value => ({ text })), weight: 2 })
    }),
    weight: 8
  },
  { arbitrary: fc.string({ maxLength: 40 }).map((raw) => ({ raw })), weight: 1 }
)

const COOKIE_NAMES = ['Refresh_Token', 'refresh-token', '__Host-refresh_token', 'refresh_token2', 'session', 'a']

const cookie = fc.record({
  name: fc.oneof({ arbitrary: fc.constant('refresh_token'), weight: 6 }, { arbitrary: fc.constantFrom(...COOKIE_NAMES), weight: 2 }, { arbitrary: fc.string({ minLength: 1, maxLength: 10 }), weight: 1 }),
  value: value(tokenRef('refresh')),
  encode: fc.boolean()
})

const cookies = fc.oneof(
  { arbitrary: fc.array(cookie, { maxLength: 2 }), weight: 6 },
  // The refresh cookie more than once: the hardening of contract item 4.
  { arbitrary: fc.tuple(cookie, cookie).map(([a, b]) => [{ ...a, name: 'refresh_token' }, { ...b, name: 'refresh_token' }]), weight: 1 }
)

const queryPair = fc.tuple(
  fc.oneof({ arbitrary: fc.constant('all'), weight: 3 }, { arbitrary: fc.constantFrom('__proto__', 'constructor', 'a[b]', 'refreshToken', 'all[]', ''), weight: 1 }, { arbitrary: fc.string({ maxLength: 8 }), weight: 1 }),
  fc.oneof({ arbitrary: fc.constantFrom('true', 'false'), weight: 3 }, { arbitrary: fc.constantFrom('1', '', 'TRUE', 'true ', '%zz', '%00'), weight: 1 }, { arbitrary: fc.string({ maxLength: 8 }), weight: 1 })
)

const sessionId = fc.oneof(
  { arbitrary: fc.constant({ own: true as const }), weight: 3 },
  { arbitrary: fc.constant({ other: true as const }), weight: 2 },
  {
    arbitrary: fc.record({ text: fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('%zz', '%00', 'a%2Fb', '..a', '__proto__', 'x'.repeat(65))), encode: fc.boolean() })
      // A raw `.` or `..` is a dot segment: the URL resolves it to another path before any route.
      .filter(({ text, encode }) => encode || !/^(\.|%2e){1,2}$/i.test(text)),
    weight: 2
  }
)

const ROUTES: Route[] = ['login', 'refresh', 'logout', 'sessions', 'deleteSession', 'me']

type Transport = 'cookie' | 'body' | 'both'

function randomRequest (route: Route, hugeHeaders: boolean): fc.Arbitrary<FuzzRequest> {
  return fc.record({
    route: fc.constant(route),
    query: fc.oneof({ arbitrary: fc.constant<Array<[string, string]>>([]), weight: 3 }, { arbitrary: fc.array(queryPair, { minLength: 1, maxLength: 3 }), weight: 1 }),
    sessionId,
    contentType: route === 'login' || route === 'refresh' || route === 'logout' ? contentType : fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: contentType, weight: 1 }),
    authorization,
    cookies,
    body: bodyFor(route),
    origin: fc.oneof({ arbitrary: fc.constant(undefined), weight: 8 }, { arbitrary: fc.constantFrom('http://localhost:80', 'http://localhost', 'https://evil.example', 'null', ''), weight: 1 }),
    secFetchSite: fc.oneof({ arbitrary: fc.constant(undefined), weight: 8 }, { arbitrary: fc.constantFrom('same-origin', 'same-site', 'cross-site', 'none', 'CROSS-SITE'), weight: 1 }),
    userAgent: fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: fc.string({ maxLength: 300 }), weight: 1 }),
    hugeHeader: hugeHeaders
      ? fc.oneof({ arbitrary: fc.constant(0), weight: 6 }, { arbitrary: fc.integer({ min: 8_000, max: 40_000 }), weight: 1 })
      : fc.constant(0)
  })
}

const liveRef = (token: TokenRef['token']): fc.Arbitrary<Value> =>
  fc.constantFrom('first' as const, 'latest' as const).map((generation) => ({ ref: { token, generation, mutations: [] } }))

/** The request a well-behaved client sends on `route`: current tokens, where the transport wants them. */
function validRequest (route: Route, transport: Transport): fc.Arbitrary<FuzzRequest> {
  const refreshInBody = transport === 'body' || (transport === 'both' && route !== 'login')
  const noCookies = fc.constant<FuzzRequest['cookies']>([])
  const refreshCookie = transport === 'body' ? noCookies : liveRef('refresh').map((value): FuzzRequest['cookies'] => [{ name: 'refresh_token', value, encode: true }])
  const body: fc.Arbitrary<Body> = route === 'login'
    ? fc.constantFrom<Array<[string, Value]>>(
      [['username', { credential: 'username' }], ['password', { credential: 'password' }]],
      [['username', { credential: 'otherUsername' }], ['password', { credential: 'otherPassword' }]],
      [['username', { credential: 'username' }], ['password', { credential: 'password' }], ['refreshTokenTransport', { text: 'body' }]],
      [['username', { credential: 'username' }], ['password', { credential: 'otherPassword' }]],
      [['username', { text: 'mallory' }], ['password', { credential: 'password' }]]
    ).map((pairs) => ({ kind: 'fields' as const, pairs: transport === 'both' ? pairs : pairs.filter(([key]) => key !== 'refreshTokenTransport') }))
    : (route === 'refresh' || route === 'logout') && refreshInBody
        ? liveRef('refresh').map((value) => ({ kind: 'fields' as const, pairs: [['refreshToken', value]] as Array<[string, Value]> }))
        : fc.constant({ kind: 'none' as const })
  return fc.record({
    route: fc.constant(route),
    query: fc.constant<Array<[string, string]>>([]),
    sessionId: fc.constantFrom({ own: true as const }, { other: true as const }),
    contentType: fc.constant(route === 'login' || ((route === 'refresh' || route === 'logout') && transport !== 'cookie') ? 'application/json' : undefined),
    authorization: liveRef('access').map((token) => ({ scheme: 'Bearer', separator: ' ', token })),
    // With `both`, the refresh token goes in the body or the cookie, never both.
    cookies: transport === 'both' && route !== 'login' ? noCookies : refreshCookie,
    body,
    origin: fc.constant(undefined),
    secFetchSite: fc.constant(undefined),
    userAgent: fc.constant(undefined),
    hugeHeader: fc.constant(0)
  })
}

const PARTS = ['query', 'sessionId', 'contentType', 'authorization', 'cookies', 'body', 'origin', 'secFetchSite', 'userAgent', 'hugeHeader'] as const

/**
 * A request to one of the routes: half of them drawn part by part at random, half a valid
 * request with one or two parts swapped for random ones, so the checks past the first refusal
 * (and the successes) are reached too. `jwks` adds the JWKS route (registered only with
 * asymmetric keys); `hugeHeaders` is for real HTTP only.
 */
export function fuzzRequest (options: { transport: Transport, hugeHeaders?: boolean, jwks?: boolean }): fc.Arbitrary<FuzzRequest> {
  return fc.constantFrom(...ROUTES, ...(options.jwks === true ? ['jwks' as const] : [])).chain((route) => {
    const random = randomRequest(route, options.hugeHeaders === true)
    const perturbed = fc.tuple(validRequest(route, options.transport), random, fc.subarray([...PARTS], { maxLength: 2 }))
      .map(([valid, noise, parts]) => {
        const request: Record<string, unknown> = { ...valid }
        for (const part of parts) request[part] = noise[part]
        return request as unknown as FuzzRequest
      })
    return fc.oneof(random, perturbed)
  })
}
