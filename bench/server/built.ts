// What a scenario's builder hands to the server process (./main.ts).
import type { FastifyInstance } from 'fastify'
import type { Server } from 'node:http'
import type { Prefilled } from './prefill.js'

export interface Built {
  /** Listens on 127.0.0.1, a free port; resolves with the port. */
  listen: () => Promise<number>
  close: () => Promise<void>
  /** The access token the GET scenarios send as `Authorization: Bearer`. */
  token?: string
  /** `count` fresh, never-used refresh tokens (the refresh scenarios). */
  issue?: (count: number) => Promise<string[]>
  /** CPU µs the store's server has used so far, or null (in-process store). */
  storeCpu?: () => Promise<number | null>
  prefilled?: Prefilled
  /** Deletes what the run put in Redis or PostgreSQL and closes the connections. */
  cleanup?: () => Promise<void>
}

export type Outcome = Built | { skip: string }

export function fastifyBuilt (app: FastifyInstance, extra: Omit<Built, 'listen' | 'close'> = {}): Built {
  return {
    ...extra,
    listen: async () => {
      const address = await app.listen({ host: '127.0.0.1', port: 0 })
      return Number(new URL(address).port)
    },
    close: async () => await app.close()
  }
}

export function httpBuilt (server: Server, extra: Omit<Built, 'listen' | 'close'> = {}): Built {
  return {
    ...extra,
    listen: async () => await new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        const address = server.address()
        resolve(typeof address === 'object' && address !== null ? address.port : 0)
      })
    }),
    close: async () => await new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
