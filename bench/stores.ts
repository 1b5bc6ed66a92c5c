// What bench/memory.ts imports from here; the code lives in bench/server/, which the bench
// servers run compiled against the packed package and so cannot reach into lib/.
export { connectRedis, DATABASE_URL, deleteRedisPrefix, REDIS_URL } from './server/stores.js'
export { claimsOf, fresh, inWindows, ipv4, sessionRecord, userAgent, userIdOf } from './server/records.js'
