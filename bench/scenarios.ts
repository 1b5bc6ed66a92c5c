// The scenario names, shared by bench/run.ts and bench/server.ts (see server.ts for each).
export const SCENARIOS = ['bare', 'diy', 'protected', 'protected-eddsa', 'refresh', 'refresh-1m', 'refresh-redis', 'refresh-redis-1m', 'refresh-postgres'] as const
export type Scenario = typeof SCENARIOS[number]
