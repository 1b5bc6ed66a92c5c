import swagger from '@fastify/swagger'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import tokenAuth, { openApiSecuritySchemes, type TokenAuthOptions } from '../lib/index.js'
import { baseOptions, login, refreshCookie } from './helpers.js'

/**
 * The security schemes the plugin's route schemas name. @fastify/swagger takes components only
 * from its own options, so the app declares them (the plugin exports them); `app.swagger()`
 * throws for a route naming a scheme it does not know.
 */
const securitySchemes = openApiSecuritySchemes()

type Operation = {
  summary: string
  tags: string[]
  security?: Array<Record<string, string[]>>
  parameters?: Array<{ name: string, in: string, required: boolean, schema: Record<string, unknown> }>
  requestBody?: { required: boolean, content: Record<string, { schema: Record<string, any> }> }
  responses: Record<string, { description: string, content?: Record<string, { schema: Record<string, any> }> }>
}
type Spec = { openapi: string, components: { securitySchemes: Record<string, unknown> }, paths: Record<string, Record<string, Operation>> }

/** An app with @fastify/swagger (OpenAPI 3) declaring the schemes, then the plugin; its document. */
async function documentOf (t: Test, options: Partial<TokenAuthOptions> = {}, openapi: { security?: Array<Record<string, string[]>> } = {}) {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(swagger, {
    openapi: { info: { title: 'fastify-token-auth', version: '1.0.0' }, components: { securitySchemes }, ...openapi }
  })
  await app.register(tokenAuth, baseOptions(options))
  await app.ready()
  return { app, spec: app.swagger() as unknown as Spec }
}

/** Path, method, success status. */
const ROUTES = [
  ['/auth/login', 'post', '200'],
  ['/auth/refresh', 'post', '200'],
  ['/auth/logout', 'post', '204'],
  ['/auth/sessions', 'get', '200'],
  ['/auth/sessions/{id}', 'delete', '204'],
  ['/auth/revoke', 'post', '200']
] as const

/** Documented apart: it states its 401 and 403 besides the 4XX. */
const REAUTHENTICATE = '/auth/reauthenticate'

const ERROR_PROPERTIES = { statusCode: { type: 'integer' }, code: { type: 'string' }, error: { type: 'string' }, message: { type: 'string' } }

