// Where a bench server gets fastify-token-auth. By default from the packed package the runner
// installed into its consumer project (bench/install.ts): the bare specifiers
// `fastify-token-auth`, `fastify-token-auth/redis` and `fastify-token-auth/postgres`, resolved
// from the compiled server's own node_modules, as an application would import them. With
// BENCH_SOURCE=lib (the server then runs under tsx) from the working tree's lib/.
// Only types come from lib/ statically; they are erased from the compiled server.
import type * as Main from '../../lib/index.js'
import type * as Postgres from '../../lib/stores/postgres/index.js'
import type * as Redis from '../../lib/stores/redis/index.js'

export type PluginModule = typeof Main
export type RedisModule = typeof Redis
export type PostgresModule = typeof Postgres

function specifier (subpath: '' | '/redis' | '/postgres'): string {
  if (process.env.BENCH_SOURCE !== 'lib') return `fastify-token-auth${subpath}`
  return new URL(`../../lib/${subpath === '' ? 'index.ts' : `stores${subpath}/index.ts`}`, import.meta.url).href
}

export async function loadPlugin (): Promise<PluginModule> {
  return await import(specifier('')) as PluginModule
}

export async function loadRedisStore (): Promise<RedisModule> {
  return await import(specifier('/redis')) as RedisModule
}

export async function loadPostgresStore (): Promise<PostgresModule> {
  return await import(specifier('/postgres')) as PostgresModule
}
