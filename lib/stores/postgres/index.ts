// The public entry (`fastify-token-auth/postgres`): the store, its options and the migration.
export { migrate, type PostgresNamingOptions, postgresMigrationSql } from './schema.js'
export { PostgresStore, type PostgresStoreOptions } from './store.js'