t.test('every route appears with its request and response schemas and its security', async (t) => {
  const { spec } = await documentOf(t)
  t.equal(spec.openapi, '3.0.3')
  t.same(Object.keys(spec.paths).sort(), [...ROUTES.map(([path]) => path), REAUTHENTICATE].sort(), 'exactly the plugin\'s routes')
  for (const [path, method] of ROUTES) {
    t.same(Object.keys(spec.paths[path]!), [method], `${path}: ${method} only`)
  }
  const op = (path: string, method: string) => spec.paths[path]![method] as Operation

  for (const [path, method, success] of ROUTES) {
    const operation = op(path, method)
    t.same(operation.tags, ['token-auth'], `${path}: tagged`)
    t.ok(operation.summary, `${path}: summarised`)
    t.same(Object.keys(operation.responses).sort(), [success, '4XX', '5XX'], `${path}: ${success}, 4XX and 5XX`)
    for (const [status, response] of Object.entries(operation.responses)) {
      t.ok(response.description !== undefined && response.description !== 'Default Response', `${path} ${status}: described`)
    }
    for (const status of ['4XX', '5XX']) {
      const schema = operation.responses[status]!.content!['application/json']!.schema
      t.same(schema.properties, ERROR_PROPERTIES, `${path} ${status}: the error body`)
    }
    if (success === '204') t.equal(operation.responses['204']!.content, undefined, `${path}: 204 has no body`)
    if (path === '/auth/revoke') t.equal(operation.responses['200']!.content, undefined, `${path}: RFC 7009's 200 has no body`)
  }

  // Requests.
  const loginBody = op('/auth/login', 'post').requestBody!
  t.equal(loginBody.required, true)
  t.match(loginBody.content['application/json']!.schema, {
    type: 'object',
    required: ['username', 'password'],
    additionalProperties: false,
    properties: { username: { type: 'string', minLength: 1, maxLength: 256 }, password: { type: 'string', minLength: 1, maxLength: 1024 } }
  })
  t.same(Object.keys(loginBody.content['application/json']!.schema.properties), ['username', 'password'], 'no transport field by default')
  t.equal(op('/auth/refresh', 'post').requestBody, undefined, 'refresh: no body in cookie mode')
  t.equal(op('/auth/logout', 'post').requestBody, undefined, 'logout: no body in cookie mode')
  t.same(op('/auth/logout', 'post').parameters, [{ schema: { type: 'string', enum: ['true', 'false'] }, in: 'query', name: 'all', required: false }])
  t.same(op('/auth/sessions/{id}', 'delete').parameters, [{
    schema: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }, in: 'path', name: 'id', required: true
  }])

  const revokeBody = op('/auth/revoke', 'post').requestBody!
  t.equal(revokeBody.required, true, 'revoke: a body')
  t.match(revokeBody.content['application/json']!.schema, {
    type: 'object', required: ['token'], additionalProperties: false, properties: { token: { type: 'string', minLength: 1, maxLength: 8192 } }
  })
  t.same(Object.keys(revokeBody.content['application/json']!.schema.properties), ['token', 'token_type_hint', 'client_id'], 'revoke: RFC 7009 §2.1 parameters')

  // Responses.
  for (const path of ['/auth/login', '/auth/refresh']) {
    const schema = op(path, 'post').responses['200']!.content!['application/json']!.schema
    t.same(schema.required, ['accessToken', 'tokenType', 'expiresIn'], `${path}: token response`)
    t.same(Object.keys(schema.properties), ['accessToken', 'tokenType', 'expiresIn'], `${path}: no refresh token in the body in cookie mode`)
    t.same(schema.properties.tokenType, { type: 'string', enum: ['Bearer'] })
  }
  const session = op('/auth/sessions', 'get').responses['200']!.content!['application/json']!.schema.properties.sessions.items
  t.same(session.required, ['id', 'createdAt', 'lastUsedAt', 'expiresAt', 'userAgent', 'ip', 'current'])
  t.notOk(Object.keys(session.properties).some((name) => /token|hash/i.test(name)), 'no token material in a listed session')

  // Security: the login needs none; the cookie routes take the refresh cookie (logout also a
  // bearer token, for ?all=true); the session routes a bearer token.
  t.same(op('/auth/login', 'post').security, [], 'login: none')
  t.same(op('/auth/refresh', 'post').security, [{ refreshCookie: [] }], 'refresh: the refresh cookie')
  t.same(op('/auth/logout', 'post').security, [{ refreshCookie: [] }, { bearerAuth: [] }], 'logout: the refresh cookie or a bearer token')
  t.same(op('/auth/sessions', 'get').security, [{ bearerAuth: [] }], 'GET sessions: bearer')
  t.same(op('/auth/sessions/{id}', 'delete').security, [{ bearerAuth: [] }], 'DELETE session: bearer')
  t.same(op('/auth/revoke', 'post').security, [], 'revoke: none, the token is the proof')
  const named = new Set(ROUTES.flatMap(([path, method]) => (op(path, method).security ?? []).flatMap((entry) => Object.keys(entry))))
  const declared = Object.keys(spec.components.securitySchemes).filter((scheme) => scheme !== 'introspectionClient')
  t.same([...named].sort(), declared.sort(), 'every scheme named is declared, and every declared one used (introspection is off by default)')
})

t.test('the re-authentication route: the login\'s body and response, the refresh token\'s security, its refusals', async (t) => {
  const { spec } = await documentOf(t)
  const operation = spec.paths[REAUTHENTICATE]!.post!
  t.same(operation.tags, ['token-auth'])
  t.ok(operation.summary)
  t.same(Object.keys(operation.responses).sort(), ['200', '401', '403', '4XX', '5XX'])
  for (const [status, response] of Object.entries(operation.responses)) {
    t.ok(response.description !== undefined && response.description !== 'Default Response', `${status}: described`)
  }
  t.match(operation.responses['403']!.description, /FST_TOKEN_AUTH_REAUTHENTICATION_USER_MISMATCH/)
  t.same(operation.responses['401']!.content!['application/json']!.schema.properties, ERROR_PROPERTIES)
  t.same(Object.keys(operation.responses['200']!.content!['application/json']!.schema.properties), ['accessToken', 'tokenType', 'expiresIn'])
  t.same(Object.keys(operation.requestBody!.content['application/json']!.schema.properties), ['username', 'password'], 'the login\'s body in cookie mode')
  t.same(operation.security, [{ refreshCookie: [] }], 'the refresh cookie names the session')
  const both = (await documentOf(t, { refreshTokenTransport: 'both' })).spec.paths[REAUTHENTICATE]!.post!
  t.same(Object.keys(both.requestBody!.content['application/json']!.schema.properties), ['username', 'password', 'refreshTokenTransport', 'refreshToken'])
  t.same(both.security, [{ refreshCookie: [] }, {}])
  const oauth2 = (await documentOf(t, { responseFormat: 'oauth2', refreshTokenTransport: 'body' })).spec.paths[REAUTHENTICATE]!.post!
  t.match(oauth2.requestBody!.content['application/json']!.schema.properties, { refresh_token: { type: 'string' }, grant_type: { type: 'string' } })
  t.same(oauth2.responses['403']!.content!['application/json']!.schema.required, ['error'], 'RFC 6749 §5.2 errors')
})

