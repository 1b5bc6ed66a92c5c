import swagger from '@fastify/swagger'
import Fastify from 'fastify'
import t from 'tap'
import tokenAuth from '../lib/index.js'
import { baseOptions } from './helpers.js'

t.test('every route, with its request and response schemas, is visible to @fastify/swagger', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(swagger, {
    openapi: {
      info: { title: 'test', version: '1.0.0' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } }
    }
  })
  await app.register(tokenAuth, baseOptions())
  await app.ready()
  const spec = app.swagger() as { paths: Record<string, Record<string, any>> }

  t.same(Object.keys(spec.paths).sort(), ['/auth/login', '/auth/logout', '/auth/refresh', '/auth/sessions', '/auth/sessions/{id}'])
  const login = spec.paths['/auth/login']!.post
  t.same(login.requestBody.content['application/json'].schema.required, ['username', 'password'])
  t.equal(login.requestBody.content['application/json'].schema.additionalProperties, false)
  t.same(Object.keys(login.responses).sort(), ['200', '4XX', '5XX'])
  t.same(login.responses['200'].content['application/json'].schema.required, ['accessToken', 'tokenType', 'expiresIn'])
  t.same(login.tags, ['token-auth'])
  t.ok(spec.paths['/auth/refresh']!.post.responses['200'])
  t.ok(spec.paths['/auth/logout']!.post.responses['204'])
  t.same(spec.paths['/auth/logout']!.post.parameters.map((p: { name: string }) => p.name), ['all'])
  t.same(spec.paths['/auth/sessions']!.get.security, [{ bearerAuth: [] }])
  t.ok(spec.paths['/auth/sessions']!.get.responses['200'].content['application/json'].schema.properties.sessions)
  t.same(spec.paths['/auth/sessions/{id}']!.delete.security, [{ bearerAuth: [] }])
  t.equal(spec.paths['/auth/sessions/{id}']!.delete.parameters[0].name, 'id')
})
