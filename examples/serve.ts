import type { FastifyInstance } from 'fastify'

/** Listens on HOST/PORT (or the given port) and closes the app cleanly on SIGINT/SIGTERM. */
export async function serve (app: FastifyInstance, defaultPort: number): Promise<void> {
  try {
    await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? defaultPort) })
  } catch (error) {
    app.log.error(error)
    process.exit(1)
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      app.close().then(() => process.exit(0), () => process.exit(1))
    })
  }
}