t.test('a session cap that refuses documents the login\'s 403', async (t) => {
  const { spec } = await documentOf(t, { maxSessionsPerUser: 3, sessionLimitPolicy: 'refuse' })
  t.match(spec.paths['/auth/login']!.post!.responses['403']!.description, /FST_TOKEN_AUTH_SESSION_LIMIT_REACHED/)
  const oauth2 = (await documentOf(t, { maxSessionsPerUser: 3, sessionLimitPolicy: 'refuse', responseFormat: 'oauth2' })).spec
  t.same(oauth2.paths['/auth/login']!.post!.responses['403']!.content!['application/json']!.schema.required, ['error'])
  const ending = (await documentOf(t, { maxSessionsPerUser: 3 })).spec
  t.equal(ending.paths['/auth/login']!.post!.responses['403'], undefined, 'ending the least recent refuses nothing')
})

t.test('the declared cookie scheme names the cookie the plugin really sets', async (t) => {
  const { app } = await documentOf(t)
  const { response } = await login(app)
  t.equal(response.statusCode, 200)
  t.equal(refreshCookie(response, securitySchemes.refreshCookie.name)?.httpOnly, true, `Set-Cookie: ${securitySchemes.refreshCookie.name}`)
})

t.test('with a global security requirement, the login route still needs none', async (t) => {
  const { spec } = await documentOf(t, {}, { security: [{ bearerAuth: [] }] })
  t.same(spec.paths['/auth/login']!.post!.security, [], 'login overrides the global requirement')
  t.same(spec.paths['/auth/refresh']!.post!.security, [{ refreshCookie: [] }])
})

t.test('refresh tokens in the body: the documented alternatives follow the transport', async (t) => {
  const both = (await documentOf(t, { refreshTokenTransport: 'both' })).spec
  t.same(both.paths['/auth/refresh']!.post!.security, [{ refreshCookie: [] }, {}], 'both: the cookie, or a token in the body')
  t.same(both.paths['/auth/logout']!.post!.security, [{ refreshCookie: [] }, { bearerAuth: [] }, {}])
  t.match(both.paths['/auth/refresh']!.post!.requestBody!.content['application/json']!.schema.properties, { refreshToken: { type: 'string' } })
  t.match(both.paths['/auth/login']!.post!.responses['200']!.content!['application/json']!.schema.properties, { refreshToken: { type: 'string' } })
  t.same(both.paths['/auth/login']!.post!.requestBody!.content['application/json']!.schema.properties.refreshTokenTransport,
    { type: 'string', enum: ['cookie', 'body'], description: 'Where the refresh token goes (default cookie)' })

  const body = (await documentOf(t, { refreshTokenTransport: 'body' })).spec
  t.same(body.paths['/auth/refresh']!.post!.security, [{}], 'body: no scheme describes it')
  t.same(body.paths['/auth/logout']!.post!.security, [{ bearerAuth: [] }, {}])
})

t.test('the routes follow the prefix and route options', async (t) => {
  const { spec } = await documentOf(t, { prefix: '/api/v1/auth', routes: { sessions: false, refresh: { path: '/token' } } })
  t.same(Object.keys(spec.paths).sort(), ['/api/v1/auth/login', '/api/v1/auth/logout', '/api/v1/auth/reauthenticate', '/api/v1/auth/revoke', '/api/v1/auth/token'])
  t.same(spec.paths['/api/v1/auth/token']!.post!.security, [{ refreshCookie: [] }])
})

t.test('the document of the default configuration (snapshot)', async (t) => {
  const first = (await documentOf(t)).spec
  const second = (await documentOf(t)).spec
  // Nothing random in it (no port, date or secret): two apps give the same document.
  t.same(second, first, 'stable')
  const text = JSON.stringify(first)
  t.notMatch(text, /secret|\d{4}-\d{2}-\d{2}T|127\.0\.0\.1|localhost/i, 'no secret, date or address')
  t.matchSnapshot(first, 'OpenAPI 3 document, default options, schemes declared by the app')
})

t.test('with introspection configured, its endpoint is documented with the Basic scheme', async (t) => {
  const { spec } = await documentOf(t, { introspection: { clients: [{ id: 'rs', secret: 'Zq1Xw2Ec3Rv4Tb5Yn6Um7Ik8Ol9Pa0SdQ' }] } })
  const operation = spec.paths['/auth/introspect']!.post as Operation
  t.same(operation.security, [{ introspectionClient: [] }], 'HTTP Basic, the declared introspectionClient scheme')
  t.same(spec.components.securitySchemes.introspectionClient, { type: 'http', scheme: 'basic', description: 'A resource server of `introspection.clients` (RFC 7662 §2.1)' })
  t.same(operation.requestBody!.content['application/json']!.schema.required, ['token'])
  t.same(operation.responses['200']!.content!['application/json']!.schema.required, ['active'])
})
