import { buildApp, configFromEnv } from './app.js'

// `npm run example`: the demo server on the memory store, configured from the environment.
const app = await buildApp(configFromEnv())
try {
  await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 3000) })
} catch (error) {
  app.log.error(error)
  process.exit(1)
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0), () => process.exit(1))
  })
}
