// The public entry of the Redis store (`fastify-token-auth/redis`): the store, its options and
// the client types that option accepts. Everything else in this folder is internal.
export type { Arg, IoredisLike, NodeRedisClientLike, NodeRedisClusterLike, NodeRedisCommandOptions, RedisClientLike } from './clients.js'
export { RedisStore, type RedisStoreOptions } from './store.js'
